"""The pictures people would rather look at than read: learning curves, confusion matrices,
and the report's comparison charts. Figures are built without pyplot's global state."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; trial processes have no display

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

if TYPE_CHECKING:
    from harness.search import TrialRecord


def learning_curves(epochs: Sequence[Mapping[str, float]], title: str) -> Figure:
    """Loss and accuracy per epoch, train against validation; `epochs` holds each epoch's
    metrics (`EpochResult.as_metrics` and its "epoch")."""
    numbers = [e["epoch"] for e in epochs]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    for axes, metric, label in ((loss, "loss", "cross-entropy"), (accuracy, "accuracy", None)):
        axes.plot(numbers, [e[f"train_{metric}"] for e in epochs], "o-", label="train")
        axes.plot(numbers, [e[f"val_{metric}"] for e in epochs], "o-", label="validation")
        axes.set(xlabel="epoch", ylabel=label or metric, title=metric)
        axes.legend()
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(title)
    return figure


def confusion_matrix(
    matrix: np.ndarray, labels: tuple[str, str] = ("negative", "positive")
) -> Figure:
    figure = Figure(figsize=(4, 3.6), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title="test confusion matrix",
    )
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(
            col,
            row,
            f"{count:,}",
            ha="center",
            va="center",
            color="white" if count > threshold else "black",
        )
    return figure


def optimization_history(
    trials: dict[tuple[str, str], list[TrialRecord]],
    architectures: list[str],
    backends: list[str],
    metric: str,
    direction: str,
) -> Figure:
    """Each completed trial's objective and the running best, one panel per architecture;
    a pruned trial is a cross at the last value it reported before it was stopped."""
    # At most three panels a row: a row of four is too wide to read on a page (report.html).
    rows = math.ceil(len(architectures) / 3)
    columns = math.ceil(len(architectures) / rows)
    figure = Figure(figsize=(1 + 4 * columns, 3.6 * rows), layout="constrained")
    panels = list(figure.subplots(rows, columns, squeeze=False).flat)
    for spare in panels[len(architectures) :]:
        spare.remove()
    running = np.fmax.accumulate if direction == "maximize" else np.fmin.accumulate
    for axes, arch in zip(panels, architectures, strict=False):
        for i, backend in enumerate(backends):
            found = trials.get((arch, backend), ())
            pruned = [
                (t.number, t.last_reported)
                for t in found
                if t.state == "PRUNED" and t.last_reported is not None
            ]
            if pruned:
                axes.plot(*zip(*pruned, strict=True), "x", color=f"C{i}", label=f"{backend} pruned")
            done = sorted(
                (t.number, t.value) for t in found if t.state == "COMPLETE" and t.value is not None
            )
            if not done:
                continue
            numbers, values = zip(*done, strict=True)
            axes.plot(numbers, values, "o", color=f"C{i}", alpha=0.5, label=f"{backend} trial")
            best = list(running(np.array(values)))
            last = max(t.number for t in found)  # the best so far holds to the search's last trial
            axes.step(
                [*numbers, last],
                [*best, best[-1]],
                where="post",
                color=f"C{i}",
                label=f"{backend} best",
            )
        axes.set(title=arch, xlabel="trial", ylabel=metric)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        if axes.has_data():
            axes.legend(fontsize="small")
        else:
            axes.text(0.5, 0.5, "no completed trials", ha="center", transform=axes.transAxes)
    return figure


def points_and_intervals(
    groups: dict[str, dict[str, list[float]]], backends: list[str], ylabel: str, unit: str
) -> Figure:
    """One group per architecture: every measurement as a point (`unit`: seed, epoch), and the
    mean with its 95% interval (`verdicts.mean_interval`) as a bar, so the spread is seen, not
    summarised away."""
    from harness.report.verdicts import mean_interval

    architectures = list(groups)
    # Two groups wide at least: narrower, the two-line title no longer fits.
    figure = Figure(figsize=(2 + 1.6 * max(len(architectures), 2), 3.8), layout="constrained")
    axes = figure.subplots()
    width = 0.8 / max(len(backends), 1)
    rng = np.random.default_rng(0)  # jitter only; the same report draws the same picture
    counts: list[int] = []
    labelled: set[str] = set()
    for i, backend in enumerate(backends):
        for x, arch in enumerate(architectures):
            values = np.asarray(groups[arch].get(backend, []), dtype=float)
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            centre = x + (i - (len(backends) - 1) / 2) * width
            jitter = rng.uniform(-width / 5, width / 5, len(values))
            label = backend if backend not in labelled else None  # one legend entry each
            labelled.add(backend)
            axes.plot(centre + jitter, values, "o", color=f"C{i}", alpha=0.45, ms=4, label=label)
            mean = mean_interval(values)
            counts.append(len(values))
            if mean.known:
                axes.errorbar(
                    centre,
                    mean.estimate,
                    yerr=[[mean.estimate - mean.low], [mean.high - mean.estimate]],
                    fmt="_",
                    color=f"C{i}",
                    ms=18,
                    capsize=4,
                    lw=2,
                )
            else:
                axes.plot(centre, mean.estimate, "_", color=f"C{i}", ms=18)
    axes.set_xticks(np.arange(len(architectures)), architectures)
    axes.set_xlim(-0.6, len(architectures) - 0.4)
    spread = (
        f"{min(counts)}"
        if counts and min(counts) == max(counts)
        else f"{min(counts, default=0)}-{max(counts, default=0)}"
    )
    n = f"n = {spread} {unit}s per bar" if counts else "no runs"
    axes.set(ylabel=ylabel, title=f"{ylabel}\neach {unit}, mean and 95% CI ({n})")
    if counts:
        axes.legend(fontsize="small")
    axes.grid(axis="y", alpha=0.3)
    return figure
