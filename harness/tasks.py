"""What a task decides: which data the pipeline produces, and how predictions become metrics.

`classification` is IMDB sentiment (one label per review); `language_model` is next-word
prediction on the same review text. The model head and loss follow from `ModelSpec.task`;
everything else (search, trial runner, tracking, report) is one code path for both.

Predictions are made here in chunks, a backend computing one chunk at a time: a whole test split
never has to fit on the device at once, and every backend is chunked the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
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
    return load_task_data(config.task, source, **config.data_params())


def load_task_data(task: str, source: Path, **params: object) -> TaskData:
    """The splits of `task` from `source`; `params` are `RunConfig.data_params`."""
    if task == "language_model":
        from harness.data.language_model import load_language_model_data

        return load_language_model_data(source, **params)
    from harness.data.classification import load_imdb

    return load_imdb(source, **params)


# The validation metric that picks a run's best epoch (RunConfig.test_weights "best_epoch") when
# no study objective names one, as in `bench train`: Keras's EarlyStopping would watch val_loss,
# but a classifier is judged by its accuracy.
SELECTED_BY = {"classification": "val_accuracy", "language_model": "val_perplexity"}

PREDICT_CHUNK = 512  # reviews per `predict_batch` call (evaluation uses the batch size if larger)
SCORE_CHUNK = 64  # token windows per `score_batch` call: its logits are (chunk, time, vocab)


def _chunks(arrays: tuple[np.ndarray, ...], chunk: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Each `chunk` rows of `arrays` (all of one length), with how many of them are real.

    Every chunk has exactly `chunk` rows, the last one padded with zeros (token 0, the padding
    token): a compiling backend (XLA, `tf.function`) then compiles its inference once per model
    instead of once per remainder size, which cost a short run more than its evaluation. Rows
    are independent in inference, so the padding changes no real row's output; it is cut off.
    """
    size = len(arrays[0])
    for start in range(0, size, chunk):
        real = min(chunk, size - start)
        parts = [a[start : start + real] for a in arrays]
        if real < chunk:
            parts = [
                np.concatenate([p, np.zeros((chunk - real, *p.shape[1:]), p.dtype)]) for p in parts
            ]
        yield real, parts


def predict_logits(
    model: TrainableModel, x: np.ndarray, batch_size: int = PREDICT_CHUNK
) -> np.ndarray:
    """Float32 logits of every row of `x` in inference mode, `batch_size` rows at a time:
    ``(len(x),)`` for classification, ``(len(x), time, vocab)`` for a language model (small
    inputs only: tests, examples)."""
    outputs = [model.predict_batch(xs)[:real] for real, (xs,) in _chunks((x,), batch_size)]
    return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros(0, np.float32)


def token_log_likelihood(
    model: TrainableModel, x: np.ndarray, y: np.ndarray, batch_size: int = SCORE_CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """Language models: the log-probability of each target token and the top-1 prediction,
    both ``(len(x), time)``, `batch_size` windows at a time."""
    scored = [
        tuple(out[:real] for out in model.score_batch(xs, ys))
        for real, (xs, ys) in _chunks((x, y), batch_size)
    ]
    if not scored:
        return np.zeros(y.shape, np.float32), np.zeros(y.shape, np.int32)
    return (
        np.concatenate([log_probs for log_probs, _ in scored]),
        np.concatenate([predicted for _, predicted in scored]),
    )


def evaluate(model: TrainableModel, split: Split, config: RunConfig) -> tuple[float, float]:
    """Mean loss and accuracy per prediction: per review, or per token (top-1)."""
    if config.task == "language_model":
        log_probs, predicted = token_log_likelihood(model, split.x, split.y, config.batch_size)
        return metrics.token_loss_and_accuracy(log_probs, predicted, split.y)
    logits = predict_logits(model, split.x, max(config.batch_size, PREDICT_CHUNK))
    return metrics.loss_and_accuracy(logits, split.y)


def test_metrics(
    model: TrainableModel, data: TaskData, config: RunConfig
) -> tuple[dict[str, float], np.ndarray | None, str]:
    """The test-split figures, the confusion matrix and the classification report (if any)."""
    test = data.test
    if config.task == "language_model":
        log_probs, predicted = token_log_likelihood(model, test.x, test.y, config.batch_size)
        return metrics.language_model_metrics(log_probs, predicted, test.y), None, ""
    logits = predict_logits(model, test.x, max(config.batch_size, PREDICT_CHUNK))
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
