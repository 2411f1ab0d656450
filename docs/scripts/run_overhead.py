"""Print each backend's per-run overhead from a study's MLflow store: the table in
docs/benchmarks.md ("Per-run overhead").

    python docs/scripts/run_overhead.py STORE [STUDY]

STORE is a tracking URI or an output folder of `bench run` (its mlflow.db is read); STUDY
defaults to imdb-quick. A run's overhead is its wall time in the store (end minus start: the
run is opened before its job is sent and closed once its outcome, metrics and text files are
recorded; its figures are drawn later, off the training path) minus its training time
(`total_train_seconds`, the epochs' training passes). What remains is process start, framework
import, data loading, model building, the validation and test passes (`total_eval_seconds`,
shown apart where recorded) and logging. The
median of each backend's runs comes with its exact 95% interval (`scipy.stats.quantile_test`,
distribution-free), as every figure here does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from scipy import stats

ROLES = ("trial", "retrain", "cross")  # the runs that train; search parents and the report do not


def store_uri(store: str) -> str:
    folder = Path(store)
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}" if folder.is_dir() else store


def training_runs(uri: str, study: str) -> pd.DataFrame:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        sys.exit(f"error: no experiment {study!r} in {uri}")
    runs = client.search_runs(
        [experiment.experiment_id],
        "attributes.status = 'FINISHED'",
        max_results=50_000,
    )
    return pd.DataFrame(
        {
            "backend": run.data.tags["backend"],
            "isolation": run.data.tags.get("isolation", "process"),  # untagged: before warm workers
            "wall": (run.info.end_time - run.info.start_time) / 1000,
            "train": run.data.metrics.get("total_train_seconds", np.nan),
            "evaluation": run.data.metrics.get("total_eval_seconds", np.nan),
        }
        for run in runs
        if run.data.tags.get("role") in ROLES
    )


def median_with_interval(values: pd.Series) -> str:
    values = values.dropna().to_numpy()
    if not len(values):
        return "not recorded"
    median = float(np.median(values))
    interval = stats.quantile_test(values, q=median, p=0.5).confidence_interval(0.95)
    return f"{median:.2f} [{interval.low:.2f}, {interval.high:.2f}]"


def overhead_table(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.assign(
        overhead=runs.wall - runs.train, rest=runs.wall - runs.train - runs.evaluation
    )
    grouped = runs.groupby(["backend", "isolation"])
    return pd.DataFrame(
        {
            "runs": grouped.size(),
            "wall s": grouped.wall.apply(median_with_interval),
            "training s": grouped.train.apply(median_with_interval),
            "overhead s": grouped.overhead.apply(median_with_interval),
            "evaluation s": grouped.evaluation.apply(median_with_interval),
            "overhead - evaluation s": grouped.rest.apply(median_with_interval),
        }
    )


def main(store: str, study: str = "imdb-quick") -> None:
    runs = training_runs(store_uri(store), study)
    print(f"{len(runs)} finished training runs of {study}; medians with exact 95% intervals")
    print(overhead_table(runs).to_string())


if __name__ == "__main__":
    main(*sys.argv[1:])
