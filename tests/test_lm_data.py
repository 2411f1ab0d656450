"""The language-modelling corpus: windows, the end-of-review token, splits, and the baseline."""

from __future__ import annotations

import math
import tarfile
import time
from collections import Counter

import numpy as np
import pytest

from harness.data import corpus as tokenised
from harness.data.classification import load_imdb
from harness.data.corpus import OOV, load_corpus, tokenize
from harness.data.language_model import (
    EOR,
    LanguageModelData,
    TokenSplit,
    load_language_model_data,
    unigram_perplexity,
)
from harness.errors import BenchError

SLICE_TRAIN = SLICE_TEST = 300  # reviews per split in the imdb_slice fixture


def stream_of(split: TokenSplit) -> np.ndarray:
    """The part of the stream the windows cover: every input, then the last target."""
    return np.concatenate([split.x.ravel(), split.y[-1, -1:]])


def whole_reviews(split: TokenSplit) -> list[tuple[int, ...]]:
    """The reviews that end (with EOR) inside the windows, in stream order, EOR stripped."""
    stream = stream_of(split)
    ends = np.flatnonzero(stream == EOR)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tuple(stream[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]


def capped(review: np.ndarray, num_words: int) -> tuple[int, ...]:
    """A corpus review as the language model must see it, written independently of the module."""
    return tuple(OOV if i >= num_words else int(i) for i in review)


def load(source, **params) -> LanguageModelData:
    return load_language_model_data(source, **params)


# Windows


def test_targets_are_the_inputs_moved_one_token_on(imdb_slice):
    data = load(imdb_slice, sequence_length=16)
    for split in (data.train, data.validation, data.test):
        assert split.x.dtype == split.y.dtype == np.int32
        assert split.x.shape == split.y.shape and split.x.shape[1] == 16
        assert len(split) == split.x.shape[0] > 1 and split.tokens == split.x.size
        assert np.array_equal(split.x[:, 1:], split.y[:, :-1])
        assert np.array_equal(split.y[:-1, -1], split.x[1:, 0])  # windows are contiguous
    assert not np.shares_memory(data.train.x, data.train.y)


def test_test_stream_is_the_capped_reviews_each_followed_by_eor(imdb_slice):
    num_words, length = 100, 32
    data = load(imdb_slice, num_words=num_words, sequence_length=length)
    corpus = load_corpus(imdb_slice)
    expected = np.array(
        [
            t
            for i in range(len(corpus.test))
            for t in (*capped(corpus.test.review(i), num_words), EOR)
        ]
    )
    got = stream_of(data.test)
    assert 0 <= len(expected) - len(got) < length  # only a remainder shorter than a window goes
    assert np.array_equal(got, expected[: len(got)])
    assert (corpus.test.ids >= num_words).any() and (got == OOV).any()  # capping happened


def test_every_id_is_in_the_vocabulary_and_padding_never_occurs(imdb_slice):
    data = load(imdb_slice, num_words=50, sequence_length=32)
    for split in (data.train, data.validation, data.test):
        assert split.x.min() >= 1 and split.y.min() >= 1
        assert split.x.max() < 50 and split.y.max() < 50
    assert data.vocab_size == 50
    assert data.unigram_counts.dtype == np.int64 and data.unigram_counts.shape == (50,)
    assert np.array_equal(data.unigram_counts, np.bincount(data.train.y.ravel(), minlength=50))
    assert data.unigram_counts.sum() == data.train.tokens


def test_one_eor_per_review_up_to_the_dropped_remainder(imdb_slice):
    length = 64
    data = load(imdb_slice, sequence_length=length)
    eors = sum(int((stream_of(s) == EOR).sum()) for s in (data.train, data.validation))
    # Each of the two streams drops fewer than `length` tokens, its final EOR among them.
    assert SLICE_TRAIN - 2 * length < eors <= SLICE_TRAIN
    assert SLICE_TEST - length < int((stream_of(data.test) == EOR).sum()) <= SLICE_TEST


def test_windows_of_one_token_keep_every_review(imdb_slice):
    # With sequence_length 1 nothing is dropped, so the counts are exact.
    data = load(imdb_slice, sequence_length=1, validation_fraction=0.2)
    assert int((stream_of(data.train) == EOR).sum()) == 240
    assert int((stream_of(data.validation) == EOR).sum()) == 60
    assert int((stream_of(data.test) == EOR).sum()) == SLICE_TEST
    assert stream_of(data.test)[-1] == EOR


def test_first_test_window_decodes_to_the_first_test_review(imdb_slice):
    num_words, length = 500, 64
    data = load(imdb_slice, num_words=num_words, sequence_length=length)
    corpus = load_corpus(imdb_slice)
    with tarfile.open(imdb_slice) as archive:  # the harness orders test as neg, then by id
        names = sorted(
            (m.name for m in archive if m.name.startswith("aclImdb/test/neg/")),
            key=lambda name: int(name.rsplit("/", 1)[1].split("_")[0]),
        )
        raw = archive.extractfile(names[0]).read().decode()
    rank = {word: i + 3 for i, word in enumerate(corpus.words)}
    words = [w if rank.get(w, num_words) < num_words else "<oov>" for w in tokenize(raw)]
    assert "<oov>" in words and all(w == w.lower() for w in words)
    expected = (words + ["<start>"])[:length]  # decode names EOR (id 1) "<start>"
    assert corpus.decode(data.test.x[0].tolist())[: len(expected)] == expected


# Splits


def test_validation_reviews_are_whole_disjoint_and_seeded(imdb_slice, tmp_path):
    num_words = 10_000
    corpus = load_corpus(imdb_slice)
    train_reviews = [capped(corpus.train.review(i), num_words) for i in range(SLICE_TRAIN)]
    assert len(set(train_reviews)) == SLICE_TRAIN  # no duplicate texts, so sets can tell apart

    def split(seed: int, folder: str) -> LanguageModelData:
        return load(
            imdb_slice,
            num_words=num_words,
            sequence_length=1,
            validation_fraction=0.25,
            split_seed=seed,
            cache=tmp_path / folder,
        )

    a, again, other = split(0, "a"), split(0, "b"), split(1, "c")
    train, validation = whole_reviews(a.train), whole_reviews(a.validation)
    assert (len(train), len(validation)) == (225, 75)  # the right proportion, by reviews
    assert not set(train) & set(validation)
    assert Counter(train + validation) == Counter(train_reviews)  # every review, each once
    for name in ("train", "validation", "test"):
        assert np.array_equal(getattr(a, name).x, getattr(again, name).x)
    assert set(whole_reviews(other.validation)) != set(validation)
    assert np.array_equal(a.test.x, other.test.x)
    assert a.params == {
        "task": "language_model",
        "num_words": num_words,
        "sequence_length": 1,
        "validation_fraction": 0.25,
        "split_seed": 0,
        "subset": None,
    }


def test_validation_holds_the_reviews_the_classifier_holds_out(imdb_slice):
    corpus = load_corpus(imdb_slice)
    longest = int(np.diff(corpus.train.offsets).max())
    classifier = load_imdb(imdb_slice, num_words=1000, sequence_length=longest + 1, split_seed=3)
    held_out = [tuple(row[row > 0][1:].tolist()) for row in classifier.validation.x]
    lm = load(imdb_slice, num_words=1000, sequence_length=1, split_seed=3)
    assert whole_reviews(lm.validation) == held_out  # same reviews, same order


def test_subset_keeps_that_many_reviews_of_each_split(imdb_slice):
    data = load(imdb_slice, subset=np.int64(50), sequence_length=1)
    train_eors = sum(int((stream_of(s) == EOR).sum()) for s in (data.train, data.validation))
    assert train_eors == 50 and int((stream_of(data.test) == EOR).sum()) == 50
    assert data.params["subset"] == 50 and isinstance(data.params["subset"], int)


# The unigram baseline


def test_unigram_perplexity_by_hand():
    counts = np.array([0, 2, 1, 0, 3])  # V = 5, 6 tokens: p = (count + 1) / 11
    split = TokenSplit(
        x=np.zeros((2, 2), dtype=np.int32), y=np.array([[1, 4], [2, 3]], dtype=np.int32)
    )
    by_hand = (11**4 / (3 * 4 * 2 * 1)) ** (1 / 4)
    assert unigram_perplexity(counts, split) == pytest.approx(by_hand, rel=1e-12)


def test_uniform_counts_give_the_vocabulary_size(imdb_slice):
    data = load(imdb_slice, num_words=200, sequence_length=16)
    uniform = np.full(200, 7, dtype=np.int64)
    assert unigram_perplexity(uniform, data.test) == pytest.approx(200, rel=1e-12)
    baseline = unigram_perplexity(data.unigram_counts, data.test)
    assert 1 < baseline < 200


def test_unigram_perplexity_rejects_counts_that_miss_ids():
    split = TokenSplit(x=np.zeros((1, 2), dtype=np.int32), y=np.array([[1, 9]], dtype=np.int32))
    with pytest.raises(BenchError):
        unigram_perplexity(np.ones(5, dtype=np.int64), split)


# Bad arguments


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"num_words": 3}, "num_words"),
        ({"num_words": 100.0}, "num_words"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"split_seed": -1}, "split_seed"),
        ({"subset": 1}, "subset"),
        ({"subset": SLICE_TRAIN + 1}, "subset"),
        ({"validation_fraction": 0.1, "subset": 2}, "validation_fraction"),
        ({"sequence_length": 1_000_000}, "sequence_length"),  # no split fills one window
        ({"subset": 4, "validation_fraction": 0.25, "sequence_length": 2_000}, "sequence_length"),
    ],
)
def test_bad_arguments_raise_one_line(imdb_slice, params, named):
    with pytest.raises(BenchError) as error:
        load(imdb_slice, **params)
    message = str(error.value)
    assert "\n" not in message and named in message


