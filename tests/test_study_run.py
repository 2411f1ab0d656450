"""`bench run` end to end on a tiny study, checked by reading the real stores back.

The study runs once per module through the real CLI (subprocesses, SQLite stores); then the
tests read MLflow with its client and Optuna with its API, and finally through the HTTP APIs of
`mlflow server` and `optuna-dashboard` started on loopback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import tomli_w
from conftest import NO_PRUNING, PRUNE_AFTER_ONE_EPOCH, study_document
from helpers import bench, bench_in_terminal
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from servers import free_port, get_json, start_mlflow_server

pytestmark = pytest.mark.slow  # every test here reads the stores of a real `bench run`

BACKENDS = ("keras", "torch")
EPOCH_METRICS = {
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_perplexity",
    "epoch_seconds",
    "samples_per_second",
}


def tiny_text(trials: int, pruner: dict[str, object]) -> str:
    """The conftest's small study in both frameworks, for 2 epochs, with the sequence length
    searched (and so not fixed) and the best configurations also run on the other backend."""
    document = study_document(
        study={
            "description": "two trials of a small GRU in both frameworks",
            "backends": list(BACKENDS),
            "epochs": 2,
        },
        budget={"trials": trials},
        pruner=pruner,
        retrain={"cross_backend": True},
        search={"sequence_length": {"choices": [32, 48], "default": 32}},
    )
    del document["fixed"]["sequence_length"]
    return tomli_w.dumps(document)


def run_tiny(
    folder: Path, data: Path, trials: int, pruner: dict[str, object], terminal: bool = False
) -> subprocess.CompletedProcess:
    """The tiny study through `bench run`; `terminal`: on a pseudo-terminal, as a person runs it
    (its output then holds the live display)."""
    study = folder / "tiny.toml"
    study.write_text(tiny_text(trials, pruner))
    run = bench_in_terminal if terminal else bench
    return run("run", "--study", str(study), "--out", str(folder / "out"), "--data", str(data))


@pytest.fixture(scope="module")
def stores(imdb_slice, tmp_path_factory):
    """Run the tiny study, snapshot it, then resume it with one more trial that gets pruned."""
    folder = tmp_path_factory.mktemp("tiny-study")
    first = run_tiny(folder, imdb_slice, trials=2, pruner=NO_PRUNING, terminal=True)
    assert first.returncode == 0, first.stderr[-3000:]
    out = folder / "out"
    snapshot = folder / "after-first-run"
    shutil.copytree(out, snapshot)
    second = run_tiny(folder, imdb_slice, trials=3, pruner=PRUNE_AFTER_ONE_EPOCH)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"out": out, "first": snapshot, "first_run": first, "second_run": second}


def mlflow_runs(out: Path, **tags: str) -> list:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([experiment.experiment_id], where, max_results=1000)


def optuna_study(out: Path, backend: str) -> optuna.Study:
    return optuna.load_study(
        study_name=f"tiny/gru/{backend}", storage=f"sqlite:///{out / 'optuna.db'}"
    )


def test_run_hierarchy_parent_per_search_child_per_trial(stores):
    out = stores["first"]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    for backend in BACKENDS:
        (parent,) = mlflow_runs(out, role="search", backend=backend)
        assert parent.data.tags["optuna_study"] == f"tiny/gru/{backend}"
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        roles = sorted(c.data.tags["role"] for c in children)
        # The study searches (2 trials): the baseline's search also re-trains the defaults,
        # unless they were its best (then its re-training is theirs).
        best = optuna_study(out, backend).best_trial
        defaults = backend == "keras" and best.user_attrs.get("enqueued") != "study defaults"
        assert roles == ["cross", *(["defaults"] if defaults else []), "retrain", "trial", "trial"]
        for child in children:
            assert child.info.status == "FINISHED"


def test_every_trial_has_per_epoch_metrics_tags_and_params(stores):
    out = stores["first"]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    trials = mlflow_runs(out, role="trial")
    assert len(trials) == 4
    for run in trials:
        for metric in EPOCH_METRICS:
            history = client.get_metric_history(run.info.run_id, metric)
            assert [m.step for m in history] == [1, 2], metric
        tags = run.data.tags
        assert tags["architecture"] == "gru" and tags["backend"] in BACKENDS
        assert tags["framework"] == tags["backend"] and tags["framework_version"]
        assert tags["device"] and tags["rnnbench_version"] and tags["git_commit"]
        params = run.data.params
        for knob in (
            "hidden_size",
            "num_layers",
            "learning_rate",
            "dropout_rate",
            "sequence_length",
            "batch_size",
            "embedding_dim",
            "num_words",
            "optimizer",
        ):
            assert knob in params
        assert params["num_words"] == "1000" and params["epochs"] == "2"
        for metric in (
            "total_train_seconds",
            "time_to_first_epoch",
            "parameter_count",
            "peak_rss_mb",
        ):
            assert metric in run.data.metrics
        assert "peak_gpu_memory_mb" not in run.data.metrics  # absent on a CPU, never 0
        assert not any(name.startswith("test_") for name in run.data.metrics)  # no peeking
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert inputs and inputs[0].dataset.digest == params["dataset_digest"][:36]


def test_trials_and_runs_point_at_each_other(stores):
    out = stores["first"]
    for backend in BACKENDS:
        study = optuna_study(out, backend)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
        for trial in study.trials:
            run = MlflowClient(f"sqlite:///{out / 'mlflow.db'}").get_run(
                trial.user_attrs["mlflow_run_id"]
            )
            assert run.data.tags["optuna_trial"] == str(trial.number)
            assert run.data.tags["optuna_study"] == study.study_name
            assert float(run.data.params["hidden_size"]) == trial.params["hidden_size"]
        # The first trial is the study file's defaults.
        assert study.trials[0].params == {
            "hidden_size": 8,
            "learning_rate": 3e-3,
            "sequence_length": 32,
        }


def test_both_backends_search_the_same_space_with_the_same_sampler(stores):
    keras, torch = (optuna_study(stores["first"], b) for b in BACKENDS)
    assert [t.params for t in keras.trials] == [t.params for t in torch.trials]
    assert [t.value for t in keras.trials] == pytest.approx(
        [t.value for t in torch.trials], abs=1e-6
    )


def test_retrain_and_cross_runs_are_evaluated_on_test(stores):
    out = stores["first"]
    for role in ("retrain", "cross"):
        runs = mlflow_runs(out, role=role)
        assert len(runs) == 2
        for run in runs:
            assert {"test_accuracy", "test_f1", "test_roc_auc", "test_perplexity"} <= set(
                run.data.metrics
            )
            if role == "cross":
                assert run.data.tags["config_from"] != run.data.tags["backend"]
            assert run.data.tags["isolation"] == "warm"  # the default
            # How busy the host was, and MLflow's own system metrics, on every run.
            assert {"host_other_cpu_share", "host_steal_share", "process_cpu_per_wall"} <= set(
                run.data.metrics
            )
            assert any(key.startswith("system/cpu_utilization") for key in run.data.metrics)
            assert int(run.data.tags["worker_run"]) > 1  # each backend's worker ran its trials
            artifacts = {
                a.path
                for a in MlflowClient(f"sqlite:///{out / 'mlflow.db'}").list_artifacts(
                    run.info.run_id
                )
            }
            assert {
                "learning_curves.png",
                "confusion_matrix.png",
                "classification_report.txt",
                "model_summary.txt",
            } <= artifacts


def test_retrainings_start_in_their_recorded_seed_major_order(stores):
    runs = mlflow_runs(stores["first"], role="retrain") + mlflow_runs(stores["first"], role="cross")
    started = sorted(runs, key=lambda run: run.info.start_time)
    assert [int(run.data.tags["run_order"]) for run in started] == list(range(len(runs)))
    seeds = [int(run.data.tags["seed"]) for run in started]
    assert seeds == sorted(seeds)


def test_rerun_resumes_keeps_finished_trials_and_records_the_pruned_one(stores):
    before, after = stores["first"], stores["out"]
    for backend in BACKENDS:
        old, new = optuna_study(before, backend), optuna_study(after, backend)
        assert [t.datetime_start for t in new.trials[:2]] == [t.datetime_start for t in old.trials]
        assert [t.state for t in new.trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED]
        assert "pruned at epoch 1" in new.trials[2].user_attrs["stop_reason"]
    trials = mlflow_runs(after, role="trial")
    assert len(trials) == 6  # 4 from the first run, one new per backend
    pruned = [r for r in trials if r.data.tags.get("trial_state") == "PRUNED"]
    assert len(pruned) == 2 and all(r.info.status == "FINISHED" for r in pruned)
    assert len(mlflow_runs(after, role="retrain")) == 2  # best configs unchanged: not repeated
    assert len(mlflow_runs(after, role="search")) == 2


def test_report_compares_both_backends(stores):
    report = stores["out"] / "report"
    csv = (report / "report.csv").read_text().splitlines()
    assert csv[0].startswith("architecture,backend,") and csv[1].startswith("gru,keras,")
    for name in ("report.md", "report.html", "accuracy.png", "time.png", "verdicts.csv"):
        assert (report / name).stat().st_size > 0
    # The verdict leads: torch against keras (the first backend) on keras's best configuration,
    # from keras's re-train and torch's run of that configuration (a cross run, or its own
    # re-train when both searches found the same best).
    markdown = (report / "report.md").read_text()
    assert markdown.index("## Verdict") < markdown.index("## quality")
    assert "\n- gru (torch vs keras): accuracy: " in markdown
    assert "  gru (torch vs keras): accuracy: " in stores["second_run"].stdout
    assert "no detectable difference" not in markdown
    assert mlflow_runs(stores["out"], role="report")
    assert "mlflow ui --backend-store-uri" in stores["second_run"].stdout
    # The runs page opens MLflow 3's model-training view on this experiment, not GenAI's.
    experiment = mlflow_runs(stores["out"], role="report")[0].info.experiment_id
    page = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?workflowType=machine_learning"
    assert page in stores["second_run"].stdout
    assert "optuna-dashboard sqlite:///" in stores["second_run"].stdout


def test_a_terminal_shows_the_study_progress_and_no_library_chatter(stores):
    """The first run drew on a pseudo-terminal: one live display over the whole study (jobs
    done of all planned, elapsed time, an estimate of the rest, each search's best so far) and
    none of TensorFlow's or MLflow's own start-up lines, which went to each run's process.log."""
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stores["first_run"].stdout)
    # 2 searches x (2 trials + 2 backends x 1 seed) + the defaults' 1 seed (the study searches):
    # rich redraws the bar as jobs finish.
    bars = re.findall(r"(\d+)/(\d+) jobs \d+:\d\d:\d\d eta (\S+)", drawn)
    assert {total for _, total, _ in bars} == {"9"}
    # From the first job to the last; which counts between them a redraw catches is timing.
    done = {int(count) for count, _, _ in bars}
    assert 0 in done and max(done) >= 8
    assert any(eta not in ("-", "0s") for count, _, eta in bars if 0 < int(count) < 9)
    # A row per architecture, a column per backend: each search's trials and best so far.
    assert re.search(r"keras +torch\s*\n\s*gru +2/2 trials best 0\.\d{4} +2/2 trials best", drawn)
    finished = re.findall(r"\[(\d+)/9, eta \S+\]", drawn)  # and each job's line its count
    # Each run job's line, numbered by the bar's count (a skipped defaults job counts, silently).
    ran = 8 + len(mlflow_runs(stores["first"], role="defaults"))
    numbers = sorted(map(int, finished))
    assert len(set(numbers)) == len(numbers) == ran and set(numbers) <= set(range(1, 10))
    chatter = ("absl::InitializeLog", "oneDNN custom operations", "Creating initial MLflow")
    assert not [line for line in drawn.splitlines() if any(c in line for c in chatter)]
    keras_logs = (stores["first"] / "jobs").glob("tiny/gru/keras/*/process.log")
    # TensorFlow's own start-up lines (which of them depends on the CPU: oneDNN's on Intel).
    assert any(any(c in log.read_text() for c in chatter) for log in keras_logs)


