"""The pictures people would rather look at than read: learning curves and confusion matrices."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; trial processes have no display

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.training import TrainResult  # noqa: E402


def learning_curves(result: TrainResult) -> Figure:
    """Loss and accuracy per epoch, train against validation."""
    epochs = [e.epoch for e in result.epochs]
    figure = Figure(figsize=(9, 3.5), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    loss.plot(epochs, [e.train_loss for e in result.epochs], "o-", label="train")
    loss.plot(epochs, [e.val_loss for e in result.epochs], "o-", label="validation")
    loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy.plot(epochs, [e.train_accuracy for e in result.epochs], "o-", label="train")
    accuracy.plot(epochs, [e.val_accuracy for e in result.epochs], "o-", label="validation")
    accuracy.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axes in (loss, accuracy):
        axes.legend()
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    c = result.config
    figure.suptitle(f"{c.architecture} on {c.backend} (seed {c.seed})")
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
