"""Every evaluation metric, computed once from logits in numpy, whichever backend made them.

Computing metrics outside the frameworks means a difference in a metric is a difference in the
model, never in two implementations of the metric.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

# Which way each per-epoch validation metric improves: what a search optimises, and what picks
# a run's best epoch when its test split is scored with that epoch's weights.
METRIC_DIRECTION = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "val_perplexity": "minimize",
}


def _sklearn() -> ModuleType:
    """scikit-learn's metrics, imported on first use: the import takes about 2 s, which search
    trials (they never compute test metrics) and the CLI's input errors need not pay."""
    from sklearn import metrics

    return metrics


def binary_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean BCE from logits in the numerically stable form both frameworks use."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The two figures tracked every epoch; cheap enough for a validation pass."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    accuracy = float(np.mean((logits > 0) == (labels > 0.5)))
    return binary_cross_entropy(logits, labels), accuracy


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The test-split figures; perplexity is exp of the mean cross-entropy (per review)."""
    skm = _sklearn()
    truth = (labels > 0.5).astype(int)
    predicted = (logits > 0).astype(int)
    loss, accuracy = loss_and_accuracy(logits, labels)
    return {
        "accuracy": accuracy,
        "precision": float(skm.precision_score(truth, predicted, zero_division=0)),
        "recall": float(skm.recall_score(truth, predicted, zero_division=0)),
        "f1": float(skm.f1_score(truth, predicted, zero_division=0)),
        # ROC-AUC needs both classes; a one-class slice has none to report.
        **({"roc_auc": float(skm.roc_auc_score(truth, logits))} if len(set(truth)) == 2 else {}),
        "loss": loss,
        "perplexity": float(np.exp(loss)),
    }


def confusion(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """2x2 confusion matrix, rows = true (neg, pos), columns = predicted."""
    return _sklearn().confusion_matrix(
        (labels > 0.5).astype(int), (logits > 0).astype(int), labels=[0, 1]
    )


def classification_report(logits: np.ndarray, labels: np.ndarray) -> str:
    """scikit-learn's per-class precision/recall/F1 table, kept as a run artifact."""
    return _sklearn().classification_report(
        (labels > 0.5).astype(int),
        (logits > 0).astype(int),
        labels=[0, 1],
        target_names=["negative", "positive"],
        digits=4,
        zero_division=0,
    )


def token_loss_and_accuracy(
    log_probs: np.ndarray, predicted: np.ndarray, targets: np.ndarray
) -> tuple[float, float]:
    """Mean token cross-entropy and top-1 next-word accuracy of a language model."""
    if targets.size == 0:
        return float("nan"), float("nan")
    loss = float(-np.mean(log_probs, dtype=np.float64))
    return loss, float(np.mean(predicted == targets))


def language_model_metrics(
    log_probs: np.ndarray, predicted: np.ndarray, targets: np.ndarray
) -> dict[str, float]:
    loss, accuracy = token_loss_and_accuracy(log_probs, predicted, targets)
    return {"loss": loss, "perplexity": float(np.exp(loss)), "accuracy": accuracy}