def test_a_dry_run_estimates_the_rest_from_the_finished_runs(stores, tmp_path):
    """Planned again with a larger budget, the study's finished runs give the pace."""
    study = tmp_path / "tiny.toml"
    study.write_text(tiny_text(trials=10, pruner=NO_PRUNING))
    before = store_counts(stores["out"])
    done = bench("run", "--study", str(study), "--out", str(stores["out"]), "--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    # 2 searches x (10 trials + 2 backends x 1 seed) + the defaults' 1 seed = 25 planned.
    found = re.search(
        r"estimate: (\d+) of 25 jobs left, about \d+ min with 1 worker slot at the median "
        r"(\d+\.\d) s of the (\d+) finished runs",
        done.stdout,
    )
    assert found, done.stdout
    finished = [
        run
        for role in ("trial", "retrain", "cross", "defaults")
        for run in mlflow_runs(stores["out"], role=role)
        if run.info.status == "FINISHED"
    ]
    assert int(found[3]) == len(finished) and int(found[1]) == 25 - len(finished)
    assert float(found[2]) > 0
    assert store_counts(stores["out"]) == before  # read, not written


def test_optuna_dashboard_serves_the_studies(stores, server):
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    server(
        str(dashboard),
        f"sqlite:///{stores['out'] / 'optuna.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    summaries = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
    names = {s["study_name"]: s["study_id"] for s in summaries}
    assert set(names) == {"tiny/gru/keras", "tiny/gru/torch"}
    detail = get_json(f"http://127.0.0.1:{port}/api/studies/{names['tiny/gru/torch']}?after=0")
    assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete", "Pruned"]


def test_mlflow_server_serves_the_runs(stores, server, tmp_path):
    url = start_mlflow_server(
        server, f"sqlite:///{stores['out'] / 'mlflow.db'}", tmp_path / "artifacts"
    )
    base = f"{url}/api/2.0/mlflow"
    experiment = get_json(f"{base}/experiments/get-by-name?experiment_name=tiny")["experiment"]
    runs = get_json(
        f"{base}/runs/search",
        {
            "experiment_ids": [experiment["experiment_id"]],
            "filter": "tags.role = 'trial'",
            "max_results": 100,
        },
    )["runs"]
    assert len(runs) == 6
    states = sorted(
        next(t["value"] for t in r["data"]["tags"] if t["key"] == "trial_state") for r in runs
    )
    assert states == ["COMPLETE"] * 4 + ["PRUNED"] * 2


def test_bench_report_rebuilds_the_comparison_from_the_stores(stores):
    out = stores["out"]
    before = [run.info.run_id for run in mlflow_runs(out, role="report")]
    done = bench("report", "--study", str(out.parent / "tiny.toml"), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gru search best val_accuracy" in done.stdout and "keras" in done.stdout
    # One report run per study, rewritten in place: its id (and links to it) stay.
    assert [run.info.run_id for run in mlflow_runs(out, role="report")] == before
    missing = bench("report", "--study", str(out.parent / "tiny.toml"), "--out", "/no/such/run")
    assert missing.returncode == 2 and "error: --out" in missing.stderr


def store_counts(out: Path) -> tuple[int, int]:
    """Training runs (MLflow) and trials (Optuna) in the stores, to prove that none was added;
    report runs are left out, as a report rewrites its own."""
    roles = ("search", "trial", "retrain", "cross", "defaults")
    runs = sum(len(mlflow_runs(out, role=role)) for role in roles)
    trials = sum(len(optuna_study(out, backend).trials) for backend in BACKENDS)
    return runs, trials


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("epochs = 2", "epochs = 3"), "epochs: 2 -> 3"),
        (("embedding_dim = 8", "embedding_dim = 16"), "fixed.embedding_dim: 8 -> 16"),
        (("subset = 200", "subset = 150"), "data.subset: 200 -> 150"),
    ],
)
def test_a_changed_definition_stops_before_any_work(stores, imdb_slice, tmp_path, edit, named):
    """Runs of different definitions are never mixed: one line, exit 2, the stores untouched."""
    study = tmp_path / "tiny.toml"
    study.write_text(tiny_text(3, PRUNE_AFTER_ONE_EPOCH).replace(*edit))
    before = store_counts(stores["out"])
    result = bench(
        "run", "--study", str(study), "--out", str(stores["out"]), "--data", str(imdb_slice)
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {study}: the study definition changed since the ")
    assert named in lines[0] and "a new --out" in lines[0] and "new [study] name" in lines[0]
    assert store_counts(stores["out"]) == before


def test_a_comment_only_edit_resumes(stores, imdb_slice, tmp_path):
    study = tmp_path / "tiny.toml"
    text = tiny_text(3, PRUNE_AFTER_ONE_EPOCH)
    study.write_text(
        "# a note for the reader\n" + text.replace("epochs = 2", "epochs   =   2  # x")
    )
    before = store_counts(stores["out"])
    result = bench(
        "run", "--study", str(study), "--out", str(stores["out"]), "--data", str(imdb_slice)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs, trials = store_counts(stores["out"])
    assert trials == before[1] and runs == before[0]  # resumed: nothing left to run or add
