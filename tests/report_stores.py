"""What the report tests fill their MLflow and Optuna stores with, and the study they report on."""

from __future__ import annotations

from pathlib import Path

import optuna
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState, create_trial

from harness.study.schema import (
    Budget,
    DataOptions,
    Objective,
    Pruner,
    Retrain,
    Sampler,
    Study,
    Verdict,
)

STUDY = "imdb-test"
ARCHS = ["lstm", "gru", "bilstm"]  # bilstm: every trial failed, no runs at all
T0 = 1_700_000_000_000  # ms; start times order the runs

# (arch, backend) -> two retrain seeds: test metrics, epoch_seconds and samples/s histories
RETRAIN = {
    ("lstm", "keras"): [
        dict(
            acc=0.81,
            f1=0.80,
            auc=0.88,
            ppl=1.50,
            secs=[12.0, 10.0, 10.0],
            sps=[900, 1000, 1000],
            rss=2000.0,
        ),
        dict(
            acc=0.83,
            f1=0.82,
            auc=0.90,
            ppl=1.45,
            secs=[11.0, 10.0, 9.0],
            sps=[950, 1000, 1050],
            rss=2100.0,
        ),
    ],
    ("lstm", "torch"): [
        dict(
            acc=0.80,
            f1=0.79,
            auc=0.87,
            ppl=1.52,
            secs=[6.0, 5.0, 5.0],
            sps=[1800, 2000, 2000],
            rss=1500.0,
            val=[0.70, 0.81, 0.82],
        ),
        dict(
            acc=0.84,
            f1=0.83,
            auc=0.91,
            ppl=1.40,
            secs=[5.0, 5.0, 5.0],
            sps=[2000, 2000, 2000],
            rss=1600.0,
            val=[0.82, 0.83, 0.84],
        ),
    ],
    # keras/gru logged no per-epoch history: seconds per epoch = total_train_seconds / epochs
    ("gru", "keras"): [
        dict(acc=0.78, f1=0.77, auc=0.85, ppl=1.60, secs=[], sps=[], total=30.0, rss=1900.0),
        dict(acc=0.79, f1=0.78, auc=0.86, ppl=1.58, secs=[], sps=[], total=36.0, rss=1950.0),
    ],
    ("gru", "torch"): [
        dict(
            acc=0.77,
            f1=0.76,
            auc=0.84,
            ppl=1.62,
            secs=[4.0, 4.0, 4.0],
            sps=[2500, 2500, 2500],
            rss=1400.0,
        ),
        dict(
            acc=0.80,
            f1=0.81,
            auc=0.86,
            ppl=1.55,
            secs=[4.0, 3.0, 5.0],
            sps=[2400, 2600, 2500],
            rss=1450.0,
        ),
    ],
}
CROSS_KERAS_ON_TORCH = [0.79, 0.82]  # lstm only; gru has no cross runs
# (arch, backend) -> (complete values, pruned, failed)
TRIALS = {
    ("lstm", "keras"): ([0.70, 0.80, 0.75], 1, 0),
    ("lstm", "torch"): ([0.72, 0.78], 0, 1),
    ("gru", "keras"): ([0.60], 0, 0),
    ("gru", "torch"): ([0.65, 0.62], 2, 0),
    ("bilstm", "keras"): ([], 0, 2),  # the search failed entirely; bilstm/torch never started
}


def make_study(
    name: str,
    architectures: list[str],
    backends: tuple[str, ...] = ("keras", "torch"),
    baseline: str = "keras",
) -> Study:
    return Study(
        path=Path(f"{name}.toml"),
        name=name,
        description="",
        task="classification",
        dataset="imdb",
        architectures=architectures,
        backends=list(backends),
        baseline=baseline,
        epochs=3,
        budget=Budget(trials=3),
        objective=Objective(metric="val_accuracy", direction="maximize", target=0.8),
        sampler=Sampler(),
        pruner=Pruner(),
        data=DataOptions(),
        retrain=Retrain(test_weights="final"),
        verdict=Verdict(),
        fixed={},
        search={},
    )


