"""The tokenised IMDB corpus both tasks build on, the cache it lives in, and their shared checks.

Every review is tokenised once into a flat stream of word-rank ids, numbered the way
keras.datasets.imdb numbers them, and cached under `<cache>/imdb/` keyed by the archive's digest:
reading and tokenising 50,000 reviews is the slow step, so it happens once per archive.
`harness.data.classification` pads these reviews into fixed-length rows and
`harness.data.language_model` cuts them into next-word windows; both check their parameters and
choose their reviews here, so a language model is validated on the very reviews the classifier
held out.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
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
CORPUS_FORMAT = 1  # bump when tokenisation or the cached layout changes: old caches are ignored

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


def load_corpus(source: str | Path | None, cache: Path | None = None) -> TokenizedCorpus:
    """The tokenised corpus of `source` (see resolve_source), from cache or built and cached."""
    source = resolve_source(source)
    return cached_corpus(source, cache_folder(cache), source_digest(source))


def cache_folder(cache: Path | None) -> Path:
    """`<cache>/imdb/`, created and proven writable; `cache` None means `cache_dir()`."""
    folder = (Path(cache) if cache is not None else cache_dir()) / "imdb"
    ensure_writable(folder)
    return folder


def cached_corpus(source: Path, folder: Path, digest: str) -> TokenizedCorpus:
    """The corpus of `source` read from `folder` if there, else built from `source` and saved."""
    key = json.dumps({"format": CORPUS_FORMAT, "digest": digest})
    path = folder / f"corpus-{digest[:24]}.npz"
    arrays = load_npz(path, key)
    if arrays is None or not _CORPUS_ARRAYS <= arrays.keys():
        arrays = _build_corpus(source)
        save_npz(path, key, arrays)
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


@dataclass(frozen=True)
class Preprocessing:
    """The parameters both tasks prepare their data with, checked, as plain numbers (numpy
    ones would break json cache keys and logged params)."""

    num_words: int  # ids >= num_words become OOV
    sequence_length: int  # tokens per row (classification) or per window (language model)
    validation_fraction: float  # of the train reviews, held out
    split_seed: int
    subset: int | None  # reviews kept per split; None keeps all

    def as_params(self) -> dict[str, object]:
        return asdict(self)


def preprocessing(
    num_words: object,
    sequence_length: object,
    validation_fraction: object,
    split_seed: object,
    subset: object,
) -> Preprocessing:
    """The parameters checked and normalised, or a one-line BenchError for a value no run can
    use, before any slow work."""
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
    if not (real and 0 < validation_fraction < 1):  # type: ignore[operator]
        raise BenchError(
            f"expected validation_fraction strictly between 0 and 1; "
            f"received validation_fraction={validation_fraction!r}"
        )
    return Preprocessing(
        int(num_words),  # type: ignore[call-overload]
        int(sequence_length),  # type: ignore[call-overload]
        float(validation_fraction),  # type: ignore[arg-type]
        int(split_seed),  # type: ignore[call-overload]
        None if subset is None else int(subset),  # type: ignore[call-overload]
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def choose_reviews(corpus: TokenizedCorpus, params: Preprocessing) -> dict[str, np.ndarray]:
    """The review indices of train, validation and test, from seeded streams of their own.

    Both tasks call this, so a language model is validated on exactly the reviews the sentiment
    classifier held out.
    """
    validation_fraction, split_seed, subset = (
        params.validation_fraction,
        params.split_seed,
        params.subset,
    )
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


def _rng(seed: int, stream: int) -> np.random.Generator:
    """Independent seeded streams, so the subset of test does not move with that of train."""
    return np.random.default_rng([seed, stream])


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` items, the labels in their original proportion, in original order."""
    neg, pos = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    n_neg = n * len(neg) // len(labels)
    picked = np.concatenate([rng.permutation(neg)[:n_neg], rng.permutation(pos)[: n - n_neg]])
    return np.sort(picked)


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


def load_npz(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under `key`, or None when missing, for another key, or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return {name: data[name] for name in data.files if name != "key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def save_npz(path: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
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
