"""Where the archive comes from, and bad input: one line that names the path, never a traceback."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_imdb import TINY, make_archive

from harness.data import source as datasource
from harness.data.classification import load_imdb
from harness.data.source import cache_dir, resolve_source
from harness.errors import BenchError


def assert_one_line_naming(error: pytest.ExceptionInfo[BenchError], path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message


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
