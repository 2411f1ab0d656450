"""[retrain] test_weights: the test split scored with the best validation epoch's weights, as
Keras's EarlyStopping(restore_best_weights=True) would, with the final epoch's figures beside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_VOCAB
from study_texts import DROP, toml

from backends import BACKENDS
from harness import identity
from harness.config import RunConfig
from harness.errors import BenchError
from harness.study.schema import load_study
from harness.training import BestEpoch, EpochResult, train

# --- the study key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "weights"), [("imdb", "best_epoch"), ("imdb-cpu", "final"), ("imdb-quick", "final")]
)
def test_a_shipped_study_tests_the_best_epoch_when_it_searches(name: str, weights: str) -> None:
    study = load_study(name)
    assert study.retrain.test_weights == weights
    assert study.run_config("torch", "lstm", {}).test_weights == weights
    assert identity.definition(study)["test_weights"] == weights


@pytest.mark.parametrize(
    ("budget", "retrain", "weights"),
    [
        ({"trials": 2}, {}, "best_epoch"),
        ({"trials": DROP, "timeout_minutes": 5.0}, {}, "best_epoch"),  # searches until the clock
        ({"trials": 1}, {}, "final"),  # the defaults alone: nothing was searched
        ({"trials": 2}, {"test_weights": "final"}, "final"),
        ({"trials": 1}, {"test_weights": "best_epoch"}, "best_epoch"),
    ],
)
def test_the_default_follows_the_budget_and_a_set_value_wins(
    tmp_path: Path, budget: dict, retrain: dict, weights: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(toml(budget=budget, retrain=retrain))
    study = load_study(path)
    assert study.retrain.test_weights == weights
    assert (
        study.run_config("torch", "gru", {"hidden_size": 4}).as_params()["test_weights"] == weights
    )
    assert (
        f"tested with the {'best validation' if weights == 'best_epoch' else 'final'} epoch's"
        in ("\n".join(study.plan()))
    )


def test_a_value_that_is_no_choice_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(toml(retrain={"test_weights": "best"}))
    with pytest.raises(BenchError) as raised:
        load_study(path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.endswith(
        "retrain.test_weights: expected 'best_epoch' or 'final'; received 'best'"
    )


# --- choosing the best epoch ------------------------------------------------------------------


class Held:
    """A model whose get_weights hands out its own array, as a backend may (a view)."""

    def __init__(self) -> None:
        self.kernel = np.zeros(2, np.float32)

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"kernel": self.kernel}


def epoch(number: int, val_loss: float, val_accuracy: float) -> EpochResult:
    return EpochResult(number, 0.0, 0.0, val_loss, val_accuracy, 1.0, 1.0)


@pytest.mark.parametrize(
    ("metric", "values", "best"),
    [
        ("val_accuracy", [(0.6, 0.5), (0.5, 0.7), (0.4, 0.7), (0.3, 0.6)], 2),  # a tie: the first
        ("val_loss", [(0.6, 0.5), (0.5, 0.7), (0.4, 0.7), (0.45, 0.9)], 3),
        ("val_perplexity", [(0.6, 0.5), (0.5, 0.7), (0.4, 0.7), (0.45, 0.9)], 3),
        ("val_accuracy", [(1.0, float("nan")), (0.5, 0.6), (0.4, float("nan"))], 2),  # NaN: never
    ],
)
def test_the_best_epoch_follows_the_metric_direction_and_keeps_a_copy(
    metric: str, values: list[tuple[float, float]], best: int
) -> None:
    model, chosen = Held(), BestEpoch(metric)
    for number, (loss, accuracy) in enumerate(values, start=1):
        model.kernel[:] = number  # the next step overwrites the array handed out
        chosen.offer(epoch(number, loss, accuracy), model)  # type: ignore[arg-type]
    assert chosen.epoch == best
    np.testing.assert_array_equal(chosen.weights["kernel"], [best, best])


# --- through the training loop, on every backend ----------------------------------------------

SIZES = {"hidden_size": 8, "embedding_dim": 8, "num_words": TINY_VOCAB, "sequence_length": 32}
# On the tiny slice seed 5 at this rate peaks on validation at epoch 2 of 3 (0.55, then 0.45):
# the best epoch is neither the first nor the last, on every backend (they compute alike).
BEST_AT = 2


def config(backend: str, epochs: int = 3, weights: str = "final") -> RunConfig:
    return RunConfig(
        backend=backend,
        architecture="gru",
        epochs=epochs,
        seed=5,
        learning_rate=3e-2,
        batch_size=32,
        test_weights=weights,
        **SIZES,
    )


@pytest.mark.parametrize(
    "backend_name",
    [pytest.param(b, marks=() if b == "torch" else pytest.mark.slow) for b in BACKENDS],
)
def test_the_headline_is_the_best_epochs_weights_and_the_final_figures_stay_beside(
    backend_name: str, backend, tiny_imdb
) -> None:
    best = train(config(backend_name, weights="best_epoch"), tiny_imdb)
    accuracies = [e.val_accuracy for e in best.epochs]
    assert best.best_epoch == accuracies.index(max(accuracies)) + 1 == BEST_AT
    # Training is deterministic per seed, and an epoch's batches depend only on (seed, epoch): a
    # run of BEST_AT epochs ends with the best epoch's weights, a 3-epoch run with the final ones.
    stopped = train(config(backend_name, epochs=BEST_AT), tiny_imdb)
    final = train(config(backend_name), tiny_imdb)
    assert best.test == stopped.test != final.test == best.final_test
    np.testing.assert_array_equal(best.confusion, stopped.confusion)  # the headline's, too
    assert [
        e.as_metrics() | {"epoch_seconds": 0, "samples_per_second": 0} for e in best.epochs
    ] == [
        e.as_metrics() | {"epoch_seconds": 0, "samples_per_second": 0} for e in final.epochs
    ]  # keeping copies changes no epoch
    summary = best.summary_metrics()
    assert summary["best_epoch"] == BEST_AT
    assert summary["test_accuracy"] == stopped.test["accuracy"]
    assert summary["final_test_accuracy"] == final.test["accuracy"]
    # "final" is what a run always was: no best epoch, no second set of figures.
    assert final.best_epoch is None and not final.final_test
    assert not {"best_epoch", "final_test_accuracy"} & set(final.summary_metrics())


def test_a_run_that_skips_the_test_keeps_no_best_epoch(tiny_imdb) -> None:
    """Search trials never score the test split, so they need no weights kept."""
    result = train(config("torch", epochs=1, weights="best_epoch"), tiny_imdb, evaluate_test=False)
    assert result.best_epoch is None and not result.test and not result.final_test


def test_a_trial_job_picks_the_best_epoch_by_its_objective(imdb_slice, tmp_path: Path) -> None:
    """A re-training's job names the study's objective; the best epoch follows its direction."""
    from harness.run.trial import COMPLETE, TrialJob, run

    fields = config("torch", weights="best_epoch").as_params()
    job = TrialJob(fields, str(imdb_slice), "val_loss", evaluate_test=True, folder=str(tmp_path))
    outcome = run(job, report=lambda event: None)
    assert outcome.state == COMPLETE
    losses = [e["val_loss"] for e in outcome.epochs]
    # Lowest validation loss at epoch 1, best accuracy at epoch 2: the objective, not the task's
    # default (accuracy), chose.
    assert outcome.metrics["best_epoch"] == losses.index(min(losses)) + 1 == 1 != BEST_AT
    assert {"test_accuracy", "final_test_accuracy"} <= set(outcome.metrics)