def log_run(
    client: MlflowClient,
    experiment: str,
    name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    histories: dict[str, list[float]] | None = None,
    status: str = "FINISHED",
    start: int = T0,
) -> str:
    run_id = client.create_run(experiment, start_time=start, tags=tags, run_name=name).info.run_id
    entries = [Metric(k, v, start, 3) for k, v in metrics.items()]
    for key, values in (histories or {}).items():
        entries += [Metric(key, v, start, step) for step, v in enumerate(values, 1)]
    client.log_batch(run_id, metrics=entries, params=[Param("epochs", "3")])
    client.set_terminated(run_id, status)
    return run_id


def fill_mlflow(client: MlflowClient, experiment: str) -> None:
    base = {"study": STUDY, "seed": "0", "framework": "x", "device": "cpu"}
    for (arch, backend), seeds in RETRAIN.items():
        log_run(
            client,
            experiment,
            "trial 0",
            {**base, "role": "trial", "architecture": arch, "backend": backend},
            {"final_val_accuracy": 0.5, "test_accuracy": 0.1},
        )
        for seed, r in enumerate(seeds):
            tags = {
                **base,
                "role": "retrain",
                "architecture": arch,
                "backend": backend,
                "config_from": backend,
                "seed": str(seed),
                "config_hash": "new",
            }
            metrics = {
                "test_accuracy": r["acc"],
                "test_f1": r["f1"],
                "test_roc_auc": r["auc"],
                "test_perplexity": r["ppl"],
                "peak_rss_mb": r["rss"],
                "parameter_count": 1000.0 if backend == "keras" else 1002.0,
                "total_train_seconds": r.get("total", sum(r["secs"])),
            }
            histories = {
                "epoch_seconds": r["secs"],
                "samples_per_second": r["sps"],
                "val_accuracy": r.get("val", []),
            }
            log_run(
                client,
                experiment,
                f"retrain seed {seed}",
                tags,
                metrics,
                histories,
                start=T0 + 1000 + seed,
            )
    # Noise that must not count: an older config's re-train, and a failed re-train.
    old = {
        **base,
        "role": "retrain",
        "architecture": "lstm",
        "backend": "keras",
        "config_from": "keras",
        "config_hash": "old",
    }
    log_run(client, experiment, "retrain seed 0", old, {"test_accuracy": 0.10}, start=T0)
    failed = {
        **base,
        "role": "retrain",
        "architecture": "gru",
        "backend": "torch",
        "config_from": "torch",
        "config_hash": "new",
    }
    log_run(client, experiment, "retrain seed 2", failed, {"test_accuracy": 0.0}, status="FAILED")
    for seed, accuracy in enumerate(CROSS_KERAS_ON_TORCH):
        tags = {
            **base,
            "role": "cross",
            "architecture": "lstm",
            "backend": "torch",
            "config_from": "keras",
            "seed": str(seed),
            "config_hash": "new",
        }
        timing = RETRAIN[("lstm", "torch")][seed]  # the cross runs train like torch's own
        histories = {
            "epoch_seconds": timing["secs"],
            "samples_per_second": timing["sps"],
            "val_accuracy": timing["val"],
        }
        metrics = {"test_accuracy": accuracy, "peak_rss_mb": timing["rss"]}
        log_run(client, experiment, f"cross torch seed {seed}", tags, metrics, histories)


def fill_optuna(storage_url: str) -> None:
    for (arch, backend), (values, pruned, failed) in TRIALS.items():
        search = optuna.create_study(
            study_name=f"{STUDY}/{arch}/{backend}", storage=storage_url, direction="maximize"
        )
        for value in values:
            search.add_trial(create_trial(value=value, state=TrialState.COMPLETE))
        for _ in range(pruned):
            search.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.5}))
        for _ in range(failed):
            search.add_trial(create_trial(state=TrialState.FAIL))
