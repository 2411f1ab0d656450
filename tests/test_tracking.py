"""`harness.tracking` against a real SQLite MLflow store: filters, reading back, dataset inputs,
and figures attached after the run (`harness.run.artifacts`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import tracking
from harness.errors import BenchError
from harness.run.artifacts import PENDING, Artifacts
from harness.run.trial import Outcome
from harness.stores import child_environment, child_url, password_environment, without_password
from harness.tracking import Tracker, check_reachable, run_filter

QUOTED = ["it's", 'say "hi"', "plain", "it''s", "back\\slash", "50%_off"]


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "filters", tmp_path / "artifacts")


def test_tag_values_with_quotes_match_exactly_their_own_runs(tracker: Tracker) -> None:
    """MLflow's filters have no escape character: a value with a quote goes between the other
    kind, and nothing like it (a doubled quote, a wildcard) matches more than itself."""
    made = {value: tracker.start(value, {"role": "retrain", "study": value}) for value in QUOTED}
    for run_id in made.values():
        tracker.finish(run_id, "FINISHED")
    for value, run_id in made.items():
        assert tracker.find_run(study=value) == run_id
        assert [r.info.run_id for r in tracker.finished_runs(study=value, role="retrain")] == [
            run_id
        ]
        assert list(tracker.runs_frame(study=value)["run_id"]) == [run_id]
    assert tracker.running_runs(roles=("retrain",)) == []


def test_a_value_with_both_quotes_is_refused_rather_than_matching_other_runs() -> None:
    with pytest.raises(ValueError, match="without both ' and \""):
        run_filter({"study": """it's "quoted\""""})
    with pytest.raises(ValueError, match="tag key without '`'"):
        run_filter({"a`b": "x"})
    assert run_filter({"role": "trial"}, "RUNNING") == (
        "tags.`role` = 'trial' and attributes.status = 'RUNNING'"
    )


def test_runs_frame_and_metric_history_read_what_was_logged(tracker: Tracker) -> None:
    assert list(tracker.runs_frame(study="none").columns) == ["run_id", "status", "start_time"]
    run_id = tracker.start("r", {"study": "s"})
    for step, value in ((3, 30.0), (1, 10.0), (2, 20.0)):
        tracker.log_metrics(run_id, {"epoch_seconds": value}, step)
    tracker.finish(run_id, "FINISHED")
    assert tracker.metric_history(run_id, "epoch_seconds") == [10.0, 20.0, 30.0]
    frame = tracker.runs_frame(study="s")
    assert frame.loc[0, "status"] == "FINISHED" and frame.loc[0, "tags.study"] == "s"
    assert frame.loc[0, "metrics.epoch_seconds"] == 30.0  # the latest step


def test_the_dataset_input_is_logged_through_public_entities(
    tracker: Tracker, tmp_path: Path
) -> None:
    """The public `Dataset(**MetaDataset.to_dict())` in place of MLflow's private
    `_to_mlflow_entity`: the run's input must read back as MLflow's own conversion wrote it."""
    dataset = tmp_path / "aclImdb.tar.gz"
    dataset.write_bytes(b"reviews")
    digest = "ab" * 32
    parent = tracker.start("lstm/torch search", {"role": "search"})
    for trial in range(2):  # the parent, shown collapsed in the UI, names the data once
        run_id = tracker.start(f"trial {trial}", {"role": "trial"}, parent=parent)
        tracker.log_start(run_id, {"epochs": 3}, {"device": "cpu"}, dataset, digest)
        run = tracker.client.get_run(run_id)
        (logged,) = run.inputs.dataset_inputs
        (on_parent,) = tracker.client.get_run(parent).inputs.dataset_inputs
        assert on_parent.dataset.digest == logged.dataset.digest
    assert logged.dataset.name == "imdb" and logged.dataset.digest == digest[:36]
    assert logged.dataset.source_type == "local"
    assert dataset.resolve().as_uri() in logged.dataset.source
    assert [(t.key, t.value) for t in logged.tags] == [("mlflow.data.context", "training")]
    assert run.data.params["epochs"] == "3" and run.data.tags["device"] == "cpu"


