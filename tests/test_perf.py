"""`bench perf` end to end on a tiny plan, its pure table logic, and the execution options.

No timing is asserted anywhere: only that every planned figure is there, positive and finite,
and that the derived columns are computed from the raw numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import bench

from backends import BACKENDS
from harness.config import RunConfig
from harness.errors import BenchError
from harness.execution import FP16_NEEDS_GPU, ExecutionOptions
from harness.perf.plan import FAST_PATHS, MAIN, OPTION, WARMUP_ALLOWANCE, Point, build_plan
from harness.perf.tables import (
    batch_table,
    flattening,
    linearity,
    paired_ratio,
    spread,
    step_seconds,
    warmup_passes,
)
from harness.study.schema import load_study

SEQUENCES, BATCHES = (16, 32), (8, 16)
# Two backends end to end: every figure goes through the same `Backend` interface, so two show
# the tables, ratios and charts; that a plain `bench perf` plans every installed backend is
# `test_the_default_plan_measures_every_installed_backend`'s business.
MEASURED = ("keras", "torch")


@pytest.fixture(scope="module")
def perf_run(imdb_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("perf")
    args = ["perf", "--quick", "--arch", "gru", "--steps", "2", "--passes", "2"]
    for name in MEASURED:
        args += ["--backend", name]
    for n in SEQUENCES:
        args += ["--sequence-length", str(n)]
    for n in BATCHES:
        args += ["--batch-size", str(n)]
    done = bench(*args, "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "perf.json").read_text())


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.slow
def test_every_planned_row_is_there_with_positive_figures(perf_run):
    _, document = perf_run
    tables = document["tables"]
    assert {(r["architecture"], r["backend"]) for r in tables["main"]} == {
        ("gru", backend) for backend in MEASURED
    }
    for row in tables["main"]:
        for column in ("step_ms", "samples_per_s", "eval_samples_per_s", "first_step_s"):
            assert positive(row[column]), (column, row)
        assert positive(row["plain_step_ms"]) and positive(row["peak_rss_mib"])
        assert row["kernel"] in ("cudnn", "generic")
    for kind, values, key in (
        ("sequence_length", SEQUENCES, "sequence_length"),
        ("batch_size", BATCHES, "batch_size"),
    ):
        for backend in MEASURED:
            rows = [r for r in tables[kind] if r["backend"] == backend]
            assert [r[key] for r in rows] == list(values)
            assert all(positive(r["step_ms"]) for r in rows)
    options = {(r["backend"], r["option"]): r for r in tables["options"]}
    assert set(options) == {(b, name) for b in MEASURED for name, _, _ in FAST_PATHS}
    for row in options.values():
        if row["status"] == "measured":
            assert positive(row["step_ms"]) and positive(row["speedup"])
        else:
            assert row["status"].startswith("not applicable: ")
    assert document["machine"]["threads"]["torch"] >= 1


@pytest.mark.slow
def test_ratio_is_recomputed_from_the_raw_passes(perf_run):
    _, document = perf_run
    raw = {
        r["backend"]: r
        for r in document["records"]
        if r.get("event") == "result" and r["kind"] == "main"
    }
    for row in document["tables"]["main"]:
        record = raw[row["backend"]]
        # --passes 2, plus the WARMUP_ALLOWANCE passes timed for the warm-up the report measures
        assert (
            len(record["pass_seconds"]) == len(record["plain_pass_seconds"]) == 2 + WARMUP_ALLOWANCE
        )
        harness = step_seconds(record["pass_seconds"], record["steps"])["median"]
        plain = step_seconds(record["plain_pass_seconds"], record["steps"])["median"]
        assert row["step_ms"] == pytest.approx(1e3 * harness)
        assert row["plain_step_ms"] == pytest.approx(1e3 * plain)
        skip = max(
            warmup_passes(record["pass_seconds"]), warmup_passes(record["plain_pass_seconds"])
        )
        pairs = [
            h / p
            for h, p in zip(
                record["pass_seconds"][skip:], record["plain_pass_seconds"][skip:], strict=True
            )
        ]
        assert row["harness_plain_ratio"] == pytest.approx(float(np.median(pairs)))


def test_ratio_pairs_neighbouring_passes_and_leaves_out_the_warm_up():
    # A machine that slows down 2x halfway: each pair still says 1.1, a ratio of medians would not.
    harness, plain = [9.0, 1.1, 1.1, 2.2, 2.2, 2.2], [5.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert paired_ratio(harness, plain)["median"] == pytest.approx(1.1)
    assert paired_ratio(harness, plain)["p75"] - paired_ratio(harness, plain)[
        "p25"
    ] == pytest.approx(0)


@pytest.mark.slow
def test_markdown_and_charts_are_written(perf_run):
    out, _ = perf_run
    markdown = (out / "benchmarks.md").read_text()
    for heading in ("Harness against the plain framework", "sequence length", "batch size"):
        assert heading in markdown
    assert "| gru | keras |" in markdown and "| gru | torch |" in markdown
    assert (out / "perf_sequence_length.png").stat().st_size > 0
    assert (out / "perf_batch_size.png").stat().st_size > 0


def test_spread_and_warm_up_pass():
    assert spread([1.0, 2.0, 3.0, 4.0, 100.0]) == {
        "median": 3.0,
        "p25": 2.0,
        "p75": 4.0,
        "min": 1.0,
        "max": 100.0,
    }
    # The first (warm-up) pass is left out, the rest are per step.
    assert step_seconds([50.0, 2.0, 4.0, 6.0], steps=2)["median"] == 2.0


def test_warm_up_is_measured_not_assumed():
    # The PyTorch LSTM's first passes on a CPU (ms): 184 and 113 before it settles near 27.
    assert warmup_passes([184.0, 113.0, 27.0, 28.0, 27.0, 29.0, 28.0]) == 2
    assert warmup_passes([27.0, 28.0, 27.0, 29.0]) == 0  # nothing to leave out
    assert warmup_passes([90.0, 80.0, 70.0]) == 1  # always two passes kept
    assert step_seconds([184.0, 113.0, 27.0, 28.0, 27.0, 29.0, 28.0], steps=1)["median"] == 28.0


def test_linear_cost_and_flattening():
    seq = pd.DataFrame(
        {
            "architecture": "lstm",
            "backend": "torch",
            "sequence_length": [100, 200, 400],
            "step_ms": [11.0, 21.0, 41.0],
        }
    )
    fit = linearity(seq).iloc[0]
    assert fit["ms_per_100_tokens"] == pytest.approx(10.0) and fit["r2"] == pytest.approx(1.0)
    records = [
        {
            "event": "result",
            "kind": "batch_size",
            "architecture": "lstm",
            "backend": "torch",
            "batch_size": size,
            "steps": 1,
            "pass_seconds": [9.0, seconds, seconds],  # a warm-up pass, then two steady ones
        }
        for size, seconds in ((32, 1.0), (64, 1.0), (128, 1.9), (256, 3.8))
    ]
    table = batch_table(records)
    assert table["relative_cost"].tolist() == pytest.approx([1.0, 0.5, 0.475, 0.475])
    assert flattening(table) == {"torch/lstm": 64}


def test_the_default_plan_measures_every_installed_backend():
    # Every installed backend by default: here all four (CI installs the jax extra).
    assert build_plan(True, {}).backends == build_plan(False, {}).backends == tuple(BACKENDS)
    assert build_plan(True, {"backends": ("torch",)}).backends == ("torch",)


def test_plan_choices_are_validated():
    with pytest.raises(BenchError, match="architectures: expected one of .*received 'rnn'"):
        build_plan(True, {"architectures": ("rnn",)})
    with pytest.raises(BenchError, match="backends: expected one of keras, torch"):
        build_plan(False, {"backends": ("jax",)})
    plan = build_plan(True, {"architectures": ("gru", "bilstm")})
    assert plan.scaling_architectures == plan.option_architectures == ("gru",)


def test_execution_options_are_validated():
    with pytest.raises(BenchError, match="^precision: expected one of float32, bf16, fp16; rece"):
        ExecutionOptions(precision="fp8")
    with pytest.raises(BenchError, match="precision: expected"):
        RunConfig(backend="torch", architecture="lstm", precision="half")
    config = RunConfig(backend="keras", architecture="gru", precision="bf16", jit_compile=True)
    assert config.execution_options() == ExecutionOptions("bf16", jit_compile=True)
    assert {"precision", "jit_compile", "cudnn"} <= set(config.as_params())


def test_study_can_fix_execution_options(tmp_path: Path):
    text = (Path(__file__).parent.parent / "studies" / "imdb-quick.toml").read_text()
    path = tmp_path / "fast.toml"
    path.write_text(text.replace("[fixed]\n", '[fixed]\nprecision = "bf16"\njit_compile = true\n'))
    study = load_study(path)
    config = study.run_config("torch", "lstm", {})
    assert (config.precision, config.jit_compile) == ("bf16", True)
    path.write_text(text.replace("[fixed]\n", "[fixed]\njit_compile = 1\n"))
    with pytest.raises(BenchError, match=r"fixed\.jit_compile: expected true or false"):
        load_study(path)
    path.write_text(text.replace("[fixed]\n", '[fixed]\nprecision = "fp8"\n'))
    with pytest.raises(BenchError, match=r"fixed\.precision: expected one of float32, bf16, fp16"):
        load_study(path)


@pytest.mark.parametrize("name", tuple(BACKENDS))
def test_fp16_without_a_gpu_is_refused_in_one_line(name):
    from backends.equivalence import comparable_backend
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = comparable_backend(name)
    if backend.accelerator() is not None:
        pytest.skip("fp16 runs on this machine's GPU")
    with pytest.raises(BenchError, match="fp16 needs one"):
        backend.build(
            ModelSpec("lstm", vocab_size=50, embedding_dim=4, hidden_size=4),
            OptimizerSpec(),
            ExecutionOptions("fp16"),
        )


@pytest.mark.parametrize("name", tuple(BACKENDS))
def test_a_fast_path_the_machine_refuses_is_recorded_and_the_run_goes_on(name, imdb_slice):
    """As a CPU without AVX-512 refuses PyTorch's bf16 LSTM, a CPU refuses fp16 here (tried on
    purpose, as if it needed no GPU): the option's row says why; a plain point's error is fatal."""
    from backends.equivalence import comparable_backend
    from harness.perf.measure import measure_point

    backend = comparable_backend(name)
    if backend.accelerator() is not None:
        pytest.skip("fp16 runs on this machine's GPU")
    plan = build_plan(True, {"steps": 1, "passes": 1}).as_dict()
    point = Point(OPTION, "gru", 16, 8, precision="fp16", option="fp16")
    record = measure_point(backend, point, plan, str(imdb_slice), gpu=False)
    assert record == {
        "not_applicable": "the framework refused it on this machine (BenchError: "
        + FP16_NEEDS_GPU
        + ")"
    }
    with pytest.raises(BenchError, match="fp16 needs one"):
        plain_point = Point(MAIN, "gru", 16, 8, precision="fp16")
        measure_point(backend, plain_point, plan, str(imdb_slice), gpu=False)


def test_torch_bf16_lstm_runs_where_the_cpu_has_bf16_and_is_one_line_where_not():
    import torch

    from backends.equivalence import comparable_backend
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = comparable_backend("torch")
    if backend.accelerator() is not None:
        pytest.skip("this machine's GPU runs bf16 LSTMs")
    spec = ModelSpec("lstm", vocab_size=50, embedding_dim=4, hidden_size=4)
    bf16 = ExecutionOptions("bf16")
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        model = backend.build(spec, OptimizerSpec(), bf16)
        model.train_step(np.ones((2, 5), np.int32), np.ones(2, np.float32))
        assert np.isfinite(model.take_train_metrics()[0])
    else:
        with pytest.raises(BenchError, match="^precision: expected float32 for a PyTorch LSTM"):
            backend.build(spec, OptimizerSpec(), bf16)
    # SimpleRNN and GRU have a bf16 path on every CPU.
    model = backend.build(
        ModelSpec("gru", vocab_size=50, embedding_dim=4, hidden_size=4), OptimizerSpec(), bf16
    )
    model.train_step(np.ones((2, 5), np.int32), np.ones(2, np.float32))
    assert np.isfinite(model.take_train_metrics()[0])
