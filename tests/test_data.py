"""The data pipeline: how reviews become ids, the splits, and the caches."""

from __future__ import annotations

import tarfile

import numpy as np
from tiny_imdb import TINY, make_archive

from harness.data import classification as imdb
from harness.data import corpus as tokenised
from harness.data.classification import ImdbData, load_imdb
from harness.data.corpus import load_corpus, tokenize
from harness.data.source import source_digest


def same_data(a: ImdbData, b: ImdbData) -> bool:
    return all(
        np.array_equal(getattr(a, s).x, getattr(b, s).x)
        and np.array_equal(getattr(a, s).y, getattr(b, s).y)
        for s in ("train", "validation", "test")
    )


# Tokenisation


def test_tokenize_lowercases_drops_html_breaks_and_keeps_apostrophes():
    text = "Don't STOP<br /><br />it's GREAT!<br/>ok<br>fine, 10/10"
    assert tokenize(text) == ["don't", "stop", "it's", "great", "ok", "fine", "10", "10"]


def test_tokenize_real_review_has_no_markup(imdb_slice):
    corpus = load_corpus(imdb_slice)
    assert "br" not in corpus.words
    assert all(word == word.lower() for word in corpus.words)
    assert "don't" in corpus.words


# Index convention and vocabulary


def test_index_convention_and_train_only_vocabulary(tmp_path):
    corpus = load_corpus(make_archive(tmp_path, TINY, tarball=True))
    assert corpus.words == ["the", "cat", "a", "dog", "sat", "zebra"]
    assert "unicorn" not in corpus.words
    assert corpus.test.review(0).tolist() == [3, 4, 2, 2, 2]  # test/neg/2_1, unicorn -> 2
    assert corpus.train.labels.tolist() == [0, 0, 1, 1]
    assert corpus.test.labels.tolist() == [0, 0, 1, 1]


def test_num_words_caps_ids(tmp_path):
    data = load_imdb(
        make_archive(tmp_path, TINY, tarball=True), num_words=6, sequence_length=5,
        validation_fraction=0.5,
    )  # fmt: skip
    assert data.vocab_size == 6
    for split in (data.train, data.validation, data.test):
        assert split.x.max() < 6
    assert data.test.x[2].tolist() == [2, 2, 5, 4, 3]  # test/pos/1_9: zebra, sat, dog -> 2


def test_pre_padding_and_pre_truncation(tmp_path):
    data = load_imdb(
        make_archive(tmp_path, TINY, tarball=False), num_words=100, sequence_length=5,
        validation_fraction=0.5,
    )  # fmt: skip
    assert data.test.x.dtype == np.int32
    assert data.test.y.dtype == np.float32
    assert data.test.x.tolist() == [
        [3, 4, 2, 2, 2],  # test/neg/2_1: start + 5 words, truncated at the front -> start lost
        [1, 4, 3, 3, 4],  # test/neg/10_3: start + 4 words fit exactly
        [7, 6, 5, 4, 3],  # test/pos/1_9: 6 words, the last 5 kept
        [0, 0, 0, 0, 1],  # test/pos/3_8: an empty review is just the start marker
    ]
    assert data.test.y.tolist() == [0, 0, 1, 1]
    short = load_imdb(
        make_archive(tmp_path / "b", TINY, tarball=False), num_words=100, sequence_length=8,
        validation_fraction=0.5,
    )  # fmt: skip
    assert short.test.x[1].tolist() == [0, 0, 0, 1, 4, 3, 3, 4]


def test_real_review_decodes_to_the_tail_of_its_text(imdb_slice):
    length = 40
    data = load_imdb(imdb_slice, num_words=50_000, sequence_length=length)
    corpus = load_corpus(imdb_slice)
    with tarfile.open(imdb_slice) as archive:
        names = sorted(
            (m.name for m in archive if m.name.startswith("aclImdb/test/neg/")),
            key=lambda name: int(name.rsplit("/", 1)[1].split("_")[0]),
        )
        raw = archive.extractfile(names[0]).read().decode()
    known = set(corpus.words)
    words = [w if w in known else "<oov>" for w in tokenize(raw)]
    assert len(words) > length and "<oov>" in words  # a long review with test-only words
    assert corpus.decode(data.test.x[0]) == words[-length:]


# Splits


