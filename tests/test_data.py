"""The data pipeline: where the archive comes from, how reviews become ids, and the caches."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.data import classification as imdb
from harness.data import corpus as tokenised
from harness.data import source as datasource
from harness.data.classification import ImdbData, load_imdb
from harness.data.corpus import load_corpus, tokenize
from harness.data.source import cache_dir, resolve_source, source_digest
from harness.errors import BenchError

# A handmade archive with exact expectations. Train counts: the 4, cat 2, a/dog/sat/zebra 1 each,
# so ids are the=3, cat=4, then ties alphabetically: a=5, dog=6, sat=7, zebra=8. "unicorn" occurs
# three times in test but never in train, so it is out of vocabulary (2).
TINY = {
    "train/pos": {"1_9": "The cat sat.", "2_8": "the THE dog"},
    "train/neg": {"1_1": "the<br /><br />cat", "5_2": "a zebra"},
    # Numeric order 2 < 10 differs from the archive's name order, which the harness must ignore.
    "test/neg": {"10_3": "cat the the cat", "2_1": "the cat unicorn unicorn unicorn"},
    "test/pos": {"3_8": "", "1_9": "zebra sat dog a cat the"},
    # Unlabelled reviews, as in the canonical tarball: never read, or "unicorn" would rank first.
    "train/unsup": {"0_0": "unicorn " * 20},
}


def make_archive(root: Path, reviews: dict[str, dict[str, str]], *, tarball: bool) -> Path:
    """Write `reviews` ({"train/pos": {"[id]_[rating]": text}}) in Stanford's layout."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"aclImdb/README": "tiny"} | {
        f"aclImdb/{folder}/{name}.txt": text
        for folder, texts in reviews.items()
        for name, text in texts.items()
    }
    if not tarball:
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root / "aclImdb"
    path = root / "tiny.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return path


