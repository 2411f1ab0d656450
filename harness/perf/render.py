"""`bench perf`'s tables: raw pass timings in, pandas tables, Markdown, JSON and charts out.

Pure functions of the records the measuring processes emit, so that every figure in
docs/benchmarks.md can be recomputed from the JSON written next to it.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from harness.perf.plan import BATCH, MAIN, OPTION, SEQUENCE, WARMUP_ALLOWANCE, PerfPlan
from harness.report.tables import significant, to_markdown
from harness.system import cpu_model

TARGET_RATIO = 1.03  # harness / plain: the harness's overhead must stay within 3%
FLAT = 0.10  # per-sample cost "flattens" once a doubling of the batch saves less than this


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles and range of repeated measurements."""
    array = np.asarray(values, dtype=float)
    p25, median, p75 = np.percentile(array, [25, 50, 75])
    return {
        "median": float(median),
        "p25": float(p25),
        "p75": float(p75),
        "min": float(array.min()),
        "max": float(array.max()),
    }


WARMUP_TOLERANCE = 0.10  # a pass this much slower than the steady median is still warming up


def warmup_passes(pass_seconds: list[float]) -> int:
    """How many leading passes are still warming up: measured, not assumed.

    The steady level is the median of the second half of the passes; warm-up is the run of
    leading passes more than WARMUP_TOLERANCE above it (caches, allocator pools, oneDNN's
    kernel choice and TensorFlow's graph optimisation settle over the first passes). At least
    two passes are always kept.
    """
    array = np.asarray(pass_seconds, dtype=float)
    steady = float(np.median(array[len(array) // 2 :]))
    count = 0
    while count < len(array) - 2 and array[count] > (1 + WARMUP_TOLERANCE) * steady:
        count += 1
    return count


def step_seconds(pass_seconds: list[float], steps: int) -> dict[str, float]:
    """Per-step figures from whole passes, the measured warm-up passes left out."""
    return {k: v / steps for k, v in spread(pass_seconds[warmup_passes(pass_seconds) :]).items()}


def paired_ratio(harness_seconds: list[float], plain_seconds: list[float]) -> dict[str, float]:
    """Harness/plain per pair of neighbouring passes (they alternate), the pairs in which
    either side was still warming up left out.

    Each pair saw the same machine, so the median of the pairs' ratios shrugs off the slow
    drift of a shared machine that a ratio of two medians would carry into the result."""
    skip = max(warmup_passes(harness_seconds), warmup_passes(plain_seconds))
    pairs = zip(harness_seconds[skip:], plain_seconds[skip:], strict=True)
    return spread([h / p for h, p in pairs])


def _rows(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r.get("event") == "result" and r["kind"] == kind]


def main_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in _rows(records, MAIN):
        step = step_seconds(r["pass_seconds"], r["steps"])
        plain = step_seconds(r["plain_pass_seconds"], r["steps"])
        ratio = paired_ratio(r["pass_seconds"], r["plain_pass_seconds"])
        eval_seconds = float(np.median(r["eval_seconds"]))
        rows.append(
            {
                "architecture": r["architecture"],
                "backend": r["backend"],
                "kernel": r["kernel"],
                "denormals": r.get("denormal_mode", ""),
                "step_ms": 1e3 * step["median"],
                "step_iqr_ms": 1e3 * (step["p75"] - step["p25"]),
                "samples_per_s": r["batch_size"] / step["median"],
                "eval_samples_per_s": r["eval_samples"] / eval_seconds,
                "first_step_s": r["first_step_seconds"],
                "warmup_passes": warmup_passes(r["pass_seconds"]),
                "plain_warmup_passes": warmup_passes(r["plain_pass_seconds"]),
                "peak_rss_mib": r["peak_rss_bytes"] / 2**20,
                "peak_gpu_mib": (r["peak_device_bytes"] or 0) / 2**20 or None,
                "plain_step_ms": 1e3 * plain["median"],
                "harness_plain_ratio": ratio["median"],
                "ratio_iqr": ratio["p75"] - ratio["p25"],
            }
        )
    return pd.DataFrame(rows)


def sequence_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in _rows(records, SEQUENCE):
        step = step_seconds(r["pass_seconds"], r["steps"])["median"]
        rows.append(
            {
                "architecture": r["architecture"],
                "backend": r["backend"],
                "sequence_length": r["sequence_length"],
                "step_ms": 1e3 * step,
                "us_per_time_step": 1e6 * step / r["sequence_length"],
            }
        )
    return pd.DataFrame(rows)


def linearity(table: pd.DataFrame) -> pd.DataFrame:
    """Least-squares line of step time against sequence length, per backend and architecture:
    an R^2 near 1 says the cost grows linearly."""
    rows = []
    for (arch, backend), group in table.groupby(["architecture", "backend"], sort=False):
        x, y = group["sequence_length"].to_numpy(float), group["step_ms"].to_numpy(float)
        if len(group) < 2:
            continue
        slope, intercept = np.polyfit(x, y, 1)
        residual = y - (slope * x + intercept)
        total = ((y - y.mean()) ** 2).sum()
        r2 = 1 - (residual**2).sum() / total if total > 0 else 1.0
        rows.append(
            {
                "architecture": arch,
                "backend": backend,
                "ms_per_100_tokens": 100 * slope,
                "intercept_ms": intercept,
                "r2": r2,
            }
        )
    return pd.DataFrame(rows)


def batch_table(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in _rows(records, BATCH):
        step = step_seconds(r["pass_seconds"], r["steps"])["median"]
        rows.append(
            {
                "architecture": r["architecture"],
                "backend": r["backend"],
                "batch_size": r["batch_size"],
                "step_ms": 1e3 * step,
                "us_per_sample": 1e6 * step / r["batch_size"],
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        first = table.groupby(["architecture", "backend"])["us_per_sample"].transform("first")
        table["relative_cost"] = table["us_per_sample"] / first
    return table


def flattening(table: pd.DataFrame) -> dict[str, int | None]:
    """Per backend/architecture: the smallest batch size after which a larger batch saves less
    than FLAT of the per-sample cost (None: still falling at the largest batch measured)."""
    found: dict[str, int | None] = {}
    for (arch, backend), group in table.groupby(["architecture", "backend"], sort=False):
        sizes = group["batch_size"].tolist()
        costs = group["us_per_sample"].tolist()
        found[f"{backend}/{arch}"] = next(
            (sizes[i] for i in range(len(sizes) - 1) if costs[i + 1] > (1 - FLAT) * costs[i]),
            None,
        )
    return found


def option_table(records: list[dict]) -> pd.DataFrame:
    plain = {
        (r["backend"], r["architecture"]): step_seconds(r["pass_seconds"], r["steps"])["median"]
        for r in _rows(records, MAIN)
    }
    rows = []
    for r in _rows(records, OPTION):
        row = {"architecture": r["architecture"], "backend": r["backend"], "option": r["option"]}
        if "not_applicable" in r:
            row["status"] = f"not applicable: {r['not_applicable']}"
        else:
            step = step_seconds(r["pass_seconds"], r["steps"])["median"]
            base = plain[(r["backend"], r["architecture"])]
            row |= {
                "status": "measured",
                "kernel": r["kernel"],
                "first_step_s": r["first_step_seconds"],
                "warmup_passes": warmup_passes(r["pass_seconds"]),
                "step_ms": 1e3 * step,
                "plain_path_step_ms": 1e3 * base,
                "speedup": base / step,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def machine_info(records: list[dict], plan: PerfPlan) -> dict[str, object]:
    machines = [r for r in records if r.get("event") == "machine"]
    frameworks = {m["backend"]: f"{m['framework']} {m['framework_version']}" for m in machines}
    return {
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": sorted({m["device"] for m in machines}),
        "gpu": any(m["gpu"] for m in machines),
        "frameworks": frameworks,
        "threads": {m["backend"]: m["threads"] for m in machines},
        "threads_requested": plan.threads,
    }


def _markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(nothing measured)\n"
    shown = table.map(significant).set_index(table.columns[0])
    return to_markdown(shown)


def render(records: list[dict], plan: PerfPlan, command: str) -> tuple[str, dict]:
    """The Markdown report and the JSON document of one `bench perf` run."""
    machine = machine_info(records, plan)
    main, seq, batch, options = (
        main_table(records),
        sequence_table(records),
        batch_table(records),
        option_table(records),
    )
    lines = linearity(seq)
    flat = flattening(batch)
    over = main[main["harness_plain_ratio"] > TARGET_RATIO] if not main.empty else main
    frameworks = ", ".join(machine["frameworks"].values())
    threads = ", ".join(f"{k} {v}" for k, v in machine["threads"].items())
    md = [
        "# rnnbench performance",
        "",
        f"Machine: {machine['cpu']}; device: {', '.join(machine['device'])}; "
        f"threads per framework: {threads}; {frameworks}; "
        f"Python {machine['python']}.",
        "",
        f"Reproduce: `{command}`. Model: embedding {plan.embedding_dim}, hidden "
        f"{plan.hidden_size}, vocabulary {plan.num_words}, RMSprop; real IMDB reviews through "
        "the harness's pipeline. Every step time is the median over "
        f"{plan.passes + WARMUP_ALLOWANCE} passes of the same {plan.steps} batches, the "
        "warm-up passes left out: those still more than "
        f"{WARMUP_TOLERANCE:.0%} slower than the median of the later half (`warmup_passes`, "
        "measured per row), each pass ended by a forced read of a device value.",
        "",
        "## Harness against the plain framework",
        "",
        f"Sequence length {plan.sequence_length}, batch {plan.batch_size}. `plain_step_ms`: the "
        "same model trained the tutorial way (Keras `model.fit` on the numpy arrays; PyTorch "
        "`DataLoader` + `torch.optim` loop), its passes alternating with the harness's in one "
        "process so that both see the same machine. `harness_plain_ratio`: the median over "
        "those pairs of harness pass time / plain pass time, `ratio_iqr` its interquartile "
        f"range; target <= {TARGET_RATIO}. `first_step_s`: build + first step "
        "(graph tracing or compilation). Peak RSS is per process (one per row; it holds both "
        "models, whose weights are a few MiB).",
        "",
        _markdown(main),
        f"Rows above {TARGET_RATIO}: "
        + (
            ", ".join(
                f"{r.backend}/{r.architecture} ({r.harness_plain_ratio:.3f})"
                for r in over.itertuples()
            )
            or "none"
        )
        + ".",
        "",
        "## Step time against sequence length",
        "",
        f"Batch {plan.batch_size}; `us_per_time_step` = step time / sequence length.",
        "",
        _markdown(seq),
        "Linear fit of step time against sequence length (R^2 near 1: linear):",
        "",
        _markdown(lines),
        "## Step time against batch size",
        "",
        f"Sequence length {plan.sequence_length}; `relative_cost`: per-sample cost against the "
        "smallest batch.",
        "",
        _markdown(batch),
        f"Per-sample cost flattens (a larger batch saves < {FLAT:.0%}) from batch size: "
        + (", ".join(f"{k} {v if v else 'not yet'}" for k, v in flat.items()) or "n/a")
        + ".",
        "",
        "## Fast paths against the plain path",
        "",
        "`speedup` = plain-path step time / option's step time, same shape and batches. "
        "`jit_compile` is torch.compile or TensorFlow XLA; `cudnn_off` forces the generic "
        "kernel (so on a GPU it shows what cuDNN buys). Pinned host memory with non-blocking "
        "copies is always on for PyTorch on CUDA and has no switch; on a CPU it does not apply.",
        "",
        _markdown(options),
    ]
    document = {
        "machine": machine,
        "plan": plan.as_dict(),
        "command": command,
        "records": records,
        "tables": {
            "main": main.to_dict(orient="records"),
            "sequence_length": seq.to_dict(orient="records"),
            "sequence_length_fit": lines.to_dict(orient="records"),
            "batch_size": batch.to_dict(orient="records"),
            "batch_size_flattens_at": flat,
            "options": options.to_dict(orient="records"),
        },
    }
    return "\n".join(md), document


def plots(records: list[dict], out: Path) -> list[Path]:
    """Step time against sequence length, and per-sample cost against batch size."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    written = []
    for table, x, y, name, ylabel in (
        (sequence_table(records), "sequence_length", "step_ms", "perf_sequence_length.png", "ms"),
        (batch_table(records), "batch_size", "us_per_sample", "perf_batch_size.png", "µs/sample"),
    ):
        if table.empty:
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        for (arch, backend), group in table.groupby(["architecture", "backend"]):
            axis.plot(group[x], group[y], marker="o", label=f"{backend}/{arch}")
        if x == "batch_size":
            axis.set_xscale("log", base=2)
        axis.set_xlabel(x.replace("_", " "))
        axis.set_ylabel(ylabel)
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        written.append(out / name)
    return written


def write(records: list[dict], plan: PerfPlan, command: str, out: Path) -> list[Path]:
    """benchmarks.md, perf.json and the charts under `out`."""
    markdown, document = render(records, plan, command)
    (out / "benchmarks.md").write_text(markdown)
    (out / "perf.json").write_text(json.dumps(document, indent=1, default=float))
    return [out / "benchmarks.md", out / "perf.json", *plots(records, out)]
