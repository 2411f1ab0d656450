"""Every MLflow call of rnnbench: experiments, the run hierarchy, params, tags, metrics, artifacts.

Hierarchy inside the experiment named after the study:

    <arch>/<backend> search                   role=search, one per (architecture, backend)
      <arch>/<backend> trial <n>              role=trial, one per Optuna trial (nested)
      <arch>/<backend> retrain seed <s>       role=retrain, the search's best config, fresh seed
      <arch>/<other> cross from <backend> seed <s>   role=cross, that config on another backend
    <study> report                            role=report, the comparison tables and charts,
                                              one per study, rewritten by every `bench report`

The experiment is tagged as model training (`mlflow.experimentKind`). MLflow 3.17's UI still
opens on its GenAI overview unless asked for its model-training view, hence `runs_page`.

Only the parent process talks to MLflow: it creates each run, fills it in from the events and
files its trial process leaves (`harness.run.trial`), and closes it with a status, so a crashed
trial's run is still closed, with its reason.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset, DatasetInput, Experiment, InputTag, Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

import harness
from harness.errors import BenchError
from harness.stores import (
    check_reachable,
    is_server,
    sqlalchemy_url,
    sqlite_file,
    sqlite_lock,
    without_password,
)

PAGE = 1000  # runs per search request (MLflow's default page size)

PARENT_TAG = "mlflow.parentRunId"
# The experiment's kind as MLflow 3 records it (its UI's own GenAI/training switch wins).
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# MLflow's system metrics (system/cpu_utilization_percentage, ...; GPU ones through NVML): one
# sample a second, so that even a run of a few seconds shows its host in the MLflow UI.
SYSTEM_SAMPLE_SECONDS = 1.0
RUN_COLUMNS = ["run_id", "status", "start_time"]  # `runs_frame`'s columns besides tags.x etc.


def run_filter(tags: Mapping[str, str], status: str | None = None) -> str:
    """The MLflow search filter for runs whose tags equal `tags` (and whose status is `status`).

    MLflow's filter grammar has no escape character: it takes a value verbatim between its
    quotes. So each value goes between the quote character it does not contain; a value with
    both cannot be matched exactly and is refused, rather than matching other runs.
    """
    clauses = []
    for key, value in tags.items():
        if "`" in key:
            raise ValueError(f"expected a tag key without '`'; received {key!r}")
        clauses.append(f"tags.`{key}` = {_quoted(str(value))}")
    if status is not None:
        clauses.append(f"attributes.status = {_quoted(status)}")
    return " and ".join(clauses)


def _quoted(value: str) -> str:
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise ValueError(
        "expected a tag value without both ' and \" (an MLflow filter cannot escape them); "
        f"received {value!r}"
    )


def _flat(run: Run) -> dict[str, object]:
    return {
        "run_id": run.info.run_id,
        "status": run.info.status,
        "start_time": run.info.start_time,
        **{f"tags.{k}": v for k, v in run.data.tags.items()},
        **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
        **{f"params.{k}": v for k, v in run.data.params.items()},
    }


def git_commit() -> str:
    """The commit of the rnnbench checkout, or "unknown" outside a git checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(harness.__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def runs_page(tracking_uri: str, experiment_id: str) -> str:
    """The address of an experiment's training runs in MLflow's UI. The `workflowType` query
    opens the model-training view: MLflow 3's UI otherwise opens its GenAI overview."""
    base = without_password(tracking_uri).rstrip("/") if is_server(tracking_uri) else UI
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def finished_run_seconds(tracking_uri: str, experiment: str) -> list[float]:
    """How long each finished trial, re-training and cross run of `experiment` took, for an
    estimate before any work (`bench run --dry-run`): read only, nothing created; empty when
    the store or the experiment does not exist yet or cannot be read."""
    database = sqlite_file(tracking_uri)
    if not is_server(tracking_uri) and (database is None or not database.is_file()):
        return []  # not there yet, or a database MLflow would set its tables up in
    try:
        check_reachable(tracking_uri, timeout=5)
        client = MlflowClient(sqlalchemy_url(tracking_uri))
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        where = run_filter({}, "FINISHED")
        runs = client.search_runs([found.experiment_id], where, max_results=50_000)
    except Exception:  # noqa: BLE001 - no estimate is better than no plan
        return []
    return [
        (run.info.end_time - run.info.start_time) / 1000
        for run in runs
        if run.data.tags.get("role") in ("trial", "retrain", "cross", "defaults")
        and run.info.end_time
    ]


class SystemMetrics(SystemMetricsMonitor):
    """MLflow's sampler of the host, which also logs what it sampled of a run shorter than one
    interval: MLflow's own loop takes a sample, waits, and drops it when stopped meanwhile."""

    published = False

    def publish_metrics(self, metrics: dict[str, float]) -> None:
        super().publish_metrics(metrics)
        self.published = True

    def finish(self) -> None:
        super().finish()  # stops the thread and flushes what it published
        if not self.published and (metrics := self.aggregate_metrics()):
            try:
                self.publish_metrics(metrics)
                self.mlflow_logger.flush()
            except Exception:  # noqa: BLE001 - as MLflow's own loop: the run's figures matter more
                logging.getLogger(__name__).warning("system metrics not logged", exc_info=True)


def _check_artifact_location(experiment: Experiment, tracking_uri: str) -> None:
    """An experiment made without rnnbench's artifact root (by an older rnnbench's `bench
    report` before any run) keeps its artifacts in MLflow's default `mlruns/<id>` under
    whatever folder that command ran in, or at a relative path: its runs' files would be
    scattered or shared with other studies, so it is refused, named."""
    location = experiment.artifact_location
    if is_server(tracking_uri) or "://" in location.removeprefix("file://"):
        return
    path = Path(location.removeprefix("file://"))
    default = path.parent.name == "mlruns" and path.name == experiment.experiment_id
    if path.is_absolute() and not default:
        return
    raise BenchError(
        f"the MLflow experiment {experiment.name!r} in {without_password(tracking_uri)} keeps "
        f"its artifacts at {location!r}, MLflow's default folder of wherever the command that "
        "made it ran (an older rnnbench's `bench report` before any run), not in the study's "
        "output folder; use a new --out (new stores) for this study"
    )


class Tracker:
    """The parent process's view: find or create runs, and close them with a status."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: Path | None = None,
        run_tags: dict[str, str] | None = None,
    ):
        self.tracking_uri = tracking_uri
        check_reachable(tracking_uri)
        try:
            with sqlite_lock(tracking_uri):  # the first process to open a new store creates it
                self.client = MlflowClient(sqlalchemy_url(tracking_uri))
                found = self.client.get_experiment_by_name(experiment)
        except BenchError:  # said already, in one line (a lock held too long)
            raise
        except Exception as error:  # noqa: BLE001 - any failure here means "cannot reach"
            raise BenchError(
                f"tracking store {without_password(tracking_uri)}: expected a reachable MLflow "
                f"store; received {type(error).__name__}: {str(error).splitlines()[0][:200]}"
            ) from None
        if found is None:
            self.experiment_id = self._create_experiment(experiment, artifact_root)
        else:
            self.experiment_id = found.experiment_id
            _check_artifact_location(found, tracking_uri)
        if found is None or EXPERIMENT_KIND not in found.tags:  # also a store made before it
            self.write_experiment_tags({EXPERIMENT_KIND: MODEL_TRAINING})
        self.parent_of: dict[str, str] = {}  # run -> its parent, for the runs started here
        self.data_linked: set[str] = set()  # parents whose dataset input is known to be there
        self.base_tags = {
            "rnnbench_version": harness.__version__,
            "git_commit": git_commit(),
            **(run_tags or {}),
        }

    def experiment_tag(self, key: str) -> str | None:
        return self.client.get_experiment(self.experiment_id).tags.get(key)

    def _create_experiment(self, name: str, artifact_root: Path | None) -> str:
        """A tracking server keeps the artifacts itself (every worker machine can reach them);
        a local store keeps them beside the run's other outputs."""
        local = artifact_root and not is_server(self.tracking_uri)
        location = artifact_root.resolve().as_uri() if local else None
        try:
            return self.client.create_experiment(name, location)
        except MlflowException:  # another worker created it a moment ago
            return self.client.get_experiment_by_name(name).experiment_id

    def find_run(self, **tags: str) -> str | None:
        """The oldest run whose tags all match, for resuming instead of duplicating."""
        runs = self.client.search_runs(
            [self.experiment_id],
            run_filter(tags),
            max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        return runs[0].info.run_id if runs else None

    def search_run(self, study: str, architecture: str, backend: str, optuna_study: str) -> str:
        tags = {
            "role": "search",
            "study": study,
            "architecture": architecture,
            "backend": backend,
            "optuna_study": optuna_study,
        }
        found = self.find_run(**tags)
        if found is not None:
            return found
        mine = self.start(f"{architecture}/{backend} search", tags)
        # Workers that start together may each have created one: all keep the oldest.
        created = self.client.search_runs(
            [self.experiment_id], run_filter(tags), order_by=["attributes.start_time ASC"]
        )
        oldest = created[0].info.run_id if created else mine
        if oldest != mine:
            self.client.delete_run(mine)
        return oldest

    def start(self, name: str, tags: dict[str, str], parent: str | None = None) -> str:
        all_tags = {**self.base_tags, **tags, **({PARENT_TAG: parent} if parent else {})}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        if parent:
            self.parent_of[run.info.run_id] = parent
        return run.info.run_id

    def reopen(self, name: str, tags: dict[str, str]) -> str:
        """The run whose tags equal `tags`, marked running again to be rewritten in place (its
        id, and so every link to it, stays); a new run when there is none yet."""
        found = self.find_run(**tags)
        if found is None:
            return self.start(name, tags)
        self.client.update_run(found, status="RUNNING", name=name)
        self.set_tags(found, **{**self.base_tags, **tags})
        if self.tag(found, "failure_reason") is not None:  # from an earlier, failed rewrite
            self.delete_tag(found, "failure_reason")
        return found

    def system_metrics(self, run_id: str) -> SystemMetrics:
        """Start MLflow's own sampler of the host (CPU, memory, disk, network, and GPU
        utilisation and memory where NVML sees one) logging into `run_id` while its job runs;
        `finish()` it when the job ends. The MLflow UI then shows a busy machine beside the
        run's figures."""
        monitor = SystemMetrics(
            run_id,
            sampling_interval=SYSTEM_SAMPLE_SECONDS,
            tracking_uri=sqlalchemy_url(self.tracking_uri),
        )
        monitor.start()
        return monitor

    def finish(self, run_id: str, status: str, reason: str | None = None) -> None:
        """Close a run: FINISHED, FAILED or KILLED, with the reason as a tag when there is one."""
        if reason:
            self.client.set_tag(run_id, "failure_reason", reason[:5000])
        self.client.set_terminated(run_id, status)

    def _search(self, where: str) -> Iterator[Run]:
        """Every run of the experiment matching `where`, page by page: a search returns one page
        (`PAGE` runs), and a study on a GPU can hold more runs than that."""
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], where, max_results=PAGE, page_token=token
            )
            yield from page
            token = page.token
            if not token:
                return

    def finished_runs(self, **tags: str) -> list[Run]:
        return list(self._search(run_filter(tags, "FINISHED")))

    def running_runs(self, roles: tuple[str, ...]) -> list[str]:
        """Runs of these roles still marked RUNNING (live, or orphaned by a killed process)."""
        return [
            run.info.run_id
            for role in roles
            for run in self._search(run_filter({"role": role}, "RUNNING"))
        ]

    def tag(self, run_id: str, key: str) -> str | None:
        return self.client.get_run(run_id).data.tags.get(key)

    # -- reading back, for the report --------------------------------------------------------
    def runs_frame(self, **tags: str) -> pd.DataFrame:
        """The experiment's runs whose tags equal `tags`, one row each, shaped like
        `mlflow.search_runs` (run_id, status, start_time, tags.x, metrics.x, params.x).

        Paged through the client rather than `mlflow.search_runs`, which reads the process-wide
        tracking URI, so reading never changes global MLflow state.
        """
        rows = [_flat(run) for run in self._search(run_filter(tags))]
        return pd.DataFrame(rows, columns=None if rows else RUN_COLUMNS)

    def metric_history(self, run_id: str, key: str) -> list[float]:
        """Every value a run logged for `key`, in step order (per-epoch metrics: one an epoch)."""
        history = self.client.get_metric_history(run_id, key)
        return [m.value for m in sorted(history, key=lambda m: m.step)]

    # -- filling a run in, from what its trial process reported -----------------------------
    def log_start(
        self,
        run_id: str,
        params: dict[str, object],
        tags: dict[str, str],
        dataset: Path,
        dataset_digest: str,
    ) -> None:
        self.client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": all local files
            warnings.simplefilter("ignore")
            source = resolve_dataset_source(dataset.resolve().as_uri())
        # MLflow keeps at most 36 characters of a digest; the full sha256 is a param as well.
        data = MetaDataset(source=source, name="imdb", digest=dataset_digest[:36])
        context = [InputTag("mlflow.data.context", "training")]
        # `to_dict` holds exactly the public Dataset entity's fields (MLflow's own conversion,
        # `_to_mlflow_entity`, is private); tests/test_tracking.py reads the input back.
        inputs = [DatasetInput(Dataset(**data.to_dict()), context)]
        try:
            self.client.log_inputs(run_id, inputs)
        except MlflowException:
            # Two workers logging the dataset's first use at once: one insert wins, the other
            # fails on the store's unique key. Now that it exists, linking it succeeds.
            time.sleep(1)
            self.client.log_inputs(run_id, inputs)
        # The runs table shows a search collapsed to its parent run: it names the data too,
        # linked once per parent and process (a resumed study's parent may hold it already).
        parent = self.parent_of.get(run_id)
        if parent and parent not in self.data_linked:
            self.data_linked.add(parent)
            if not self.client.get_run(parent).inputs.dataset_inputs:
                try:
                    self.client.log_inputs(parent, inputs)
                except MlflowException:
                    pass  # another worker's trial linked it a moment ago

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        # Not every store accepts NaN or infinity; a diverged run says so in its tags instead.
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in values.items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        ]
        self.client.log_batch(run_id, metrics=metrics)

    def log_artifacts(self, run_id: str, paths: list[str]) -> None:
        for path in paths:
            self.client.log_artifact(run_id, path)

    def log_table(self, run_id: str, frame: pd.DataFrame, name: str) -> None:
        """A table as a JSON artifact that MLflow's UI shows as a table (and `load_table` reads).

        Written whole, in `MlflowClient.log_table`'s format and with its tag, because that
        method appends to a table of the same name: a rewritten report would double its rows.
        """
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            frame.to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(run_id, str(path))
        logged = json.loads(self.tag(run_id, MLFLOW_LOGGED_ARTIFACTS) or "[]")
        entry = {"path": name, "type": "table"}
        if entry not in logged:
            self.set_tags(run_id, **{MLFLOW_LOGGED_ARTIFACTS: json.dumps([*logged, entry])})

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def set_tags(self, run_id: str, **tags: str) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def delete_tag(self, run_id: str, key: str) -> None:
        self.client.delete_tag(run_id, key)

    def runs_tagged(self, key: str) -> list[Run]:
        """Every run of the experiment that carries the tag `key`, whatever its value."""
        if "`" in key:
            raise ValueError(f"expected a tag key without '`'; received {key!r}")
        return list(self._search(f"tags.`{key}` LIKE '%'"))

    def write_experiment_tags(self, tags: dict[str, str]) -> None:
        """Tag the experiment, tolerating a lost race: a server on PostgreSQL refuses the second
        of two inserts at the same moment. The caller reads back whichever write won."""
        try:
            for key, value in tags.items():
                self.client.set_experiment_tag(self.experiment_id, key, value)
        except MlflowException:
            pass
