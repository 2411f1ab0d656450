"""IMDB reviews as fixed-length rows of token ids for sentiment classification, cached.

Built on the tokenised corpus (`harness.data.corpus`, cached per archive): the reviews of each
split are chosen, capped to the vocabulary and padded the way keras.utils.pad_sequences pads.
The padded train/validation/test arrays are cached too, under `<cache>/imdb/`, keyed by the
archive's digest and every preprocessing parameter, so a repeated run only reads one `.npz`.
Both caches are written atomically and rebuilt when unreadable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.corpus import (
    CORPUS_FORMAT,
    OOV,
    START,
    Preprocessing,
    TokenizedCorpus,
    TokenizedSplit,
    cache_folder,
    cached_corpus,
    choose_reviews,
    load_corpus,
    load_npz,
    preprocessing,
    save_npz,
)
from harness.data.source import resolve_source, source_digest

__all__ = ["ENCODED_FORMAT", "ImdbData", "Split", "load_corpus", "load_imdb"]

ENCODED_FORMAT = 1  # bump when encoding or the cached layout of the padded arrays changes


@dataclass(frozen=True, eq=False)
class Split:
    """Model-ready reviews: each row is [1] + ids, pre-padded and pre-truncated with 0."""

    x: np.ndarray  # int32, (n, sequence_length), every id < vocab_size
    y: np.ndarray  # float32 0/1, (n,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class ImdbData:
    """What a backend trains and evaluates on, plus what a run logs about it."""

    train: Split  # rows in a seeded random order
    validation: Split  # carved from train with the same seed
    test: Split  # the official test split (or its subset), neg then pos
    vocab_size: int  # == num_words: ids 0..num_words-1 can occur
    digest: str  # source_digest of the archive
    params: dict[str, object]  # the preprocessing parameters, flat, for logging


def load_imdb(
    source: str | Path | None,
    *,
    num_words: int = 10_000,
    sequence_length: int = 200,
    validation_fraction: float = 0.2,
    split_seed: int = 0,
    subset: int | None = None,
    cache: Path | None = None,
) -> ImdbData:
    """Padded train/validation/test arrays of `source`, from cache or built and cached.

    `subset` keeps that many reviews of train and of test (labels in their original proportion);
    validation is then a seeded `validation_fraction` of the (subset) train reviews.
    """
    params = preprocessing(num_words, sequence_length, validation_fraction, split_seed, subset)
    source = resolve_source(source)
    folder = cache_folder(cache)
    digest = source_digest(source)
    key = json.dumps(
        {"format": [CORPUS_FORMAT, ENCODED_FORMAT], "digest": digest, **params.as_params()}
    )
    path = folder / f"encoded-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    arrays = load_npz(path, key)
    if arrays is None or not _encoded_ok(arrays, params.sequence_length):
        arrays = _encode_corpus(cached_corpus(source, folder, digest), params)
        save_npz(path, key, arrays)
    splits = {
        name: Split(x=arrays[f"x_{name}"], y=arrays[f"y_{name}"])
        for name in ("train", "validation", "test")
    }
    return ImdbData(**splits, vocab_size=params.num_words, digest=digest, params=params.as_params())


def _encode_corpus(corpus: TokenizedCorpus, params: Preprocessing) -> dict[str, np.ndarray]:
    """The padded arrays from the corpus: choose the rows of each split, then pad them."""
    chosen = choose_reviews(corpus, params)
    arrays = {}
    for name, picked in chosen.items():
        split = corpus.test if name == "test" else corpus.train
        arrays[f"x_{name}"] = _pad(split, picked, params.num_words, params.sequence_length)
        arrays[f"y_{name}"] = split.labels[picked].astype(np.float32)
    return arrays


def _pad(split: TokenizedSplit, rows: np.ndarray, num_words: int, length: int) -> np.ndarray:
    """[1] + ids (capped to num_words) per row, as keras.utils.pad_sequences does by default.

    That is padding='pre', truncating='pre', value=0: a long review keeps its last `length`
    entries (so its start marker is cut off), a short one is right-aligned after zeros.
    """
    starts, ends = split.offsets[rows], split.offsets[rows + 1]
    n = ends - starts
    kept = np.minimum(n, length)  # word ids kept per row; the start marker needs one more slot
    within = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    ids = split.ids[np.repeat(ends - kept, kept) + within]
    out = np.zeros((len(rows), length), dtype=np.int32)
    out[np.repeat(np.arange(len(rows)), kept), length - np.repeat(kept, kept) + within] = np.where(
        ids >= num_words, OOV, ids
    )
    short = np.flatnonzero(n < length)
    out[short, length - n[short] - 1] = START
    return out


def _encoded_ok(arrays: dict[str, np.ndarray], length: int) -> bool:
    names = ("train", "validation", "test")
    return all(
        f"x_{s}" in arrays
        and f"y_{s}" in arrays
        and arrays[f"x_{s}"].ndim == 2
        and arrays[f"x_{s}"].shape == (len(arrays[f"y_{s}"]), length)
        for s in names
    )
