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


def test_one_row_per_architecture(report: Report) -> None:
    assert list(report.table.index) == ARCHS
    assert report.table.index.name == "architecture"


@pytest.mark.parametrize("arch", ["lstm", "gru"])
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_test_metrics_are_mean_and_sample_std_of_the_retrain_seeds(
    report: Report, arch: str, backend: str
) -> None:
    row, seeds = report.table.loc[arch], RETRAIN[arch, backend]
    for column, key in (("test_accuracy", "acc"), ("test_f1", "f1"), ("test_roc_auc", "auc")):
        values = np.array([s[key] for s in seeds])
        assert row[f"{column}_mean {backend}"] == pytest.approx(values.mean())
        assert row[f"{column}_std {backend}"] == pytest.approx(values.std(ddof=1))
    perplexity = np.mean([s["ppl"] for s in seeds])
    assert row[f"test_perplexity_mean {backend}"] == pytest.approx(perplexity)
    assert row[f"retrain_runs {backend}"] == 2  # the old config and the FAILED run are left out
    assert row[f"peak_rss_mb {backend}"] == pytest.approx(np.mean([s["rss"] for s in seeds]))


def test_seconds_and_samples_per_epoch(report: Report) -> None:
    table = report.table
    for arch, backend in (("lstm", "keras"), ("lstm", "torch"), ("gru", "torch")):
        seeds = RETRAIN[arch, backend]
        # Steady state: the first epoch (compilation included) is left out.
        expected = np.mean([np.mean(s["secs"][1:]) for s in seeds])
        assert table.loc[arch, f"seconds_per_epoch {backend}"] == pytest.approx(expected)
        sps = np.mean([np.mean(s["sps"][1:]) for s in seeds])
        assert table.loc[arch, f"samples_per_second {backend}"] == pytest.approx(sps)
    # no history: total_train_seconds / epochs param
    fallback = np.mean([s["total"] / 3 for s in RETRAIN["gru", "keras"]])
    assert table.loc["gru", "seconds_per_epoch keras"] == pytest.approx(fallback)
    assert math.isnan(table.loc["gru", "samples_per_second keras"])


def test_torch_to_keras_ratios(report: Report) -> None:
    row = report.table.loc["lstm"]
    assert row["seconds_per_epoch torch/keras"] == pytest.approx(
        row["seconds_per_epoch torch"] / row["seconds_per_epoch keras"]
    )
    assert row["peak_rss_mb torch/keras"] == pytest.approx(1550.0 / 2050.0)


def test_search_best_and_trial_counts(report: Report) -> None:
    table = report.table
    for (arch, backend), (values, pruned, failed) in TRIALS.items():
        assert table.loc[arch, f"trials_complete {backend}"] == len(values)
        assert table.loc[arch, f"trials_pruned {backend}"] == pruned
        assert table.loc[arch, f"trials_failed {backend}"] == failed
        best = table.loc[arch, f"search_best_val_accuracy {backend}"]
        assert best == pytest.approx(max(values)) if values else math.isnan(best)


def test_cross_backend_block(report: Report) -> None:
    table = report.table
    expected = np.array(CROSS_KERAS_ON_TORCH)
    assert table.loc["lstm", "cross_test_accuracy_mean keras_on_torch"] == pytest.approx(
        expected.mean()
    )
    assert table.loc["lstm", "cross_test_accuracy_std keras_on_torch"] == pytest.approx(
        expected.std(ddof=1)
    )
    assert math.isnan(table.loc["lstm", "cross_test_accuracy_mean torch_on_keras"])
    assert math.isnan(table.loc["gru", "cross_test_accuracy_mean keras_on_torch"])


def test_missing_pieces_are_nan(report: Report) -> None:
    bilstm = report.table.loc["bilstm"]
    assert report.memory_metric == "peak_rss_mb"
    assert not any(c.startswith("peak_gpu_memory_mb") for c in report.table.columns)
    for column in (
        "test_accuracy_mean",
        "seconds_per_epoch",
        "peak_rss_mb",
        "parameter_count",
        "search_best_val_accuracy",
    ):
        assert math.isnan(bilstm[f"{column} keras"]) and math.isnan(bilstm[f"{column} torch"])
    assert math.isnan(bilstm["trials_complete torch"])  # never started, not "0 trials"
    assert math.isnan(bilstm["seconds_per_epoch torch/keras"])


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
    }
    assert {p.name for p in report.paths.values()} == names
    for path in report.paths.values():
        assert path.parent == out and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG
    csv = pd.read_csv(out / "report.csv", index_col="architecture")
    pd.testing.assert_frame_equal(csv, report.table, check_dtype=False)
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3 and "0.820 ± 0.014" in page
    markdown = (out / "report.md").read_text()
    assert "| lstm |" in markdown and "![accuracy](accuracy.png)" in markdown


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
    assert gpu.table.loc["gru", "peak_gpu_memory_mb torch"] == 900.0
    assert math.isnan(gpu.table.loc["gru", "peak_gpu_memory_mb keras"])  # CPU run: no rss mixed in
    assert math.isnan(gpu.table.loc["gru", "peak_gpu_memory_mb torch/keras"])
    assert (
        gpu.table.loc["lstm"]
        .drop([c for c in gpu.table if c.startswith("retrain_runs")])
        .isna()
        .all()
    )


