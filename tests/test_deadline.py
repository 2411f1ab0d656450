"""`[budget] study_minutes`: the re-trainings' reserve and each search's share, in real numbers.

No clock is mocked: the deadline is arithmetic on durations passed in, and the paces come from
real Optuna trials whose start and end times are written into an in-memory study.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from study_texts import DROP, toml

from harness.run.deadline import WALL_PER_TRAINING_SECOND as WALL
from harness.run.deadline import Deadline, pace, retrain_runs
from harness.search import PACE, record_pace, seconds_per_epoch
from harness.study.schema import Study, load_study


def _study(tmp_path: Path, **tables: object) -> Study:
    path = tmp_path / "s.toml"
    path.write_text(toml(**tables))
    return load_study(path)


# Two architectures on two backends, 5 epochs, 5 seeds with cross runs, an hour in all.
HOUR = {
    "study": {"architectures": ["lstm", "gru"], "backends": ["torch", "keras"], "epochs": 5},
    "budget": {"trials": DROP, "study_minutes": 60},
    "retrain": {"seeds": 5, "cross_backend": True},
}


def test_retrain_runs_count_what_retrain_runs(tmp_path: Path) -> None:
    study = _study(tmp_path, **HOUR)
    # 5 seeds x (itself + 1 other backend); the baseline (torch) also re-trains the defaults.
    assert (retrain_runs(study, "torch"), retrain_runs(study, "keras")) == (15, 10)
    alone = _study(tmp_path, **{**HOUR, "retrain": {"seeds": 3, "cross_backend": False}})
    assert (retrain_runs(alone, "torch"), retrain_runs(alone, "keras")) == (6, 3)
    # One trial per search is its defaults: they are the re-trainings already.
    quick = _study(tmp_path, **{**HOUR, "budget": {"trials": 1}})
    assert retrain_runs(quick, "torch") == retrain_runs(quick, "keras") == 10


def test_the_deadline_follows_the_study(tmp_path: Path) -> None:
    deadline = Deadline.of(_study(tmp_path, **HOUR), workers=2)
    # Searches in the order the slots take them: (lstm, torch), (lstm, keras), (gru, ...).
    assert deadline == Deadline(seconds=3600.0, epochs=5, workers=2, runs=(15, 10, 15, 10))
    assert Deadline.of(_study(tmp_path), workers=1) is None  # no study_minutes: no deadline


def test_the_reserve_is_the_retrainings_at_each_searchs_pace() -> None:
    deadline = Deadline(seconds=3600.0, epochs=5, workers=1, runs=(15, 10, 15, 10))
    # gru/keras has no finished trial yet: taken as slow as the slowest measured (4 s/epoch).
    paces = [2.0, 3.5, 4.0, None]
    assert deadline.filled(paces) == [2.0, 3.5, 4.0, 4.0]
    # 825 training seconds, scaled to wall time (validation, test scoring, start-up)
    training = 5 * (15 * 2.0 + 10 * 3.5 + 15 * 4.0 + 10 * 4.0)
    assert deadline.reserve(paces) == pytest.approx(training * WALL)
    two_slots = Deadline(seconds=3600.0, epochs=5, workers=2, runs=(15, 10, 15, 10))
    assert two_slots.reserve(paces) == pytest.approx(training * WALL / 2)  # side by side
    assert deadline.reserve([None] * 4) == 0.0  # nothing measured: the first trials measure


def test_each_search_gets_an_equal_share_of_what_the_reserve_leaves() -> None:
    deadline = Deadline(seconds=3600.0, epochs=5, workers=1, runs=(15, 10, 15, 10))
    paces = [2.0, 3.5, 4.0, None]
    searching = 3600.0 - 825.0 * WALL
    ends = [deadline.search_end(position, paces) for position in range(4)]
    assert ends == pytest.approx([searching / 4, searching / 2, searching * 3 / 4, searching])
    # The first search's trials take 10 training seconds (5 epochs at 2 s), scaled to wall time:
    # one more fits until its share's end less that.
    last_start = searching / 4 - 10 * WALL
    assert deadline.may_start(0, last_start - 0.01, paces, tried=3)
    assert not deadline.may_start(0, last_start + 0.01, paces, tried=3)
    # The last search may use the time the others left, up to the reserve, not into it.
    last_start = searching - 20 * WALL
    assert deadline.may_start(3, last_start - 0.01, paces, tried=1)
    assert not deadline.may_start(3, last_start + 0.01, paces, tried=1)


def test_a_search_always_runs_its_first_trial() -> None:
    deadline = Deadline(seconds=60.0, epochs=5, workers=1, runs=(15, 10))
    slow = [30.0, 30.0]  # the re-trainings alone would take far longer than the budget
    assert deadline.search_end(1, slow) == 0.0
    assert deadline.may_start(1, 500.0, slow, tried=0)  # its defaults: the re-trainings need it
    assert not deadline.may_start(1, 0.0, slow, tried=1)


def test_paces_come_from_the_finished_trials_of_a_search() -> None:
    search = optuna.create_study(direction="maximize")
    start = dt.datetime(2026, 12, 1, 12, 0, 0)

    def add(
        state: TrialState,
        seconds: float,
        epochs: int,
        value: float | None = None,
        attrs: dict[str, float] | None = None,
    ) -> None:
        search.add_trial(
            FrozenTrial(
                number=0,
                trial_id=0,
                state=state,
                value=value,
                values=None,
                datetime_start=start,
                datetime_complete=start + dt.timedelta(seconds=seconds),
                params={},
                distributions={},
                user_attrs=attrs or {},
                system_attrs={},
                intermediate_values={epoch: 0.5 for epoch in range(1, epochs + 1)},
            )
        )

    assert pace(seconds_per_epoch(search)) is None  # nothing finished yet
    add(TrialState.COMPLETE, 30.0, 2, value=0.8)  # 2 epochs in 30 s
    add(TrialState.PRUNED, 20.0, 1)  # pruned after its first epoch, start-up and all
    add(TrialState.FAIL, 300.0, 1)  # failed: says nothing of a run's length
    add(TrialState.PRUNED, 5.0, 0)  # diverged before reporting: no epoch to divide by
    assert seconds_per_epoch(search) == [15.0, 20.0]  # no recorded pace: wall time per epoch
    assert pace(seconds_per_epoch(search)) == 17.5
    # A recorded pace (training seconds per epoch) wins over the wall time, which carries a
    # fresh worker's import and data loading.
    add(TrialState.COMPLETE, 90.0, 2, value=0.7, attrs={PACE: 4.0})
    assert seconds_per_epoch(search) == [15.0, 20.0, 4.0]


def test_a_trial_records_its_steady_training_seconds_per_epoch() -> None:
    """The first epoch carries graph building and compilation: left out where there are more."""
    search = optuna.create_study()
    three, one, none = search.ask(), search.ask(), search.ask()
    record_pace(three, [10.0, 4.0, 5.0])
    record_pace(one, [7.0])
    record_pace(none, [])  # diverged before its first epoch ended: nothing to record
    assert three.user_attrs[PACE] == 4.5 and one.user_attrs[PACE] == 7.0
    assert PACE not in none.user_attrs
