"""IMDB reviews as token ids, the way keras.datasets.imdb numbers them, with two layers of cache.

Layer 1, `load_corpus`: every review tokenised once into a flat stream of word-rank ids, keyed by
the archive's digest (the slow step: reading and tokenising 50,000 reviews).
Layer 2, `load_imdb`: fixed-length padded arrays split into train/validation/test, keyed by the
digest and every preprocessing parameter, so a repeated run only reads one `.npz`.
Both live under `<cache>/imdb/`, are written atomically, and are rebuilt when unreadable.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np

from harness.data.source import (
    SPLITS,
    cache_dir,
    ensure_writable,
    progress_bar,
    read_reviews,
    resolve_source,
    source_digest,
)
from harness.errors import BenchError

PAD, START, OOV = 0, 1, 2  # reserved ids, as in keras.datasets.imdb
FIRST_WORD = 3  # id of the most frequent training word; the word of rank r has id r + 3
CORPUS_FORMAT = 1  # bump when tokenisation or the layer-1 layout changes: old caches are ignored
ENCODED_FORMAT = 1  # bump when encoding or the layer-2 layout changes

_CORPUS_ARRAYS = {"words"} | {f"{s}_{a}" for s in SPLITS for a in ("ids", "offsets", "labels")}
_BREAK = re.compile(r"<br\s*/?>")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W\d_]+)?")


def tokenize(text: str) -> list[str]:
    """Split a review into words, close to the tokenisation behind keras.datasets.imdb.

    Lower-cases, turns HTML line breaks (`<br />`, `<br/>`, `<br>`) into spaces, then keeps runs
    of letters and digits (any script), each with an optional apostrophe suffix of letters, so
    "Don't" -> "don't" and "it's" stays one word; other punctuation separates words and is dropped.
    """
    return _TOKEN.findall(_BREAK.sub(" ", text.lower()))


@dataclass(frozen=True, eq=False)
class TokenizedSplit:
    """One split as a stream: review i is `ids[offsets[i]:offsets[i + 1]]`, label `labels[i]`."""

    ids: np.ndarray  # int32, flat: word of rank r -> r + 3; a word unseen in train -> 2
    offsets: np.ndarray  # int64, len n + 1, offsets[0] == 0
    labels: np.ndarray  # int8, 0 = neg, 1 = pos

    def __len__(self) -> int:
        return len(self.labels)

    def review(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


@dataclass(frozen=True, eq=False)
class TokenizedCorpus:
    """All reviews, tokenised, in a fixed order: neg then pos, each by numeric review id.

    The vocabulary is ranked on the train split only: by count, ties by code point order.
    """

    words: list[str]  # words[i] has id i + 3
    train: TokenizedSplit
    test: TokenizedSplit
    digest: str  # source_digest of the archive it came from

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids back to words, with <pad>, <start> and <oov> for the reserved ones (for humans)."""
        reserved = ("<pad>", "<start>", "<oov>")
        return [reserved[i] if i < FIRST_WORD else self.words[i - FIRST_WORD] for i in ids]


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


def load_corpus(source: str | Path | None, cache: Path | None = None) -> TokenizedCorpus:
    """The tokenised corpus of `source` (see resolve_source), from cache or built and cached."""
    source = resolve_source(source)
    return _corpus(source, _cache_folder(cache), source_digest(source))


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
    _check_params(num_words, sequence_length, validation_fraction, split_seed, subset)
    num_words, sequence_length, split_seed = int(num_words), int(sequence_length), int(split_seed)
    validation_fraction = float(validation_fraction)  # plain numbers: numpy ones break json keys
    subset = None if subset is None else int(subset)
    params: dict[str, object] = {
        "num_words": num_words,
        "sequence_length": sequence_length,
        "validation_fraction": validation_fraction,
        "split_seed": split_seed,
        "subset": subset,
    }
    source = resolve_source(source)
    folder = _cache_folder(cache)
    digest = source_digest(source)
    key = json.dumps({"format": [CORPUS_FORMAT, ENCODED_FORMAT], "digest": digest, **params})
    path = folder / f"encoded-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"
    arrays = _load_npz(path, key)
    if arrays is None or not _encoded_ok(arrays, sequence_length):
        corpus = _corpus(source, folder, digest)
        arrays = _encode_corpus(
            corpus, num_words, sequence_length, validation_fraction, split_seed, subset
        )
        _save_npz(path, key, arrays)
    splits = {
        name: Split(x=arrays[f"x_{name}"], y=arrays[f"y_{name}"])
        for name in ("train", "validation", "test")
    }
    return ImdbData(**splits, vocab_size=num_words, digest=digest, params=params)


