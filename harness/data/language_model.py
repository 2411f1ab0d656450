"""IMDB reviews as a word-level language-modelling corpus: predict each next word of the text.

The same tokenised corpus and `num_words` vocabulary as the classification task
(`harness.data.corpus`): ids >= num_words become 2 (out of vocabulary), 0 (padding)
never occurs, and id 1, the classifier's start marker, is reused as EOR, the end-of-review token
appended after every review,
so a model learns where reviews end and never sees a new id.

Train reviews give the train and validation text (split by whole reviews, so no review is shared),
test reviews give the test text. Each split's reviews are concatenated into one stream, cut into
contiguous non-overlapping windows: truncated backpropagation through time with the hidden state
reset at every window (state is not carried from one window to the next).

No cache of its own: the windows are rebuilt from the cached corpus (`cached_corpus`) in about
0.1 s for the full archive, cheaper than reading them back from disk would save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.corpus import (
    OOV,
    START,
    TokenizedSplit,
    cache_folder,
    cached_corpus,
    choose_reviews,
    preprocessing,
)
from harness.data.source import resolve_source, source_digest
from harness.errors import BenchError

EOR = START  # end-of-review token (id 1), appended after every review
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True, eq=False)
class TokenSplit:
    """Windows of one split's stream: row i of `y` is row i of `x` moved one token on."""

    x: np.ndarray  # int32 (windows, sequence_length): input tokens
    y: np.ndarray  # int32 (windows, sequence_length): the next token for each input position

    def __len__(self) -> int:
        return len(self.x)

    @property
    def tokens(self) -> int:
        """How many tokens a pass predicts: the denominator of a per-token loss or perplexity."""
        return int(self.x.size)


@dataclass(frozen=True, eq=False)
class LanguageModelData:
    """What a backend trains and evaluates a language model on, plus what a run logs about it."""

    train: TokenSplit  # windows of the train reviews, in a seeded random review order
    validation: TokenSplit  # the same reviews load_imdb holds out for this seed and fraction
    test: TokenSplit  # the official test reviews (or their subset), neg then pos
    vocab_size: int  # == num_words: ids 0..num_words-1 can occur (0 never does)
    digest: str  # source_digest of the archive
    params: dict[str, object]  # the preprocessing parameters, flat, for logging
    unigram_counts: np.ndarray  # int64 (vocab_size,): each id's count as a target in train


def load_language_model_data(
    source: str | Path | None,
    *,
    num_words: int = 10_000,
    sequence_length: int = 64,
    validation_fraction: float = 0.2,
    split_seed: int = 0,
    subset: int | None = None,
    cache: Path | None = None,
) -> LanguageModelData:
    """Train/validation/test windows of `source` for next-word prediction.

    `subset` keeps that many reviews of train and of test (labels in their original proportion),
    chosen as load_imdb chooses them; validation is then a seeded `validation_fraction` of the
    (subset) train reviews, again the very reviews load_imdb holds out. A trailing remainder of a
    stream too short for a full window (and its next token) is dropped.
    """
    checked = preprocessing(num_words, sequence_length, validation_fraction, split_seed, subset)
    params: dict[str, object] = {"task": "language_model", **checked.as_params()}
    source = resolve_source(source)
    digest = source_digest(source)
    corpus = cached_corpus(source, cache_folder(cache), digest)
    rows = choose_reviews(corpus, checked)
    splits = {}
    for name in SPLIT_NAMES:
        reviews = corpus.test if name == "test" else corpus.train
        stream = review_stream(reviews, rows[name], checked.num_words)
        splits[name] = _windows(stream, checked.sequence_length, name)
    counts = np.bincount(splits["train"].y.ravel(), minlength=checked.num_words).astype(np.int64)
    return LanguageModelData(
        **splits, vocab_size=checked.num_words, digest=digest, params=params, unigram_counts=counts
    )


def unigram_perplexity(counts: np.ndarray, split: TokenSplit) -> float:
    """Perplexity of `split`'s targets under add-one smoothed unigram frequencies `counts`.

    The baseline a language model must beat: it knows how common each word is, not its context.
    p(w) = (counts[w] + 1) / (sum(counts) + V) with V = len(counts); returns exp(-mean log p(y)).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if split.tokens == 0:
        raise BenchError("expected a split with at least one token; received an empty split")
    if counts.ndim != 1 or len(counts) == 0 or split.y.max() >= len(counts):
        raise BenchError(
            f"expected counts of shape (vocab_size,) covering every id of the split; received "
            f"shape {counts.shape} for a split whose largest id is {int(split.y.max())}"
        )
    log_p = np.log(counts + 1.0) - math.log(counts.sum() + len(counts))
    return float(np.exp(-log_p[split.y].mean()))


def review_stream(split: TokenizedSplit, rows: np.ndarray, num_words: int) -> np.ndarray:
    """The reviews `rows` of `split`, in that order, capped to `num_words`, each followed by EOR.

    Vectorised: every token's place in the stream is its place in its review plus the start of
    that review in the stream, so there is no Python loop over reviews or tokens.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, lengths = split.offsets[rows], split.offsets[rows + 1] - split.offsets[rows]
    out_ends = np.cumsum(lengths + 1)  # one past each review's EOR in the stream
    out_starts = out_ends - lengths - 1
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ids = split.ids[np.repeat(starts, lengths) + within]
    stream = np.full(int(out_ends[-1]) if len(rows) else 0, EOR, dtype=np.int32)
    stream[np.repeat(out_starts, lengths) + within] = np.where(ids >= num_words, OOV, ids)
    return stream


def _windows(stream: np.ndarray, length: int, name: str) -> TokenSplit:
    """Non-overlapping windows of `length` inputs; each needs one more token as its last target."""
    n = (len(stream) - 1) // length
    if n < 1:
        raise BenchError(
            f"expected the {name} split to hold at least sequence_length + 1 = {length + 1} "
            f"tokens for one window; received {len(stream)} tokens with "
            f"sequence_length={length} (lower sequence_length or raise subset)"
        )
    x = stream[: n * length].reshape(n, length).copy()  # copies: x and y must not share memory
    y = stream[1 : n * length + 1].reshape(n, length).copy()
    return TokenSplit(x=x, y=y)
