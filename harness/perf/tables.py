"""`bench perf`'s numbers: raw pass timings in, pandas tables out.

Pure functions of the records the measuring processes emit, so that every figure in
docs/benchmarks.md can be recomputed from the JSON written next to it.
"""

from __future__ import annotations

import platform

import numpy as np
import pandas as pd

from harness.perf.plan import BATCH, MAIN, OPTION, SEQUENCE, PerfPlan
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
