"""Print the lockstep agreement table of docs/equivalence.md, one table per pair of backends.

Run from the repository root: `python docs/scripts/equivalence_drift.py [ARCHIVE]`
(ARCHIVE defaults to ../shared/data/aclImdb_labelled.tar.gz; a slice of 150 reviews per folder
is cut from it, as the tests cut theirs).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from backends.equivalence import (
    SHAPES,
    backend_pairs,
    largest_weight_gap,
    lockstep_losses,
    small_spec,
    twin_models,
)
from harness.data.classification import load_imdb
from harness.data.slice import cut_slice

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "aclImdb_labelled.tar.gz"


def gaps(
    pair: tuple[str, str], arch: str, layers: int, optimizer: str, imdb
) -> tuple[float, float]:
    """The largest per-step loss gap over the lockstep run, and the largest weight gap after."""
    models = twin_models(pair, small_spec(arch, layers), optimizer)
    losses = lockstep_losses(models, imdb.train)
    loss_gap = float(np.abs(losses[0] - losses[1]).max())
    return loss_gap, largest_weight_gap(models[0].get_weights(), models[1].get_weights())


def main() -> None:
    archive = Path(sys.argv[1]) if len(sys.argv) > 1 else ARCHIVE
    with tempfile.TemporaryDirectory() as tmp:
        imdb = load_imdb(
            cut_slice(archive, Path(tmp) / "slice.tar.gz"),
            num_words=2000,
            sequence_length=48,
            cache=Path(tmp),
        )
        for pair in backend_pairs():
            print(f"\n{pair[0]} vs {pair[1]}", flush=True)
            for arch, layers in SHAPES:
                cells = [
                    f"{gap:.1e}"
                    for optimizer in ("rmsprop", "adam")
                    for gap in gaps(pair, arch, layers, optimizer, imdb)
                ]
                print(f"| {arch} x{layers} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
