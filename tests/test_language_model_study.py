"""A tiny language-model study through `bench run`: the same pipeline, read back from the stores."""

from __future__ import annotations

import optuna
import pytest
from conftest import NO_PRUNING, write_study
from helpers import bench
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow  # every test here reads the stores of a real `bench run`

BACKENDS = ("keras", "torch")


def write_tiny_lm(folder, trials: int):
    """The conftest's small study turned into a language model: an LSTM in both frameworks on
    the whole slice, judged by validation perplexity, with the optimiser searched too."""
    return write_study(
        folder,
        study={
            "name": "tiny-lm",
            "description": "a small LSTM language model in both frameworks",
            "task": "language_model",
            "architectures": ["lstm"],
            "backends": list(BACKENDS),
            "epochs": 3,
        },
        budget={"trials": trials},
        objective={"metric": "val_perplexity", "direction": "minimize"},
        pruner=NO_PRUNING,
        data=None,
        retrain={"cross_backend": True},
        fixed={"num_words": 500, "embedding_dim": 16, "sequence_length": 16, "batch_size": 32},
        search={
            "hidden_size": {"low": 16, "high": 32, "step": 16, "default": 32},
            "learning_rate": {"low": 1e-2, "high": 3e-2, "log": True, "default": 2e-2},
            "optimizer": {"choices": ["rmsprop", "adam"], "default": "adam"},
        },
    )


@pytest.fixture(scope="module")
def lm_study(imdb_slice, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-lm")
    out = folder / "out"
    # One run of two trials: resuming is the same code for both tasks, and is tested on the
    # classification study (tests/test_study_run.py, tests/test_faults.py).
    study = write_tiny_lm(folder, trials=2)
    done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [done]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny-lm").experiment_id
    return {"out": out, "client": client, "experiment": experiment, "runs": runs}


def runs_with(lm_study, **tags: str) -> list:
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return lm_study["client"].search_runs([lm_study["experiment"]], where, max_results=100)


def test_hierarchy_and_per_epoch_perplexity(lm_study):
    client = lm_study["client"]
    for backend in BACKENDS:
        (parent,) = runs_with(lm_study, role="search", backend=backend)
        children = client.search_runs(
            [lm_study["experiment"]], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        roles = [c.data.tags["role"] for c in children]
        assert roles.count("trial") == 2
        # One re-train and one cross run of the best configuration.
        for role in ("retrain", "cross"):
            hashes = [c.data.tags["config_hash"] for c in children if c.data.tags["role"] == role]
            assert len(hashes) == 1
    for run in runs_with(lm_study, role="trial"):
        assert run.data.params["task"] == "language_model"
        history = client.get_metric_history(run.info.run_id, "val_perplexity")
        assert [m.step for m in history] == [1, 2, 3]
        assert "tokens_per_second" in run.data.metrics
        assert run.data.metrics["unigram_val_perplexity"] > 1


def test_retrained_models_beat_the_unigram_baseline(lm_study):
    for run in runs_with(lm_study, role="retrain"):
        metrics = run.data.metrics
        assert 1 < metrics["test_perplexity"] < metrics["unigram_test_perplexity"]
        assert 0 < metrics["test_accuracy"] < 1  # top-1 next-word accuracy


def test_both_searches_ran_their_budget_minimising_perplexity(lm_study):
    for backend in BACKENDS:
        study = optuna.load_study(
            study_name=f"tiny-lm/lstm/{backend}",
            storage=f"sqlite:///{lm_study['out'] / 'optuna.db'}",
        )
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
        assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert len(runs_with(lm_study, role="trial")) == 4


def test_report_shows_perplexity_next_to_the_unigram_baseline(lm_study):
    csv = (lm_study["out"] / "report" / "report.csv").read_text().splitlines()
    header = csv[0].split(",")
    for column in ("test_perplexity_mean", "unigram_test_perplexity_mean", "tokens_per_second"):
        assert column in header
    assert {row.split(",")[1] for row in csv[1:]} == {"keras", "torch"}  # a row per backend
    markdown = (lm_study["out"] / "report" / "report.md").read_text()
    assert "unigram baseline perplexity" in markdown
