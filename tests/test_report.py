"""`harness.report.build` against real MLflow and Optuna SQLite stores (no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from report_stores import (
    ARCHS,
    CROSS_KERAS_ON_TORCH,
    RETRAIN,
    STUDY,
    TRIALS,
    fill_mlflow,
    fill_optuna,
    log_run,
    make_study,
)
from rich.console import Console
from scipy import stats

from harness.report.build import Report, build_report
from harness.report.render import print_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("report-stores")
    tracking_uri, storage_url = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    client = MlflowClient(tracking_uri)
    artifacts = (root / "artifacts").as_uri()
    fill_mlflow(client, client.create_experiment(STUDY, artifacts))
    fill_optuna(storage_url)
    return SimpleNamespace(
        root=root,
        tracking_uri=tracking_uri,
        storage_url=storage_url,
        client=client,
        artifacts=artifacts,
    )


@pytest.fixture(scope="module")
def report(stores: SimpleNamespace) -> Report:
    return build_report(
        make_study(STUDY, ARCHS), stores.tracking_uri, stores.storage_url, stores.root / "report"
    )


def test_one_row_per_architecture_and_backend(report: Report) -> None:
    """Long form: the columns do not grow with the backends."""
    assert list(report.table.index) == [(a, b) for a in ARCHS for b in ("keras", "torch")]
    assert report.table.index.names == ["architecture", "backend"]
    assert len(report.table.columns) < 25


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_test_metrics_are_mean_and_sample_std_of_the_retrain_seeds(
    report: Report, arch: str, backend: str
) -> None:
    row, seeds = report.table.loc[(arch, backend)], RETRAIN[arch, backend]
    for column, key in (("test_accuracy", "acc"), ("test_f1", "f1"), ("test_roc_auc", "auc")):
        values = np.array([s[key] for s in seeds])
        assert row[f"{column}_mean"] == pytest.approx(values.mean())
        assert row[f"{column}_std"] == pytest.approx(values.std(ddof=1))
    perplexity = np.mean([s["ppl"] for s in seeds])
    assert row["test_perplexity_mean"] == pytest.approx(perplexity)
    assert row["retrain_runs"] == 2  # the old config and the FAILED run are left out
    assert row["peak_rss_mb"] == pytest.approx(np.mean([s["rss"] for s in seeds]))


def test_seconds_and_samples_per_epoch(report: Report) -> None:
    table = report.table
    for arch, backend in (("lstm", "keras"), ("lstm", "torch"), ("gru", "torch")):
        seeds = RETRAIN[arch, backend]
        # Steady state: the first epoch (compilation included) is left out.
        expected = np.mean([np.mean(s["secs"][1:]) for s in seeds])
        assert table.loc[(arch, backend), "seconds_per_epoch"] == pytest.approx(expected)
        sps = np.mean([np.mean(s["sps"][1:]) for s in seeds])
        assert table.loc[(arch, backend), "samples_per_second"] == pytest.approx(sps)
    # no history: total_train_seconds / epochs param
    fallback = np.mean([s["total"] / 3 for s in RETRAIN["gru", "keras"]])
    assert table.loc[("gru", "keras"), "seconds_per_epoch"] == pytest.approx(fallback)
    assert math.isnan(table.loc[("gru", "keras"), "samples_per_second"])


def test_ratios_against_the_baseline_row(report: Report) -> None:
    torch, keras = report.table.loc[("lstm", "torch")], report.table.loc[("lstm", "keras")]
    assert torch["seconds_per_epoch_vs_baseline"] == pytest.approx(
        torch["seconds_per_epoch"] / keras["seconds_per_epoch"]
    )
    assert torch["peak_rss_mb_vs_baseline"] == pytest.approx(1550.0 / 2050.0)
    assert keras["seconds_per_epoch_vs_baseline"] == 1.0


def test_search_best_and_trial_counts(report: Report) -> None:
    table = report.table
    for (arch, backend), (values, pruned, failed) in TRIALS.items():
        row = table.loc[(arch, backend)]
        assert row["trials_complete"] == len(values)
        assert row["trials_pruned"] == pruned
        assert row["trials_failed"] == failed
        best = row["search_best_val_accuracy"]
        assert best == pytest.approx(max(values)) if values else math.isnan(best)


def test_cross_runs_have_their_own_long_table(report: Report) -> None:
    cross = report.sections["cross runs: a's best configuration re-trained on b"]
    assert list(cross.index) == [("lstm", "keras→torch")]  # gru has no cross runs
    expected = np.array(CROSS_KERAS_ON_TORCH)
    assert cross.iloc[0, 0] == f"{expected.mean():.3f} ± {expected.std(ddof=1):.3f}"


def test_missing_pieces_are_nan(report: Report) -> None:
    assert report.memory_metric == "peak_rss_mb"
    assert not any(c.startswith("peak_gpu_memory_mb") for c in report.table.columns)
    for backend in ("keras", "torch"):
        bilstm = report.table.loc[("bilstm", backend)]
        for column in (
            "test_accuracy_mean",
            "seconds_per_epoch",
            "peak_rss_mb",
            "parameter_count",
            "search_best_val_accuracy",
            "seconds_per_epoch_vs_baseline",
        ):
            assert math.isnan(bilstm[column])
    assert math.isnan(report.table.loc[("bilstm", "torch"), "trials_complete"])  # never started


def test_files_are_written(report: Report, stores: SimpleNamespace) -> None:
    out = stores.root / "report"
    names = {
        "report.csv",
        "report.md",
        "report.html",
        "accuracy.png",
        "time.png",
        "optimization_history.png",
        "verdicts.csv",
        "tuning.csv",  # the study searches (3 trials): what tuning bought
    }
    assert {p.name for p in report.paths.values()} == names
    for path in report.paths.values():
        assert path.parent == out and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG
    csv = pd.read_csv(out / "report.csv", index_col=["architecture", "backend"])
    pd.testing.assert_frame_equal(csv, report.table, check_dtype=False)
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "0.820 ± 0.014" in page
    markdown = (out / "report.md").read_text()
    assert "| lstm keras |" in markdown and "![accuracy](accuracy.png)" in markdown
    widths = [line.count("|") - 1 for line in markdown.splitlines() if line.startswith("|")]
    assert max(widths) <= 12  # columns, index included: no table grows with the backends


def test_report_run_holds_the_files(report: Report, stores: SimpleNamespace) -> None:
    run = stores.client.get_run(report.run_id)
    assert run.data.tags["role"] == "report" and run.data.tags["study"] == STUDY
    assert run.info.run_name == f"{STUDY} report" and run.info.status == "FINISHED"
    listed = {a.path for a in stores.client.list_artifacts(report.run_id)}
    # The files, the verdict as an MLflow table (shown in the UI's artifact view) and in words.
    assert listed == {p.name for p in report.paths.values()} | {"verdicts.json", "headline.txt"}
    headline = stores.client.download_artifacts(report.run_id, "headline.txt")
    assert Path(headline).read_text().splitlines() == report.headline
    assert len(_logged_table(stores, report.run_id)) == len(report.verdict_table) > 0


def _logged_table(stores: SimpleNamespace, run_id: str) -> pd.DataFrame:
    """verdicts.json as MLflow's UI reads it: a table artifact named in the run's tag (the
    client's `load_table` would search the process-wide tracking URI, not this store)."""
    tag = json.loads(stores.client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "verdicts.json", "type": "table"} in tag
    path = stores.client.download_artifacts(run_id, "verdicts.json")
    return pd.read_json(path, orient="split")


def test_a_rebuilt_report_rewrites_its_run_in_place(
    report: Report, stores: SimpleNamespace, tmp_path: Path
) -> None:
    """`bench report` run again keeps one report run per study, its table not doubled."""
    again = build_report(
        make_study(STUDY, ARCHS), stores.tracking_uri, stores.storage_url, tmp_path / "report"
    )
    assert again.run_id == report.run_id
    experiment = stores.client.get_experiment_by_name(STUDY).experiment_id
    reports = stores.client.search_runs([experiment], "tags.role = 'report'")
    assert [r.info.run_id for r in reports] == [report.run_id]
    assert reports[0].info.status == "FINISHED"
    assert len(_logged_table(stores, report.run_id)) == len(report.verdict_table)
    # MLflow's UI opens the experiment on its training runs, not on the GenAI overview.
    tags = stores.client.get_experiment(experiment).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_print_report(report: Report) -> None:
    console = Console(record=True, width=250)
    print_report(console, report)
    text = console.export_text()
    assert "lstm" in text and "0.820 ± 0.014" in text and "report.html" in text
    for line in report.headline:  # verbatim: "[retrain]" in a line is text, not Rich markup
        assert line in text


def test_gpu_memory_wins_and_an_empty_study_reports_nan(
    stores: SimpleNamespace, tmp_path: Path
) -> None:
    client = stores.client
    experiment = client.create_experiment("imdb-gpu", stores.artifacts)
    for backend, gpu in (("keras", None), ("torch", 900.0)):
        metrics = {"test_accuracy": 0.8, "peak_rss_mb": 3000.0}
        metrics |= {"peak_gpu_memory_mb": gpu} if gpu else {}
        tags = {"role": "retrain", "study": "imdb-gpu", "architecture": "gru", "backend": backend}
        log_run(client, experiment, "retrain seed 0", tags, metrics)
    gpu = build_report(
        make_study("imdb-gpu", ["gru", "lstm"]), stores.tracking_uri, stores.storage_url, tmp_path
    )
    assert gpu.memory_metric == "peak_gpu_memory_mb"
    assert gpu.table.loc[("gru", "torch"), "peak_gpu_memory_mb"] == 900.0
    keras = gpu.table.loc[("gru", "keras")]
    assert math.isnan(keras["peak_gpu_memory_mb"])  # CPU run: no rss mixed in
    assert math.isnan(gpu.table.loc[("gru", "torch"), "peak_gpu_memory_mb_vs_baseline"])
    lstm = gpu.table.loc["lstm"].drop(columns=["retrain_runs", "contended_runs"])
    assert lstm.isna().all().all()


def test_verdicts_compare_one_configuration_paired_by_seed(report: Report) -> None:
    """Each backend against the baseline (keras, the study's first) on the baseline's newest
    best configuration: torch's cross runs of it, one per seed, not also torch's own re-trains
    (their seeds would count twice), paired with keras's run of the same seed."""
    lstm, gru, bilstm = report.verdicts
    assert (lstm.architecture, lstm.contender, lstm.baseline) == ("lstm", "torch", "keras")
    assert lstm.config_hash == "new"
    assert lstm.samples["torch"].quality == dict(enumerate(CROSS_KERAS_ON_TORCH))
    assert lstm.samples["keras"].quality == {0: 0.81, 1: 0.83}  # not the old config's 0.10
    quality = lstm.clause("accuracy")
    differences = np.array(CROSS_KERAS_ON_TORCH) - [0.81, 0.83]
    assert quality.estimate == pytest.approx(differences.mean())
    expected = stats.ttest_rel(CROSS_KERAS_ON_TORCH, [0.81, 0.83]).confidence_interval()
    assert (quality.low, quality.high) == pytest.approx((expected.low, expected.high))
    assert quality.kind == "inconclusive" and quality.pairs == 2
    # One value per run: the mean of its steady-state epochs (the first left out).
    assert lstm.samples["keras"].epoch_seconds == {0: 10.0, 1: 9.5}
    assert lstm.samples["keras"].steady_epochs == 4
    time = lstm.clause("time per epoch")
    assert time.estimate == pytest.approx(np.sqrt(5.0 / 10.0 * 5.0 / 9.5))  # paired log-ratios
    assert time.kind == "better" and time.high < 1
    memory = lstm.clause("memory")
    assert memory.estimate == pytest.approx(np.sqrt(1500 / 2000 * 1600 / 2100))
    # MLPerf's time to target: every epoch counts until val_accuracy first reaches 0.8.
    assert sorted(lstm.samples["torch"].time_to_target) == [5.0, 11.0]
    line = next(line for line in report.headline if line.startswith("lstm "))
    assert line.startswith("lstm (torch vs keras): accuracy: inconclusive at a ±0.005 margin")
    assert "paired t, n 2/2 seeds paired" in line
    assert "time per epoch: torch 1.95x faster [" in line
    assert "time to val_accuracy 0.8 (median): torch 8.0 s (2/2 runs)" in line
    assert "no detectable difference" not in "\n".join(report.headline)
    # keras/gru logged no epoch history: nothing to pair, and the line says so.
    assert "time per epoch: not measured on both sides" in gru.headline
    assert bilstm.headline.startswith("bilstm (torch vs keras): no verdict: keras has no")


def test_one_line_per_contender_across_architectures(report: Report) -> None:
    (line,) = report.overall
    assert line.architecture == "all architectures" and line.metric == "time per epoch"
    assert line.pairs == 1  # only lstm has epoch times on both sides
    assert line.estimate == pytest.approx(report.verdicts[0].clause("time per epoch").estimate)
    assert report.headline[0].startswith("torch vs keras, time per epoch: ")
    assert "by architecture: better on 1, no data on 1" in report.headline[0]


def test_each_contender_is_compared_with_a_baseline_that_is_not_the_first_backend(
    stores: SimpleNamespace, tmp_path: Path
) -> None:
    """[study] baseline = "torch" with backends ["keras", "torch"]: keras is the contender, on
    torch's best configuration (keras has no cross runs of it: its own re-trains of the same
    configuration count), and every ratio is keras to torch."""
    study = make_study(STUDY, ARCHS, baseline="torch")
    found = build_report(study, stores.tracking_uri, stores.storage_url, tmp_path)
    lstm, gru, bilstm = found.verdicts
    assert (lstm.architecture, lstm.contender, lstm.baseline) == ("lstm", "keras", "torch")
    assert lstm.samples["keras"].quality == {0: 0.81, 1: 0.83}  # not the old config's 0.10
    assert lstm.samples["torch"].quality == {0: 0.80, 1: 0.84}  # re-trains, not keras's cross
    assert lstm.clause("accuracy").estimate == pytest.approx(0.0)
    assert lstm.clause("time per epoch").estimate == pytest.approx(np.sqrt(10 / 5 * 9.5 / 5))
    line = next(line for line in found.headline if line.startswith("lstm "))
    assert line.startswith("lstm (keras vs torch): accuracy: inconclusive")
    assert "keras 1.95x slower [" in line
    assert bilstm.headline.startswith("bilstm (keras vs torch): no verdict: torch has no")
    table = pd.read_csv(found.paths["verdicts"])
    assert set(table["contender"]) == {"keras"} and set(table["baseline"]) == {"torch"}
    keras, torch = found.table.loc[("lstm", "keras")], found.table.loc[("lstm", "torch")]
    assert keras["seconds_per_epoch_vs_baseline"] == pytest.approx(
        keras["seconds_per_epoch"] / torch["seconds_per_epoch"]
    )
    assert keras["peak_rss_mb_vs_baseline"] == pytest.approx(2050.0 / 1550.0)
    assert list(found.table.loc["lstm"].index) == ["torch", "keras"]  # the baseline first
    cost = found.sections[
        "cost (mean over re-trainings of each backend's best; "
        "ratios on the baseline's configuration)"
    ]
    assert cost.loc[("lstm", "keras"), "s/epoch vs baseline"] == "1.95"


def test_a_study_of_one_backend_reports_without_a_verdict(
    stores: SimpleNamespace, tmp_path: Path
) -> None:
    study = make_study(STUDY, ARCHS, backends=("torch",), baseline="torch")
    found = build_report(study, stores.tracking_uri, stores.storage_url, tmp_path)
    assert found.verdicts == [] and found.headline == [] and found.verdict_table.empty
    assert set(found.table.index.get_level_values("backend")) == {"torch"}
    assert found.table.loc[("lstm", "torch"), "retrain_runs"] == 2
    trials = found.table.loc[("lstm", "torch"), "trials_complete"]
    assert trials == len(TRIALS["lstm", "torch"][0])
    markdown = found.paths["markdown"].read_text()
    assert "## Verdict" not in markdown and "| lstm torch |" in markdown
    console = Console(record=True, width=250)
    print_report(console, found)
    assert "verdict (paired" not in console.export_text()
    listed = {a.path for a in stores.client.list_artifacts(found.run_id)}
    assert "headline.txt" in listed  # the same report run, rewritten: no verdict left in it
    assert _logged_table(stores, found.run_id).empty


def test_cost_ratios_compare_the_baselines_configuration_on_both_backends(tmp_path: Path) -> None:
    """torch's own best is a wider model (12 s an epoch); on keras's configuration torch takes
    5 s an epoch, against keras's 10 s. The ratio is 0.5 (equal work), not 1.2 (the searches'
    choices); the s/epoch column keeps each backend's own best."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("ratios", (tmp_path / "artifacts").as_uri())
    runs = [  # (backend, role, config_from, config_hash, seconds per epoch, peak RSS)
        ("keras", "retrain", "keras", "keras-best", 10.0, 2000.0),
        ("torch", "retrain", "torch", "torch-best", 12.0, 3000.0),
        ("torch", "cross", "keras", "keras-best", 5.0, 1000.0),
        ("keras", "cross", "torch", "torch-best", 20.0, 4000.0),
    ]
    for backend, role, source, config, seconds, rss in runs:
        for seed in range(2):
            tags = {"study": "ratios", "role": role, "architecture": "lstm", "backend": backend}
            tags |= {"config_from": source, "config_hash": config, "seed": str(seed)}
            tags |= {"framework": "x", "device": "cpu"}
            metrics = {"test_accuracy": 0.8, "peak_rss_mb": rss}
            history = {"epoch_seconds": [seconds + 3, seconds, seconds]}
            log_run(client, experiment, f"{role} seed {seed}", tags, metrics, history)
    found = build_report(
        make_study("ratios", ["lstm"]),
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        f"sqlite:///{tmp_path / 'optuna.db'}",
        tmp_path / "report",
    )
    torch = found.table.loc[("lstm", "torch")]
    assert torch["seconds_per_epoch"] == pytest.approx(12.0)  # its own best's epochs
    assert torch["seconds_per_epoch_vs_baseline"] == pytest.approx(0.5)  # on keras's config
    assert torch["peak_rss_mb_vs_baseline"] == pytest.approx(0.5)
    assert found.table.loc[("lstm", "keras"), "seconds_per_epoch_vs_baseline"] == 1.0