# The full archive, once


def test_full_archive_with_default_parameters(imdb_archive, monkeypatch):
    load_corpus(imdb_archive)  # tokenised and cached once

    def boom(*args, **kwargs):
        raise AssertionError("the windows must be cut from the cached corpus")

    # Built from the cached corpus: the archive is not read and no review tokenised again.
    monkeypatch.setattr(tokenised, "read_reviews", boom)
    monkeypatch.setattr(tokenised, "tokenize", boom)
    started = time.perf_counter()
    data = load(imdb_archive)
    seconds = time.perf_counter() - started
    baseline = unigram_perplexity(data.unigram_counts, data.test)
    print(
        f"\nlanguage model data built in {seconds:.2f} s: {data.train.tokens:,} train, "
        f"{data.validation.tokens:,} validation, {data.test.tokens:,} test tokens; "
        f"unigram test perplexity {baseline:.1f}"
    )
    assert data.vocab_size == 10_000 and data.train.x.shape[1] == 64
    # Train keeps 80% of the 25,000 train reviews (~4.7M tokens); with validation, > 5M.
    assert data.train.tokens > 4_500_000
    assert data.train.tokens + data.validation.tokens > 5_000_000
    assert 100 < baseline < data.vocab_size
    assert math.isfinite(unigram_perplexity(data.unigram_counts, data.validation))
