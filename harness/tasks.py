"""What a task decides: which data the pipeline produces, and how predictions become metrics.

`classification` is IMDB sentiment (one label per review); `language_model` is next-word
prediction on the same review text. The model head and loss follow from `ModelSpec.task`;
everything else (search, trial runner, tracking, report) is one code path for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from backends import TrainableModel
from harness import metrics
from harness.config import RunConfig


class Split(Protocol):
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int: ...


class TaskData(Protocol):
    train: Split
    validation: Split
    test: Split
    digest: str
    params: dict[str, object]


def load_data(config: RunConfig, source: Path) -> TaskData:
    if config.task == "language_model":
        from harness.data.language_model import load_language_model_data

        return load_language_model_data(source, **config.data_params())
    from harness.data.classification import load_imdb

    return load_imdb(source, **config.data_params())


def evaluate(model: TrainableModel, split: Split, config: RunConfig) -> tuple[float, float]:
    """Mean loss and accuracy per prediction: per review, or per token (top-1)."""
    if config.task == "language_model":
        log_probs, predicted = model.token_log_likelihood(split.x, split.y, config.batch_size)
        return metrics.token_loss_and_accuracy(log_probs, predicted, split.y)
    logits = model.predict_logits(split.x, batch_size=max(config.batch_size, 512))
    return metrics.loss_and_accuracy(logits, split.y)


def test_metrics(
    model: TrainableModel, data: TaskData, config: RunConfig
) -> tuple[dict[str, float], np.ndarray | None, str]:
    """The test-split figures, the confusion matrix and the classification report (if any)."""
    test = data.test
    if config.task == "language_model":
        log_probs, predicted = model.token_log_likelihood(test.x, test.y, config.batch_size)
        return metrics.language_model_metrics(log_probs, predicted, test.y), None, ""
    logits = model.predict_logits(test.x, batch_size=max(config.batch_size, 512))
    return (
        metrics.classification_metrics(logits, test.y),
        metrics.confusion(logits, test.y),
        metrics.classification_report(logits, test.y),
    )


def baseline_metrics(data: TaskData) -> dict[str, float]:
    """Figures every model of the task must beat, logged with every run: for a language model,
    the perplexity of a unigram model estimated from the training counts."""
    counts = getattr(data, "unigram_counts", None)
    if counts is None:
        return {}
    from harness.data.language_model import unigram_perplexity

    return {
        "unigram_val_perplexity": unigram_perplexity(counts, data.validation),
        "unigram_test_perplexity": unigram_perplexity(counts, data.test),
    }


def predictions_per_sample(config: RunConfig, split: Split) -> int:
    """Tokens per window for a language model (for tokens per second), 1 otherwise."""
    return split.x.shape[1] if config.task == "language_model" else 1
