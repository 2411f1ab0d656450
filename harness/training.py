"""The training loop every backend shares: the harness owns the batches, the clock and the metrics.

Owning the batch order here (one seeded permutation per epoch) is what makes two frameworks see
the same batches in the same order; owning the clock and metrics makes their numbers comparable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from backends import TrainableModel, Weights, get_backend
from harness import tasks
from harness.config import RunConfig
from harness.initialization import initial_weights
from harness.metrics import METRIC_DIRECTION
from harness.system import peak_resident_memory, reset_peak_resident_memory
from harness.tasks import Split, TaskData


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    epoch_seconds: float  # training only, validation excluded
    samples_per_second: float  # reviews, or token windows for a language model
    tokens_per_second: float | None = None  # language models only

    @property
    def val_perplexity(self) -> float:
        with np.errstate(over="ignore"):  # a diverging run's loss: inf, not a warning line
            return float(np.exp(self.val_loss))

    def as_metrics(self) -> dict[str, float]:
        return {
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "val_perplexity": self.val_perplexity,
            "epoch_seconds": self.epoch_seconds,
            "samples_per_second": self.samples_per_second,
            **({"tokens_per_second": self.tokens_per_second} if self.tokens_per_second else {}),
        }


@dataclass
class TrainResult:
    config: RunConfig
    framework: str
    framework_version: str
    accelerator: str | None
    parameter_count: int
    model_summary: str
    epochs: list[EpochResult] = field(default_factory=list)
    time_to_first_epoch: float = float("nan")  # build + compile + first epoch's training
    eval_seconds: float = 0.0  # every validation pass and the test pass(es) (compiling included)
    test: dict[str, float] = field(default_factory=dict)  # the headline: test_weights' weights
    # With test_weights "best_epoch": the final epoch's test figures, kept beside the headline
    # (whose weights are those of `best_epoch`). Empty with "final": `test` is the final epoch's.
    final_test: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    confusion: np.ndarray | None = None
    classification_report: str = ""
    memory: dict[str, int] = field(default_factory=dict)  # only the figures that apply
    kernel: str = ""  # the recurrent kernel the framework ran, or "unknown" (reported_kernel)
    denormal_mode: str = ""  # "flush" or "keep" on the CPU (TrainableModel.denormal_mode)

    def execution_tags(self) -> dict[str, str]:
        """What explains a speed difference between runs, tracked as tags."""
        return {"kernel": self.kernel, "denormal_mode": self.denormal_mode}

    @property
    def train_seconds(self) -> float:
        return sum(e.epoch_seconds for e in self.epochs)

    def summary_metrics(self) -> dict[str, float]:
        """The end-of-run figures, flat, as they are tracked."""
        summary = {
            "total_train_seconds": self.train_seconds,
            "total_eval_seconds": self.eval_seconds,
            "time_to_first_epoch": self.time_to_first_epoch,
            "parameter_count": float(self.parameter_count),
            **{k.replace("_bytes", "_mb"): v / 2**20 for k, v in self.memory.items()},
            **{f"test_{k}": v for k, v in self.test.items()},
            **{f"final_test_{k}": v for k, v in self.final_test.items()},
        }
        if self.best_epoch is not None:
            summary["best_epoch"] = float(self.best_epoch)
        if self.epochs:
            summary["final_val_accuracy"] = self.epochs[-1].val_accuracy
            summary["best_val_accuracy"] = max(e.val_accuracy for e in self.epochs)
        return summary


def epoch_batches(size: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Index batches of one epoch: a permutation seeded by (seed, epoch), last batch kept."""
    order = np.random.default_rng([seed, epoch]).permutation(size)
    for start in range(0, size, batch_size):
        yield order[start : start + batch_size]


@dataclass
class BestEpoch:
    """The best validation epoch so far and a copy of its weights, for test_weights "best_epoch".

    As Keras's EarlyStopping(restore_best_weights=True): only a strict improvement counts, so a
    tie keeps the earlier epoch, and a NaN value never counts.
    """

    metric: str  # a key of EpochResult.as_metrics, e.g. "val_accuracy"
    epoch: int = 0  # 0 until an epoch gives a number
    value: float = math.nan
    weights: Weights = field(default_factory=dict)

    def offer(self, outcome: EpochResult, model: TrainableModel) -> None:
        value = outcome.as_metrics()[self.metric]
        if math.isnan(value):
            return
        higher = METRIC_DIRECTION[self.metric] == "maximize"
        if self.epoch == 0 or (value > self.value if higher else value < self.value):
            self.epoch, self.value = outcome.epoch, value
            # Copies: a backend may hand out views of arrays that its next step overwrites.
            self.weights = {name: np.array(w, copy=True) for name, w in model.get_weights().items()}


