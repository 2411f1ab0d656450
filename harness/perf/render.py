"""`bench perf`'s report: the tables of `harness.perf.tables` as Markdown, JSON and charts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.perf.plan import WARMUP_ALLOWANCE, PerfPlan
from harness.perf.tables import (
    FLAT,
    TARGET_RATIO,
    WARMUP_TOLERANCE,
    batch_table,
    flattening,
    linearity,
    machine_info,
    main_table,
    option_table,
    sequence_table,
)
from harness.report.tables import significant, to_markdown


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