def assert_one_line_naming(error: pytest.ExceptionInfo[BenchError], path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message


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


# Bad input: one line that names the path


def test_missing_path(tmp_path):
    path = tmp_path / "nowhere.tar.gz"
    with pytest.raises(BenchError) as error:
        load_imdb(path)
    assert_one_line_naming(error, path)


def test_text_file_named_like_a_tarball(tmp_path):
    path = tmp_path / "reviews.tar.gz"
    path.write_text("not an archive\n")
    with pytest.raises(BenchError) as error:
        load_imdb(path)
    assert_one_line_naming(error, path)


def test_gzip_file_that_is_not_a_tarball(tmp_path):
    path = tmp_path / "reviews.tar.gz"
    path.write_bytes(gzip.compress(b"just text, no tar headers\n" * 100))
    with pytest.raises(BenchError) as error:
        load_imdb(path)
    assert_one_line_naming(error, path)


def test_truncated_archive(imdb_slice, tmp_path, fresh_cache):
    path = tmp_path / "truncated.tar.gz"
    path.write_bytes(imdb_slice.read_bytes()[: imdb_slice.stat().st_size // 2])
    with pytest.raises(BenchError) as error:
        load_imdb(path)
    assert_one_line_naming(error, path)
    assert not list((fresh_cache / "imdb").iterdir())  # nothing half-built was cached


def test_tarball_without_the_layout(tmp_path):
    path = make_archive(tmp_path, {"train/pos": {"1_9": "fine"}}, tarball=True)
    with pytest.raises(BenchError) as error:
        load_imdb(path)
    assert_one_line_naming(error, path)
    assert "test/neg" in str(error.value)


def test_folder_without_the_layout(tmp_path):
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    for folder in (tmp_path, tmp_path / "aclImdb"):
        with pytest.raises(BenchError) as error:
            load_imdb(folder)
        assert_one_line_naming(error, folder)


@pytest.mark.parametrize("in_the_way", ["parent", "itself"])
def test_unwritable_cache(imdb_slice, tmp_path, monkeypatch, in_the_way):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")  # a file where a folder must be stops root too
    folder = blocker / "cache" if in_the_way == "parent" else blocker
    monkeypatch.setenv("BENCH_CACHE", str(folder))
    for call in (cache_dir, lambda: load_imdb(imdb_slice)):
        with pytest.raises(BenchError) as error:
            call()
        assert_one_line_naming(error, folder)
        assert "BENCH_CACHE" in str(error.value)


@pytest.mark.parametrize(
    "params",
    [
        {"num_words": 3},
        {"num_words": 100.0},
        {"sequence_length": 0},
        {"validation_fraction": 0.0},
        {"validation_fraction": 1.0},
        {"validation_fraction": "0.2"},
        {"split_seed": -1},
        {"subset": 1},
        {"subset": 301},  # more than the slice holds
        {"validation_fraction": 0.1, "subset": 2},  # leaves no validation review
    ],
)
def test_parameters_out_of_range(imdb_slice, params):
    with pytest.raises(BenchError) as error:
        load_imdb(imdb_slice, **params)
    message = str(error.value)
    assert "\n" not in message
    assert next(iter(params)) in message


# Where the archive comes from


def test_explicit_path_wins_over_bench_data(imdb_slice, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(imdb_slice))
    assert resolve_source(None) == imdb_slice
    other = make_archive(tmp_path, TINY, tarball=False)
    assert resolve_source(other) == other
    assert resolve_source(tmp_path) == other  # a folder holding aclImdb/
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "missing"))
    with pytest.raises(BenchError) as error:
        resolve_source(None)
    assert_one_line_naming(error, tmp_path / "missing")
    assert "BENCH_DATA" in str(error.value)


@pytest.fixture
def server(imdb_slice) -> Iterator[dict]:
    """A loopback HTTP server for the slice's folder: {"url": base URL, "requests": GET count}."""
    state: dict = {"requests": 0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(imdb_slice.parent), **kwargs)

        def do_GET(self):  # noqa: N802 (the name http.server calls)
            state["requests"] += 1
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["url"] = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_once_into_the_cache(imdb_slice, server, fresh_cache, monkeypatch):
    md5 = hashlib.md5(imdb_slice.read_bytes()).hexdigest()
    monkeypatch.setattr(datasource, "CANONICAL_MD5", md5)
    monkeypatch.setenv("BENCH_DATA_URL", f"{server['url']}/{imdb_slice.name}")
    path = resolve_source(None)
    assert path.parent == fresh_cache
    assert path.read_bytes() == imdb_slice.read_bytes()
    assert sorted(p.name for p in fresh_cache.iterdir()) == [path.name, path.name + ".ok"]
    assert resolve_source(None) == path  # reused, not fetched again
    assert server["requests"] == 1
    assert len(load_imdb(None).test) == 300


def test_download_with_the_wrong_md5_leaves_nothing(imdb_slice, server, fresh_cache, monkeypatch):
    monkeypatch.setattr(datasource, "CANONICAL_MD5", "0" * 32)
    monkeypatch.setenv("BENCH_DATA_URL", f"{server['url']}/{imdb_slice.name}")
    with pytest.raises(BenchError) as error:
        resolve_source(None)
    assert "\n" not in str(error.value) and "md5" in str(error.value)
    assert str(fresh_cache / datasource.DOWNLOAD_NAME) in str(error.value)
    assert list(fresh_cache.iterdir()) == []


@pytest.mark.parametrize("failure", ["refused", "not found"])
def test_download_network_failure(server, fresh_cache, monkeypatch, failure):
    if failure == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}/aclImdb_v1.tar.gz"
    else:
        url = f"{server['url']}/no-such-file.tar.gz"
    monkeypatch.setenv("BENCH_DATA_URL", url)
    with pytest.raises(BenchError) as error:
        resolve_source(None)
    assert "\n" not in str(error.value) and url in str(error.value)
    assert list(fresh_cache.iterdir()) == []


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