EpochCallback = Callable[[EpochResult], None]
BatchCallback = Callable[[int, int], None]  # (batches done, batches per epoch)


def train_epoch(
    model: TrainableModel,
    split: Split,
    batches: Iterable[np.ndarray],
    on_batch: BatchCallback | None = None,
    total: int = 0,
) -> tuple[float, float]:
    """One pass of `train_step` over index `batches` of `split`; the mean loss and accuracy.

    Reading the metrics waits for the device, so a clock read after this call is honest. It is
    the loop `train` runs and the loop `bench perf` times.
    """
    for done, index in enumerate(batches, start=1):
        model.train_step(split.x[index], split.y[index])
        if on_batch is not None:
            on_batch(done, total)
    return model.take_train_metrics()


def train(
    config: RunConfig,
    data: TaskData,
    on_epoch: EpochCallback | None = None,
    on_batch: BatchCallback | None = None,
    evaluate_test: bool = True,
    on_start: Callable[[TrainResult], None] | None = None,
    select_by: str | None = None,
) -> TrainResult:
    """Train `config` on `data`, then evaluate on the test split unless told not to.

    `on_epoch` sees every finished epoch (a pruner may raise from it to stop the run early);
    `on_start` sees the result before the first epoch, once the model is built.
    Search trials leave the test split alone, so that no choice is ever made by looking at it.
    With `config.test_weights` "best_epoch" the test split is scored twice: with the final
    weights (`final_test`), then with those of the best epoch by `select_by` (the study's
    objective; the task's `tasks.SELECTED_BY` when None) as the headline `test`.
    """
    backend = get_backend(config.backend)
    backend.seed(config.seed)
    backend.reset_peak_device_memory()
    reset_peak_resident_memory()  # in a warm worker, the peak since this run began
    started = time.perf_counter()
    model = backend.build(config.model_spec(), config.optimizer_spec(), config.execution_options())
    model.set_weights(initial_weights(config.model_spec(), config.seed))
    framework, version = backend.framework()
    result = TrainResult(
        config=config,
        framework=framework,
        framework_version=version,
        accelerator=backend.accelerator(),
        parameter_count=model.count_trainable_parameters(),
        model_summary=model.summary(),
        kernel=reported_kernel(model),
        denormal_mode=model.denormal_mode(),
    )
    if on_start is not None:
        on_start(result)
    best = None
    if evaluate_test and config.test_weights == "best_epoch":
        best = BestEpoch(select_by or tasks.SELECTED_BY[config.task])
    train_split = data.train
    batches_per_epoch = -(-len(train_split) // config.batch_size)
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        batches = epoch_batches(len(train_split), config.batch_size, config.seed, epoch)
        train_loss, train_accuracy = train_epoch(
            model, train_split, batches, on_batch, batches_per_epoch
        )
        seconds = time.perf_counter() - epoch_start
        if epoch == 1:
            result.time_to_first_epoch = time.perf_counter() - started
        evaluation_start = time.perf_counter()
        val_loss, val_accuracy = tasks.evaluate(model, data.validation, config)
        result.eval_seconds += time.perf_counter() - evaluation_start
        tokens = tasks.predictions_per_sample(config, train_split)
        outcome = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=train_accuracy,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            epoch_seconds=seconds,
            samples_per_second=len(train_split) / seconds,
            tokens_per_second=len(train_split) * tokens / seconds if tokens > 1 else None,
        )
        result.epochs.append(outcome)
        if best is not None:
            best.offer(outcome, model)
        if on_epoch is not None:
            on_epoch(outcome)
    result.memory = memory_figures(backend.peak_device_memory())
    if evaluate_test:
        evaluation_start = time.perf_counter()
        result.test, result.confusion, result.classification_report = tasks.test_metrics(
            model, data, config
        )
        if best is not None:
            # best.epoch is 0 when no epoch gave a number: then the final weights stand.
            result.final_test, result.best_epoch = result.test, best.epoch or config.epochs
            if result.best_epoch != config.epochs:
                model.set_weights(best.weights)
                result.test, result.confusion, result.classification_report = tasks.test_metrics(
                    model, data, config
                )
        result.eval_seconds += time.perf_counter() - evaluation_start
    return result


def reported_kernel(model: TrainableModel) -> str:
    """The recurrent kernel for the run's tags, where the backend reports it (an optional hook:
    a backend without it still trains)."""
    try:
        return model.kernel()
    except NotImplementedError:
        return "unknown"


def memory_figures(peak_device: int | None) -> dict[str, int]:
    """Peak GPU allocation where there is a GPU, and the process's peak resident memory."""
    figures = {"peak_rss_bytes": peak_resident_memory()}
    if peak_device is not None:
        figures["peak_gpu_memory_bytes"] = peak_device
    return figures