def test_every_search_reads_all_pages(tracker: Tracker, monkeypatch) -> None:
    """A search returns one page of runs; a study with more runs than a page must still see
    them all (pages of 2 here stand in for MLflow's 1000)."""
    monkeypatch.setattr(tracking, "PAGE", 2)
    finished = [tracker.start(f"r{i}", {"role": "retrain", "study": "s"}) for i in range(5)]
    running = [tracker.start(f"c{i}", {"role": "cross", "study": "s"}) for i in range(3)]
    for run_id in finished:
        tracker.finish(run_id, "FINISHED")
    assert {r.info.run_id for r in tracker.finished_runs(study="s")} == set(finished)
    assert set(tracker.running_runs(roles=("retrain", "cross"))) == set(running)
    assert len(tracker.runs_frame(study="s")) == 8


def test_figures_left_undrawn_by_a_killed_process_are_drawn_by_the_next(tracker, tmp_path):
    """The process that ran a job died before drawing its figures (on a CPU they wait for the
    end of the study): the run says so, and the next process of the study attaches them."""
    folder = tmp_path / "job"
    folder.mkdir()
    epochs = [
        {"epoch": n, "train_loss": 0.7, "val_loss": 0.6, "train_accuracy": 0.5, "val_accuracy": 0.6}
        for n in (1, 2)
    ]
    Outcome("COMPLETE", 0.6, epochs=epochs, confusion=[[3, 1], [2, 4]]).write(
        folder / "outcome.json"
    )
    run_id = tracker.start("retrain seed 0", {"role": "retrain", "architecture": "gru",
                                              "backend": "torch", "seed": "0"})  # fmt: skip
    tracker.finish(run_id, "FINISHED")
    Artifacts(tracker, background=False).add(run_id, folder, "gru on torch (seed 0)")
    # ... and the process is killed here, before its drain.
    assert tracker.tag(run_id, PENDING) == str(folder)
    assert tracker.client.list_artifacts(run_id) == []

    later = Artifacts(tracker, background=False)
    assert later.recover() == 1
    later.drain()
    attached = {a.path for a in tracker.client.list_artifacts(run_id)}
    assert attached == {"learning_curves.png", "confusion_matrix.png"}
    assert tracker.tag(run_id, PENDING) is None
    assert later.recover() == 0  # nothing left pending


@pytest.mark.parametrize(
    ("url", "shown", "environment"),
    [
        ("postgresql://ann:p%40ss@db:5432/optuna", "postgresql://ann@db:5432/optuna", "p@ss"),
        ("postgres://ann:pw@[::1]/o", "postgres://ann@[::1]/o", "pw"),
        ("postgresql+psycopg://ann:pw@db/o", "postgresql+psycopg://ann@db/o", "pw"),  # a driver
        ("http://ann:pw@mlflow:5000", "http://ann@mlflow:5000", None),  # no libpq: shown only
        ("postgresql://ann@db/optuna", "postgresql://ann@db/optuna", None),  # PGPASSWORD's job
        ("sqlite:////tmp/out/optuna.db", "sqlite:////tmp/out/optuna.db", None),
    ],
)
def test_urls_are_shown_and_written_without_their_password(url, shown, environment):
    assert without_password(url) == shown
    assert password_environment(url) == ({"PGPASSWORD": environment} if environment else {})
    assert child_url(url) == (shown if environment else url)  # what a job file holds


def test_a_tracking_url_with_a_password_is_refused_without_showing_it():
    with pytest.raises(BenchError) as refused:
        check_reachable("http://ann:s3cret-pw@mlflow.example")  # urllib: "nonnumeric port"
    assert "s3cret-pw" not in str(refused.value)
    assert "MLFLOW_TRACKING_PASSWORD" in str(refused.value)


def test_trial_processes_get_no_mlflow_login(monkeypatch):
    """Only the `bench` process talks to MLflow: its login stays out of every child."""
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ann")
    environment = child_environment({"PGPASSWORD": "pw"})
    assert "MLFLOW_TRACKING_PASSWORD" not in environment
    assert "MLFLOW_TRACKING_USERNAME" not in environment
    assert environment["PGPASSWORD"] == "pw" and environment["PATH"] == os.environ["PATH"]
