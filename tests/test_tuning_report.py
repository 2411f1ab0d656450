"""The report's tuning sections against real MLflow and Optuna SQLite stores (no training):
what tuning bought, with its paired interval; the best configurations; importances; each
search's cost and the time to a result; whether the searches agree."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from conftest import write_study
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from report_stores import log_run
from scipy import stats

from harness.report.build import Report, build_report
from harness.run.retrain import config_hash
from harness.study.schema import Study, load_study

SEEDS = 5
DEFAULTS_ACC = [0.840, 0.845, 0.838, 0.842, 0.850]  # keras, the defaults
TUNED = {  # backend -> test accuracy per seed of its own best configuration
    "keras": [0.862, 0.870, 0.861, 0.866, 0.871],
    "torch": [0.863, 0.869, 0.860, 0.867, 0.872],
}
KERAS_BEST_ON_TORCH = [0.862, 0.870, 0.861, 0.866, 0.871]  # cross: keras's choice, trained by torch
VAL = [0.80, 0.86, 0.87]  # each tuned run's val_accuracy per epoch: the 0.85 target at epoch 2
SECONDS = [10.0, 12.0, 12.0]
T0 = datetime(2026, 12, 7, 12, 0, 0)
# (state, value, minutes from T0 to start, to complete, params, epochs reported)
SEARCH = {
    "keras": [
        ("COMPLETE", 0.80, 0, 2, {"hidden_size": 16, "learning_rate": 3e-3}, 3),
        ("PRUNED", None, 2, 3, {"hidden_size": 16, "learning_rate": 1e-3}, 1),
        ("COMPLETE", 0.86, 3, 6, {"hidden_size": 32, "learning_rate": 5e-3}, 3),
        ("COMPLETE", 0.84, 6, 9, {"hidden_size": 32, "learning_rate": 2e-3}, 3),
    ],
    "torch": [
        ("COMPLETE", 0.80, 10, 11, {"hidden_size": 16, "learning_rate": 3e-3}, 3),
        ("COMPLETE", 0.85, 11, 12, {"hidden_size": 16, "learning_rate": 6e-3}, 3),
        ("PRUNED", None, 12, 13, {"hidden_size": 32, "learning_rate": 1e-3}, 1),
    ],
}
BEST = {"keras": SEARCH["keras"][2][4], "torch": SEARCH["torch"][1][4]}


def searched_study(folder: Path) -> Study:
    return load_study(
        write_study(
            folder,
            study={"name": "tuned", "architectures": ["lstm"], "backends": ["keras", "torch"]},
            budget={"trials": 4},
            objective={"metric": "val_accuracy", "direction": "maximize", "target": 0.85},
            retrain={"seeds": SEEDS, "cross_backend": True},
            search={
                "hidden_size": {"choices": [16, 32], "default": 16},
                "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True, "default": 3e-3},
            },
        )
    )


def fill(client: MlflowClient, experiment: str, study: Study, storage_url: str) -> None:
    def hashed(backend: str, params: dict[str, object]) -> str:
        return config_hash(study.run_config(backend, "lstm", params).as_params())

    def runs(role: str, backend: str, source: str, params: dict, accuracies: list[float]) -> None:
        for seed, accuracy in enumerate(accuracies):
            tags = {
                "study": study.name,
                "role": role,
                "architecture": "lstm",
                "backend": backend,
                "config_from": source,
                "seed": str(seed),
                "config_hash": hashed(backend, params),
            }
            histories = {"val_accuracy": VAL, "epoch_seconds": SECONDS}
            log_run(
                client, experiment, f"{role} {seed}", tags, {"test_accuracy": accuracy}, histories
            )

    runs("defaults", "keras", "defaults", {}, DEFAULTS_ACC)
    for backend, accuracies in TUNED.items():
        runs("retrain", backend, backend, BEST[backend], accuracies)
    runs("cross", "torch", "keras", BEST["keras"], KERAS_BEST_ON_TORCH)
    distributions = {
        "hidden_size": CategoricalDistribution([16, 32]),
        "learning_rate": FloatDistribution(1e-3, 1e-2, log=True),
    }
    for backend, trials in SEARCH.items():
        search = optuna.create_study(
            study_name=f"{study.name}/lstm/{backend}", storage=storage_url, direction="maximize"
        )
        for state, value, start, end, params, epochs in trials:
            trial = create_trial(
                state=TrialState[state],
                value=value,
                params=params,
                distributions=distributions,
                intermediate_values={step: 0.8 for step in range(1, epochs + 1)},
            )
            trial.datetime_start = T0 + timedelta(minutes=start)
            trial.datetime_complete = T0 + timedelta(minutes=end)
            search.add_trial(trial)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tuning-stores")
    study = searched_study(root)
    tracking_uri, storage_url = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    client = MlflowClient(tracking_uri)
    fill(
        client,
        client.create_experiment(study.name, (root / "artifacts").as_uri()),
        study,
        storage_url,
    )
    return SimpleNamespace(
        root=root, study=study, tracking_uri=tracking_uri, storage_url=storage_url
    )


@pytest.fixture(scope="module")
def report(stores: SimpleNamespace) -> Report:
    return build_report(stores.study, stores.tracking_uri, stores.storage_url, stores.root / "out")


def section(report: Report, starts: str):
    return next(frame for title, frame in report.sections.items() if title.startswith(starts))


def test_tuning_gain_is_paired_by_seed_against_the_defaults(report: Report) -> None:
    """keras tuned - keras defaults, seed by seed: the paired t of scipy, and the kind."""
    gains = section(report, "tuning:")
    for backend, accuracies in TUNED.items():
        expected = stats.ttest_rel(accuracies, DEFAULTS_ACC).confidence_interval(0.95)
        words = gains.loc[("lstm", backend), "tuned vs defaults"]
        assert words.startswith(f"{backend} tuned better")
        assert f"[{expected.low:+.4f}, {expected.high:+.4f}]" in words
        assert "n 5/5 seeds paired" in words
    assert any(
        line.startswith("lstm (keras tuned vs keras defaults): accuracy: keras tuned better")
        for line in report.tuning
    )
    written = (report.paths["markdown"]).read_text()
    assert "## What tuning bought" in written


def test_best_configurations_side_by_side(report: Report) -> None:
    best = section(report, "best configurations")
    assert best.loc[("lstm", "keras"), "trial"] == "2"
    assert best.loc[("lstm", "keras"), "hidden_size"] == "32"
    assert best.loc[("lstm", "torch"), "hidden_size"] == "16"
    assert best.loc[("lstm", "torch"), "learning_rate"] == "0.006"


def test_importances_per_search(report: Report) -> None:
    importances = section(report, "parameter importances")
    keras = importances.loc[("lstm", "keras")]
    assert set(keras.index) == {"hidden_size", "learning_rate"}
    assert sum(float(v) for v in keras) == pytest.approx(1.0, abs=0.02)


def test_search_cost_and_time_to_result(report: Report) -> None:
    """AlgoPerf's time to result: the search up to its best trial (6 min for keras), plus the
    tuned re-trainings' median training time to the 0.85 target (epoch 2: 10 + 12 s)."""
    costs = section(report, "search cost")
    keras = costs.loc[("lstm", "keras")]
    assert keras["search min"] == "9.0"
    assert keras["trials ok/pruned/failed"] == "3 / 1 / 0"
    assert keras["epochs trained"] == "10"
    assert keras["best trial"] == "2"
    assert keras["search min to best"] == "6.0"
    assert keras["re-train s to target"] == "22.0 (5/5 runs)"
    assert keras["time to result min"] == f"{(6 * 60 + 22) / 60:.1f}"
    assert costs.loc[("lstm", "torch"), "search min to best"] == "2.0"