def test_validation_split_is_seeded(imdb_slice, tmp_path):
    def load(seed: int, folder: str) -> ImdbData:
        return load_imdb(
            imdb_slice, validation_fraction=0.25, split_seed=seed, cache=tmp_path / folder
        )

    a, again, other = load(0, "a"), load(0, "b"), load(1, "c")
    assert (len(a.train), len(a.validation), len(a.test)) == (225, 75, 300)
    assert same_data(a, again)
    assert not np.array_equal(a.validation.x, other.validation.x)
    assert np.array_equal(a.test.x, other.test.x)

    def rows(d: ImdbData) -> list[bytes]:
        return sorted(row.tobytes() for row in np.concatenate([d.train.x, d.validation.x]))

    assert rows(a) == rows(other)  # the same reviews, only split differently
    assert set(a.train.y) == {0.0, 1.0}


def test_subset_keeps_labels_balanced(imdb_slice):
    data = load_imdb(imdb_slice, subset=np.int64(100), validation_fraction=0.2)
    assert (len(data.train), len(data.validation), len(data.test)) == (80, 20, 100)
    assert data.train.y.sum() + data.validation.y.sum() == 50
    assert data.test.y.sum() == 50
    assert data.params["subset"] == 100
    odd = load_imdb(imdb_slice, subset=11)
    assert sorted([odd.test.y.sum(), len(odd.test) - odd.test.y.sum()]) == [5, 6]


def test_slice_holds_the_first_reviews_of_each_folder(imdb_slice):
    corpus = load_corpus(imdb_slice)
    for split in (corpus.train, corpus.test):
        assert len(split) == 300
        assert np.bincount(split.labels).tolist() == [150, 150]
        assert split.offsets[0] == 0 and split.offsets[-1] == len(split.ids)


def test_tarball_and_extracted_folder_give_the_same_arrays(imdb_slice, tmp_path):
    with tarfile.open(imdb_slice) as archive:
        archive.extractall(tmp_path, filter="data")
    from_tarball = load_imdb(imdb_slice, sequence_length=64)
    for folder in (tmp_path, tmp_path / "aclImdb"):
        assert same_data(from_tarball, load_imdb(folder, sequence_length=64))
    assert source_digest(tmp_path / "aclImdb") != source_digest(imdb_slice)


# Caches


def test_second_load_reads_the_encoded_cache(imdb_slice, fresh_cache, monkeypatch):
    first = load_imdb(imdb_slice, sequence_length=32)
    encoded = sorted((fresh_cache / "imdb").glob("encoded-*.npz"))
    assert len(encoded) == 1
    stamp = encoded[0].stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(tokenised, "tokenize", boom)
    monkeypatch.setattr(imdb, "_pad", boom)
    assert same_data(first, load_imdb(imdb_slice, sequence_length=32))
    assert encoded[0].stat().st_mtime_ns == stamp
    monkeypatch.undo()
    monkeypatch.setattr(tokenised, "tokenize", boom)  # new parameters: the corpus is reused
    assert len(load_imdb(imdb_slice, sequence_length=16).test) == 300


def test_corrupt_cache_files_are_rebuilt(imdb_slice, fresh_cache):
    first = load_imdb(imdb_slice, sequence_length=32)
    for path in (fresh_cache / "imdb").glob("*.npz"):
        path.write_bytes(path.read_bytes()[:1000])
    assert same_data(first, load_imdb(imdb_slice, sequence_length=32))
    assert len(load_corpus(imdb_slice).train) == 300


# The full archive, once


def test_full_archive_with_default_parameters(imdb_archive, monkeypatch):
    data = load_imdb(imdb_archive)
    assert (len(data.train), len(data.validation), len(data.test)) == (20_000, 5_000, 25_000)
    assert data.test.y.sum() == 12_500
    assert data.train.x.shape == (20_000, 200)
    assert data.vocab_size == 10_000 and data.train.x.max() == 9_999
    corpus = load_corpus(imdb_archive)
    assert corpus.words[0] == "the"  # id 3
    assert {"and", "a", "of", "to", "is"} <= set(corpus.words[:10])
    assert np.bincount(corpus.train.labels).tolist() == [12_500, 12_500]

    def boom(*args, **kwargs):
        raise AssertionError("a cached load must not read, tokenise or pad again")

    # The second load is the cached arrays: the archive is not read, nothing is re-encoded.
    for module, name in ((tokenised, "read_reviews"), (tokenised, "tokenize"), (imdb, "_pad")):
        monkeypatch.setattr(module, name, boom)
    again = load_imdb(imdb_archive)
    assert same_data(data, again)