def _check_params(
    num_words: object,
    sequence_length: object,
    validation_fraction: object,
    split_seed: object,
    subset: object,
) -> None:
    """One-line BenchErrors for values no run can use, before any slow work."""
    rules = (
        ("num_words", num_words, 4, "an int >= 4 (ids 0-2 are reserved, 3 is the top word)"),
        ("sequence_length", sequence_length, 1, "an int >= 1"),
        ("split_seed", split_seed, 0, "an int >= 0"),
        ("subset", subset, 2, "None or an int >= 2 (one review per label at least)"),
    )
    for name, value, low, expected in rules:
        if not (value is None and name == "subset") and not (_is_int(value) and value >= low):
            raise BenchError(f"expected {name} to be {expected}; received {name}={value!r}")
    real = isinstance(validation_fraction, numbers.Real) and not isinstance(
        validation_fraction, bool
    )
    if not (real and 0 < validation_fraction < 1):
        raise BenchError(
            f"expected validation_fraction strictly between 0 and 1; "
            f"received validation_fraction={validation_fraction!r}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def choose_reviews(
    corpus: TokenizedCorpus, validation_fraction: float, split_seed: int, subset: int | None
) -> dict[str, np.ndarray]:
    """The review indices of train, validation and test, from seeded streams of their own.

    Both tasks call this, so a language model is validated on exactly the reviews the sentiment
    classifier held out.
    """
    rows = {}
    for stream, (name, split) in enumerate((("train", corpus.train), ("test", corpus.test))):
        rows[name] = np.arange(len(split))
        if subset is not None:
            if subset > len(split):
                raise BenchError(
                    f"expected subset <= {len(split)} (the {name} reviews in the archive); "
                    f"received subset={subset}"
                )
            rows[name] = _stratified(split.labels, subset, _rng(split_seed, stream))
    n_val = round(len(rows["train"]) * validation_fraction)
    if not 0 < n_val < len(rows["train"]):
        raise BenchError(
            f"expected validation_fraction to leave at least one review in train and in "
            f"validation; received validation_fraction={validation_fraction} of "
            f"{len(rows['train'])} train reviews"
        )
    shuffled = rows["train"][_rng(split_seed, 2).permutation(len(rows["train"]))]
    return {"train": shuffled[n_val:], "validation": shuffled[:n_val], "test": rows["test"]}


def _encode_corpus(
    corpus: TokenizedCorpus,
    num_words: int,
    sequence_length: int,
    validation_fraction: float,
    split_seed: int,
    subset: int | None,
) -> dict[str, np.ndarray]:
    """Layer 2 from layer 1: choose the rows of each split, then pad them."""
    chosen = choose_reviews(corpus, validation_fraction, split_seed, subset)
    arrays = {}
    for name, picked in chosen.items():
        split = corpus.test if name == "test" else corpus.train
        arrays[f"x_{name}"] = _pad(split, picked, num_words, sequence_length)
        arrays[f"y_{name}"] = split.labels[picked].astype(np.float32)
    return arrays


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent seeded streams, so the subset of test does not move with that of train."""
    return np.random.default_rng([seed, stream])


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` items, the labels in their original proportion, in original order."""
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    n_neg = n * len(neg) // len(labels)
    picked = np.concatenate([rng.permutation(neg)[:n_neg], rng.permutation(pos)[: n - n_neg]])
    return np.sort(picked)


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


def _corpus(source: Path, folder: Path, digest: str) -> TokenizedCorpus:
    """Layer 1: read from `folder` if there, else build from `source` and save."""
    key = json.dumps({"format": CORPUS_FORMAT, "digest": digest})
    path = folder / f"corpus-{digest[:24]}.npz"
    arrays = _load_npz(path, key)
    if arrays is None or not _CORPUS_ARRAYS <= arrays.keys():
        arrays = _build_corpus(source)
        _save_npz(path, key, arrays)
    text = arrays["words"].tobytes().decode("utf-8")
    splits = {
        name: TokenizedSplit(
            ids=arrays[f"{name}_ids"],
            offsets=arrays[f"{name}_offsets"],
            labels=arrays[f"{name}_labels"],
        )
        for name in SPLITS
    }
    return TokenizedCorpus(words=text.split("\n") if text else [], digest=digest, **splits)


def _build_corpus(source: Path) -> dict[str, np.ndarray]:
    """Read and tokenise every review, then rank the vocabulary on train and renumber."""
    # A word's first-seen number, so each review becomes an int array while streaming; ranks
    # are only known once all of train has been counted.
    first_seen: defaultdict[str, int] = defaultdict(count().__next__)
    reviews: dict[tuple[int, int, int, int], np.ndarray] = {}
    with progress_bar() as progress:
        task = progress.add_task("tokenising IMDB reviews", total=None)
        for r in read_reviews(
            source, lambda done, total: progress.update(task, completed=done, total=total)
        ):
            words = tokenize(r.text)
            ids = np.fromiter(map(first_seen.__getitem__, words), dtype=np.int32, count=len(words))
            reviews[SPLITS.index(r.split), r.label, r.review_id, r.rating] = ids
    streams = {}
    for number, name in enumerate(SPLITS):
        keys = sorted(k for k in reviews if k[0] == number)
        lengths = [len(reviews[k]) for k in keys]
        streams[name] = (
            np.concatenate([reviews[k] for k in keys] or [np.zeros(0, np.int32)]),
            np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
            np.array([k[1] for k in keys], dtype=np.int8),
        )
    vocabulary = list(first_seen)
    counts = np.bincount(streams["train"][0], minlength=len(vocabulary)).tolist()
    ranked = sorted(
        (i for i, c in enumerate(counts) if c), key=lambda i: (-counts[i], vocabulary[i])
    )
    new_id = np.full(len(vocabulary), OOV, dtype=np.int32)
    new_id[ranked] = np.arange(FIRST_WORD, FIRST_WORD + len(ranked), dtype=np.int32)
    words = "\n".join(vocabulary[i] for i in ranked).encode("utf-8")
    arrays = {"words": np.frombuffer(words, dtype=np.uint8)}
    for name, (ids, offsets, labels) in streams.items():
        arrays |= {f"{name}_ids": new_id[ids], f"{name}_offsets": offsets, f"{name}_labels": labels}
    return arrays


def _cache_folder(cache: Path | None) -> Path:
    folder = (Path(cache) if cache is not None else cache_dir()) / "imdb"
    ensure_writable(folder)
    return folder


def _load_npz(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under `key`, or None when missing, for another key, or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return {name: data[name] for name in data.files if name != "key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _save_npz(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file and rename, so a killed process never leaves half a cache."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, key=np.array(key), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is no secret
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BenchError(
            f"cannot write the cache file {path}: {exc}; set BENCH_CACHE to a writable folder"
        ) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