def test_agreement_of_the_searches(report: Report) -> None:
    """keras's choice and torch's, both trained by torch on the same seeds: the difference is
    the searches', and the knobs that differ are named."""
    agreement = section(report, "agreement of the searches")
    row = agreement.loc[("lstm", "keras→torch")]
    assert row["knobs that differ"] == "hidden_size 32 vs 16; learning_rate 0.005 vs 0.006"
    differences = np.subtract(KERAS_BEST_ON_TORCH, TUNED["torch"])
    assert f"{differences.mean():+.4f}" in row["same seeds, same backend"]
    assert row["same seeds, same backend"].startswith("equivalent within ±0.005")


def test_the_defaults_are_the_baselines_own_runs_when_its_search_chose_them(
    tmp_path: Path,
) -> None:
    """A search whose best is the defaults runs no separate defaults: the gain is identical."""
    study = searched_study(tmp_path)
    tracking_uri, storage_url = f"sqlite:///{tmp_path / 'm.db'}", f"sqlite:///{tmp_path / 'o.db'}"
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment(study.name, (tmp_path / "a").as_uri())
    defaults_hash = config_hash(study.run_config("keras", "lstm", {}).as_params())
    for seed, accuracy in enumerate(DEFAULTS_ACC):
        tags = {
            "study": study.name,
            "role": "retrain",
            "architecture": "lstm",
            "backend": "keras",
            "config_from": "keras",
            "seed": str(seed),
            "config_hash": defaults_hash,
        }
        log_run(client, experiment, f"retrain {seed}", tags, {"test_accuracy": accuracy})
    optuna.create_study(study_name=f"{study.name}/lstm/keras", storage=storage_url)
    found = build_report(study, tracking_uri, storage_url, tmp_path / "out")
    words = section(found, "tuning:").loc[("lstm", "keras"), "tuned vs defaults"]
    assert words.startswith("identical on every seed (n 5/5)")
