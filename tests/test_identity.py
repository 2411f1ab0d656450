"""What counts as a change of a study's definition, read from real study files."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from harness import identity
from harness.errors import BenchError
from harness.study.schema import load_study

QUICK = (REPO / "studies" / "imdb-quick.toml").read_text()


def study_from(text: str, tmp_path: Path, name: str = "edited.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_study(path)


@pytest.mark.parametrize(
    "edit",
    [
        ("# The full study shrunk", "#   reworded comment\n# The full study shrunk"),
        ("trials = 2", "trials = 7"),  # budget: resumes and adds trials
        ("timeout_minutes = 3", "timeout_minutes = 30"),
        ("seeds = 2", "seeds = 5"),  # more seeds: more runs, none computed differently
        ('type = "median"', 'type = "none"'),  # which trials stop early, not what a run computes
        ("n_startup_trials = 1", ""),
        # The value a study with one trial gets anyway: the same figures, the same identity.
        ("cross_backend = false", 'cross_backend = false\ntest_weights = "final"'),
    ],
)
def test_edits_that_change_no_run_keep_the_identity(tmp_path, edit):
    original = load_study(REPO / "studies" / "imdb-quick.toml")
    edited = study_from(QUICK.replace(*edit), tmp_path)
    assert identity.study_digest(edited) == identity.study_digest(original)
    identity.check(edited, identity.attributes(original)[identity.DEFINITION_KEY], "the stores")


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (("epochs = 2", "epochs = 3"), "epochs: 2 -> 3"),
        (("subset = 1000", "subset = 900"), "data.subset: 1000 -> 900"),
        (("embedding_dim = 16", "embedding_dim = 32"), "fixed.embedding_dim: 16 -> 32"),
        (("num_layers = 1", 'num_layers = 1\nprecision = "bf16"'), "fixed.precision: 'unset'"),
        (
            ("step = 16, default = 32", "step = 16, default = 16"),
            "search.hidden_size.default: 32 -> 16",
        ),
        (('direction = "maximize"', 'direction = "maximize"\ntarget = 0.8'), "objective.target"),
        (
            ("cross_backend = false", 'cross_backend = false\ntest_weights = "best_epoch"'),
            "test_weights: 'final' -> 'best_epoch'",
        ),
        # Searching changes the default test weights: what a test figure means.
        (("\ntrials = 1", "\ntrials = 5"), "test_weights: 'final' -> 'best_epoch'"),
    ],
)
def test_edits_that_change_a_run_are_named_in_one_line(tmp_path, edit, named):
    original = load_study(REPO / "studies" / "imdb-quick.toml")
    edited = study_from(QUICK.replace(*edit), tmp_path)
    assert identity.study_digest(edited) != identity.study_digest(original)
    stored = identity.attributes(original)[identity.DEFINITION_KEY]
    with pytest.raises(BenchError) as raised:
        identity.check(edited, stored, "the MLflow experiment 'imdb-quick'")
    message = str(raised.value)
    assert "\n" not in message and named in message
    assert "since the MLflow experiment 'imdb-quick' was made" in message


def test_stores_made_before_identities_were_recorded_are_accepted():
    identity.check(load_study(REPO / "studies" / "imdb-quick.toml"), None, "an old store")


def test_parts_that_no_longer_count_are_ignored_in_a_stored_definition():
    study = load_study(REPO / "studies" / "imdb-quick.toml")
    recorded = {**identity.definition(study), "sampler": {"type": "tpe", "seed": 42}}
    identity.check(study, identity.canonical(recorded), "an older store")


class RacingTracker:
    """A tracker whose experiment another process tags first: every write of ours is lost."""

    def __init__(self, winner: str | None) -> None:
        self.tags: dict[str, str] = {}
        self.winner = winner  # what the other process writes; None: nobody else writes

    def experiment_tag(self, key: str) -> str | None:
        return self.tags.get(key)

    def write_experiment_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags if self.winner is None else {identity.DEFINITION_KEY: self.winner})


def test_the_definition_is_recorded_and_a_lost_race_is_read_back(tmp_path):
    from harness.search import open_storage

    study = load_study(REPO / "studies" / "imdb-quick.toml")
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    alone = RacingTracker(winner=None)
    identity.check_identity(study, alone, storage)
    assert alone.tags == identity.attributes(study)
    identity.check_identity(study, alone, storage)  # the same study resumes
    # Another definition won the race to an empty store: ours must not run on top of it.
    other = study_from(QUICK.replace("epochs = 2", "epochs = 3"), tmp_path)
    lost = RacingTracker(winner=identity.attributes(other)[identity.DEFINITION_KEY])
    with pytest.raises(BenchError, match="epochs: 3 -> 2"):
        identity.check_identity(study, lost, storage)
    untouched = RacingTracker(winner=None)
    identity.check_identity(study, untouched, storage, record=False)  # `bench report` reads only
    assert untouched.tags == {}


def test_stores_of_an_rnnbench_that_measured_differently_are_refused():
    """A store recorded before warm workers (peak memory from the process's start) must not
    take runs whose peak counts from the run's start."""
    study = load_study("imdb-quick")
    before = {k: v for k, v in identity.definition(study).items() if k != "measurement"}
    with pytest.raises(BenchError, match="measures differently") as refused:
        identity.check(study, identity.canonical(before), "the stores")
    assert f"measurement: 'unset' -> {identity.MEASUREMENT}" in str(refused.value)
