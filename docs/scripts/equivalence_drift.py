"""Print the agreement table of docs/equivalence.md: for every pair of backends, the largest gap
over all model shapes of each figure the equivalence tests bound.

Run from the repository root: `python docs/scripts/equivalence_drift.py [ARCHIVE]`
(ARCHIVE defaults to ../shared/data/aclImdb_labelled.tar.gz; a slice of 150 reviews per folder
is cut from it, as the tests cut theirs). Each backend records its traces once
(`backends.equivalence.backend_traces`), exactly as the tests do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from backends import BACKENDS
from backends.equivalence import LM_VOCAB, Trace, backend_pairs, backend_traces, largest_weight_gap
from harness.data.classification import load_imdb
from harness.data.language_model import load_language_model_data
from harness.data.slice import cut_slice

ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "aclImdb_labelled.tar.gz"


def relative_gradient_gap(a: Trace, b: Trace) -> float:
    return max(
        float(np.abs(g - b.gradients[name]).max()) / max(float(np.abs(g).max()), 1e-12)
        for name, g in a.gradients.items()
    )


def stepped_gap(a: Trace, b: Trace, optimizer: str) -> float:
    return largest_weight_gap(a.stepped[optimizer], b.stepped[optimizer])


# (column, bound the tests assert, the figure of one shape's pair of traces)
FIGURES = [
    ("logits", "1e-5", lambda a, b: float(np.abs(a.logits - b.logits).max())),
    ("gradients (relative)", "1e-4", relative_gradient_gap),
    ("1 RMSprop step", "1e-5", lambda a, b: stepped_gap(a, b, "rmsprop")),
    ("1 Adam step", "1e-5", lambda a, b: stepped_gap(a, b, "adam")),
    ("50 steps: loss", "1e-3", lambda a, b: float(np.abs(a.losses - b.losses).max())),
    ("50 steps: weights", "1e-4", lambda a, b: largest_weight_gap(a.trained, b.trained)),
]
LM_FIGURES = [
    ("LM logits", "1e-5", lambda a, b: float(np.abs(a.logits - b.logits).max())),
    ("LM 50 Adam steps: loss", "1e-3", lambda a, b: float(np.abs(a.losses - b.losses).max())),
]


def main() -> None:
    archive = Path(sys.argv[1]) if len(sys.argv) > 1 else ARCHIVE
    with tempfile.TemporaryDirectory() as tmp:
        sliced = cut_slice(archive, Path(tmp) / "slice.tar.gz")
        imdb = load_imdb(sliced, num_words=2000, sequence_length=48, cache=Path(tmp))
        corpus = load_language_model_data(
            sliced, num_words=LM_VOCAB, sequence_length=16, cache=Path(tmp)
        )
        traces = {}
        for name in BACKENDS:
            print(f"recording {name}", file=sys.stderr, flush=True)
            traces[name] = backend_traces(name, imdb.train, corpus.train)
    columns = FIGURES + LM_FIGURES
    print("| pair | " + " | ".join(f"{c} (bound {bound})" for c, bound, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for a, b in backend_pairs():
        cells = []
        for _, _, figure in columns:
            lm = figure in [f for _, _, f in LM_FIGURES]
            cases = [case for case in traces[a] if case.startswith("lm-") == lm]
            cells.append(f"{max(figure(traces[a][c], traces[b][c]) for c in cases):.1e}")
        print(f"| {a} ~ {b} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
