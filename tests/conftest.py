"""Shared fixtures: the real IMDB archive, a small slice cut from it, an isolated cache, the one
factory of study files every test writes its studies with, and every registered backend."""

from __future__ import annotations

import gc
import os

from harness.system import keep_to_cores  # imports no numpy and no framework


def _pin_this_worker_to_its_own_cores() -> None:
    """Under pytest-xdist, give each worker its share of the cores, before any framework (or
    numpy's BLAS) starts a thread pool: every framework sizes its pools by the cores it may run
    on, so two workers no longer oversubscribe the machine. PyTorch's spin-waiting threads ran
    about 10x slower when they did (docs/benchmarks.md). Subprocesses inherit the share."""
    worker, count = (
        os.environ.get("PYTEST_XDIST_WORKER"),
        os.environ.get("PYTEST_XDIST_WORKER_COUNT"),
    )
    if not worker or not count or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) >= int(count) > 1:
        keep_to_cores(cores[int(worker.removeprefix("gw")) :: int(count)])


_pin_this_worker_to_its_own_cores()
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from helpers import TINY_VOCAB

from backends import BACKENDS, Backend
from backends.equivalence import comparable_backend
from harness.data.classification import load_imdb
from harness.data.slice import SLICE_PER_FOLDER, cut_slice

if os.environ.get("BENCH_TEST_BROKEN_BACKEND") == "1":
    import broken_backend  # noqa: F401  (registers the deliberately broken "broken" backend)

pytest_plugins = ("servers",)  # the real-server fixtures: server, postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
# The full labelled archive (28 MB); BENCH_TEST_DATA points elsewhere, e.g. at aclImdb_v1.tar.gz.
IMDB_ARCHIVE = Path(
    os.environ.get("BENCH_TEST_DATA")
    or REPO_ROOT.parent / "shared" / "data" / "aclImdb_labelled.tar.gz"
)


@pytest.fixture(scope="session")
def imdb_archive() -> Path:
    """The full archive; a test that needs it fails (not skips) when it is missing."""
    if not IMDB_ARCHIVE.is_file():
        pytest.fail(
            f"expected the IMDB archive at {IMDB_ARCHIVE}; it is missing "
            f"(set BENCH_TEST_DATA to aclImdb_labelled.tar.gz or aclImdb_v1.tar.gz)",
            pytrace=False,
        )
    return IMDB_ARCHIVE


@pytest.fixture(scope="session")
def imdb_slice(imdb_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tarball in Stanford's layout with the first 150 reviews of each labelled folder.

    "First" in the harness's order (numeric review id), so the slice is the same on every run.
    """
    dest = tmp_path_factory.mktemp("imdb-slice") / "aclImdb_slice.tar.gz"
    return cut_slice(imdb_archive, dest, SLICE_PER_FOLDER)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point BENCH_CACHE at a temporary folder, so tests never read or fill the user's cache.

    BENCH_DATA and BENCH_DATA_URL are cleared too: a test that wants them sets them itself.
    """
    folder = tmp_path_factory.mktemp("bench-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_CACHE", str(folder))
        patch.delenv("BENCH_DATA", raising=False)
        patch.delenv("BENCH_DATA_URL", raising=False)
        yield folder


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder for this test only (BENCH_CACHE points at it)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE", str(folder))
    return folder


# The smallest study that trains for real: one GRU on PyTorch, two trials on 200 reviews, one
# re-train. Tests change the tables they are about and keep the rest.
SMALL_STUDY: dict[str, dict[str, object]] = {
    "study": {"name": "tiny", "architectures": ["gru"], "backends": ["torch"], "epochs": 1},
    "budget": {"trials": 2},
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "pruner": {"type": "none"},
    "data": {"subset": 200},
    "retrain": {"seeds": 1, "cross_backend": False},
    "fixed": {"num_words": 1000, "embedding_dim": 8, "sequence_length": 32},
    "search": {
        "hidden_size": {"low": 4, "high": 16, "step": 4, "default": 8},
        "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True, "default": 3e-3},
    },
}
NO_PRUNING = {"type": "none"}
# No accuracy reaches 1.01, so every trial is pruned after its first epoch.
PRUNE_AFTER_ONE_EPOCH = {"type": "threshold", "lower": 1.01}


def study_document(**tables: dict[str, object] | None) -> dict[str, dict[str, object]]:
    """`SMALL_STUDY` with some tables changed: each keyword updates that table's keys, and
    None leaves the table out."""
    document = {name: dict(table) for name, table in SMALL_STUDY.items()}
    for name, changes in tables.items():
        if changes is None:
            document.pop(name, None)
        else:
            document[name] = {**document.get(name, {}), **changes}
    return document


def study_text(**tables: dict[str, object] | None) -> str:
    """The TOML text of `study_document(**tables)`."""
    return tomli_w.dumps(study_document(**tables))


def write_study(folder: Path, **tables: dict[str, object] | None) -> Path:
    """Write `study_text(**tables)` to `<folder>/<study name>.toml` and return the path."""
    document = study_document(**tables)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{document['study']['name']}.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture(scope="session")
def study_file():
    """The study-file factory, `write_study(folder, **tables)`, for fixtures of any scope."""
    return write_study


# -- every registered backend, for the suites that hold each one to the same standard ----------


@pytest.fixture(params=tuple(BACKENDS))
def backend_name(request) -> str:
    """Each registered backend by name (with BENCH_TEST_BROKEN_BACKEND=1, the broken one too)."""
    return request.param


@pytest.fixture
def backend(backend_name) -> Backend:
    """The backend, with Keras reloaded first where it runs on another Keras backend."""
    return comparable_backend(backend_name)


def keras_rank(item: pytest.Item) -> int:
    """Which Keras backend a test needs, as a rank: 0 for none (or no backend parameter).

    Keras runs on one backend per process; `comparable_backend` reloads it when a test needs
    another, which costs seconds. Ordering each file's tests by this rank reloads it at most
    once per Keras backend and file.
    """
    order = [None, *(info.keras_backend for info in BACKENDS.values() if info.keras_backend)]
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        if isinstance(value, str) and value in BACKENDS:
            return order.index(BACKENDS[value].keras_backend)
    return 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    files = {item.path: index for index, item in reversed(list(enumerate(items)))}
    items.sort(key=lambda item: (files[item.path], keras_rank(item)))


@pytest.fixture(scope="module")
def tiny_imdb(imdb_slice):
    """The slice encoded with a 1000-word vocabulary and 32 tokens per review."""
    return load_imdb(imdb_slice, num_words=TINY_VOCAB, sequence_length=32)


@pytest.fixture(scope="module")
def windows(tiny_imdb):
    """Next-word inputs and targets for a language model: each review shifted by one token."""
    reviews = tiny_imdb.train.x[:4]
    return reviews[:, :-1], reviews[:, 1:]


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the frameworks' objects out of the final garbage collection, as `bench` does
    (`harness.system.leave`): each test process imported all four backends."""
    gc.freeze()
