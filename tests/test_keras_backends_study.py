"""`bench run` end to end on Keras's JAX and PyTorch backends, read back from the real stores.

One small study, two searches (one per backend) that each stop on a time budget, not a trial
count: the budget is per search, so the search queued second still gets its turn. Every run
records the Keras backend its process really loaded, the framework and the kernel.
"""

from __future__ import annotations

import pytest
from conftest import NO_PRUNING, write_study
from helpers import bench
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # a real `bench run`, a fresh process per run (--isolation process)

BACKENDS = {"keras-jax": "jax", "keras-torch": "torch"}  # backend -> its Keras backend


@pytest.fixture(scope="module")
def runs(imdb_slice, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras-backends")
    study = write_study(
        folder,
        study={"name": "kb", "backends": list(BACKENDS), "epochs": 1},
        # 20 trials would take minutes; 0.001 minutes ends each search after its first trial.
        budget={"trials": 20, "timeout_minutes": 0.001},
        pruner=NO_PRUNING,
    )
    out = folder / "out"
    done = bench(
        "run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice),
        "--isolation", "process",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kb")
    found = client.search_runs([experiment.experiment_id])
    return [run for run in found if run.data.tags["role"] in ("trial", "retrain")]


def test_each_search_has_its_own_time_budget(runs):
    trials = [run for run in runs if run.data.tags["role"] == "trial"]
    assert sorted(run.data.tags["backend"] for run in trials) == sorted(BACKENDS)


def test_every_run_records_the_keras_backend_that_ran(runs):
    assert {run.data.tags["role"] for run in runs} == {"trial", "retrain"}
    for run in runs:
        tags = run.data.tags
        assert tags["keras_backend"] == BACKENDS[tags["backend"]]
        assert (
            tags["framework"] == "keras"
            and f"({BACKENDS[tags['backend']]} " in (tags["framework_version"])
        )
        assert tags["kernel"] == "generic" and tags["denormal_mode"] == "flush"
        assert tags["isolation"] == "process" and "worker_run" not in tags
        assert run.info.status == "FINISHED"
        assert ("test_accuracy" in run.data.metrics) == (tags["role"] == "retrain")
