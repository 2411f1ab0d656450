"""Print the lockstep agreement table of docs/equivalence.md.

Run from the repository root: `python docs/scripts/equivalence_drift.py [ARCHIVE]`
(ARCHIVE defaults to ../shared/data/aclImdb_labelled.tar.gz).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / "tests")]
from conftest import IMDB_ARCHIVE, cut_slice  # noqa: E402
from test_equivalence import BATCH, LOCKSTEP_STEPS, SHAPES, small_spec, twin_models  # noqa: E402

from harness.data.classification import load_imdb  # noqa: E402
from harness.training import epoch_batches  # noqa: E402


def gaps(arch: str, layers: int, optimizer: str, imdb) -> tuple[float, float]:
    keras_model, torch_model = twin_models(small_spec(arch, layers), optimizer)
    losses: list[list[float]] = [[], []]
    steps, epoch = 0, 0
    while steps < LOCKSTEP_STEPS:
        epoch += 1
        for index in epoch_batches(len(imdb.train), BATCH, seed=3, epoch=epoch):
            if steps == LOCKSTEP_STEPS:
                break
            for curve, model in zip(losses, (keras_model, torch_model), strict=True):
                model.train_step(imdb.train.x[index], imdb.train.y[index])
                curve.append(model.take_train_metrics()[0])
            steps += 1
    a, b = keras_model.get_weights(), torch_model.get_weights()
    loss_gap = float(np.abs(np.subtract(*losses)).max())
    return loss_gap, max(float(np.abs(a[n] - b[n]).max()) for n in a)


def main() -> None:
    archive = Path(sys.argv[1]) if len(sys.argv) > 1 else IMDB_ARCHIVE
    with tempfile.TemporaryDirectory() as tmp:
        imdb = load_imdb(
            cut_slice(archive, Path(tmp) / "slice.tar.gz", 150),
            num_words=2000,
            sequence_length=48,
            cache=Path(tmp),
        )
        for arch, layers in SHAPES:
            cells = [
                f"{gap:.1e}" for opt in ("rmsprop", "adam") for gap in gaps(arch, layers, opt, imdb)
            ]
            print(f"| {arch} x{layers} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