def test_verdicts_compare_one_configuration_with_intervals(report: Report) -> None:
    """Each backend against the baseline (keras, the study's first) on the baseline's newest
    best configuration: torch's cross runs of it, one per seed, not also torch's own re-trains
    (their seeds would count twice)."""
    lstm, gru, bilstm = report.verdicts
    assert (lstm.architecture, lstm.contender, lstm.baseline) == ("lstm", "torch", "keras")
    assert lstm.config_hash == "new"
    assert sorted(lstm.samples["torch"].quality) == CROSS_KERAS_ON_TORCH
    assert sorted(lstm.samples["keras"].quality) == [0.81, 0.83]  # not the old config's 0.10
    assert lstm.quality.estimate == pytest.approx(np.mean(CROSS_KERAS_ON_TORCH) - 0.82)
    assert lstm.quality.low < 0 < lstm.quality.high  # Welch's t on 2 seeds a side: wide
    # One value per run: the mean of its steady-state epochs (the first left out).
    assert sorted(lstm.samples["keras"].epoch_seconds) == [9.5, 10.0]
    assert lstm.samples["keras"].steady_epochs == 4
    assert lstm.time.estimate == pytest.approx(5.0 / np.sqrt(9.5 * 10.0))  # geometric means
    assert lstm.time.high < 1
    assert lstm.memory.estimate == pytest.approx(np.sqrt(1500 * 1600) / np.sqrt(2000 * 2100))
    # MLPerf's time to target: every epoch counts until val_accuracy first reaches 0.8.
    assert sorted(lstm.samples["torch"].time_to_target) == [5.0, 11.0]
    line = report.headline[0]
    assert line.startswith("lstm: accuracy: no detectable difference (Δ -0.015, 95% CI [")
    assert "P(torch better) 0.25, n 2/2 seeds" in line
    assert "torch 1.95x faster [" in line
    assert "per epoch (n 2/2 runs, 4/4 steady epochs)" in line
    assert "0.76x the memory [" in line or "no detectable difference in memory" in line
    assert "time to val_accuracy 0.8 (median): torch 8.0 s (2/2 runs)" in line
    # keras/gru logged no epoch history: no interval, and the line says so.
    assert "time per epoch: not enough data for an interval (n 2/0 runs" in gru.headline
    assert bilstm.headline.startswith("bilstm: no verdict: keras has no finished runs")


def test_the_verdict_leads_every_output(report: Report) -> None:
    markdown = report.paths["markdown"].read_text()
    assert markdown.index("## Verdict") < markdown.index("## quality")
    assert report.headline[0] in markdown
    page = report.paths["html"].read_text()
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>quality")
    table = pd.read_csv(report.paths["verdicts"])
    assert list(table["architecture"]) == ["lstm", "gru", "bilstm"]
    assert table.loc[0, "time/epoch ratio"] == pytest.approx(5.0 / np.sqrt(9.5 * 10.0))


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
    assert sorted(lstm.samples["keras"].quality) == [0.81, 0.83]  # not the old config's 0.10
    assert sorted(lstm.samples["torch"].quality) == [0.80, 0.84]  # re-trains, not keras's cross
    assert lstm.quality.estimate == pytest.approx(0.0)
    assert lstm.time.estimate == pytest.approx(np.sqrt(9.5 * 10.0) / 5.0)
    line = found.headline[0]
    assert line.startswith("lstm: accuracy: no detectable difference (Δ +0.000, 95% CI [")
    assert "P(keras better) 0.50, n 2/2 seeds" in line and "keras 1.95x slower [" in line
    assert bilstm.headline.startswith("bilstm: no verdict: torch has no finished runs")
    table = pd.read_csv(found.paths["verdicts"])
    assert set(table["contender"]) == {"keras"} and set(table["baseline"]) == {"torch"}
    row = found.table.loc["lstm"]
    assert row["seconds_per_epoch keras/torch"] == pytest.approx(
        row["seconds_per_epoch keras"] / row["seconds_per_epoch torch"]
    )
    assert row["peak_rss_mb keras/torch"] == pytest.approx(2050.0 / 1550.0)
    assert not [c for c in found.table if c.endswith("torch/keras")]
    assert list(found.table.columns[:2]) == [  # the baseline first
        "search_best_val_accuracy torch",
        "search_best_val_accuracy keras",
    ]
    cost = found.sections["cost (mean over re-train runs)"]
    assert {"s/epoch keras/torch", "memory keras/torch"} <= set(cost.columns)
    assert cost.loc["lstm", "s/epoch keras/torch"] == "1.95"


def test_a_study_of_one_backend_reports_without_a_verdict(
    stores: SimpleNamespace, tmp_path: Path
) -> None:
    study = make_study(STUDY, ARCHS, backends=("torch",), baseline="torch")
    found = build_report(study, stores.tracking_uri, stores.storage_url, tmp_path)
    assert found.verdicts == [] and found.headline == [] and found.verdict_table.empty
    assert all(column.endswith(" torch") for column in found.table.columns)  # no ratios
    assert found.table.loc["lstm", "retrain_runs torch"] == 2
    assert found.table.loc["lstm", "trials_complete torch"] == len(TRIALS["lstm", "torch"][0])
    markdown = found.paths["markdown"].read_text()
    assert "## Verdict" not in markdown and "| lstm |" in markdown
    console = Console(record=True, width=250)
    print_report(console, found)
    assert "verdict (95% confidence intervals" not in console.export_text()
    listed = {a.path for a in stores.client.list_artifacts(found.run_id)}
    assert "headline.txt" in listed  # the same report run, rewritten: no verdict left in it
    assert _logged_table(stores, found.run_id).empty
