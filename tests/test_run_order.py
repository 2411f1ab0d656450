"""The re-trainings' order: seed-major, every backend of a seed next to each other, shuffled
with a seeded generator, so the two sides of a pair share the machine's state."""

from __future__ import annotations

from harness.run.retrain import seed_major

BACKENDS = ("torch", "keras", "keras-jax")


def jobs(architectures=("lstm", "gru"), seeds=3, cross=False):
    """Jobs in the order the searches produce them: backend-major, as they used to run."""
    out = []
    for arch in architectures:
        for source in BACKENDS:
            targets = BACKENDS if cross else (source,)
            for target in targets:
                for seed in range(seeds):
                    out.append((arch, source, target, {}, seed))
    return out


def test_each_seed_runs_every_backend_before_the_next_seed():
    ordered = seed_major(jobs(), seed=42)
    assert sorted(ordered, key=repr) == sorted(jobs(), key=repr)  # the same jobs, reordered
    blocks = [(job[0], job[4]) for job in ordered]
    assert blocks == sorted(blocks, key=lambda b: (["lstm", "gru"].index(b[0]), b[1]))
    for arch in ("lstm", "gru"):
        for seed in range(3):
            block = [job[2] for job in ordered if job[0] == arch and job[4] == seed]
            assert sorted(block) == sorted(BACKENDS)  # all three backends, once each


def test_the_order_within_a_seed_is_shuffled_and_reproducible():
    first = seed_major(jobs(), seed=42)
    again = seed_major(list(reversed(jobs())), seed=42)  # however they arrive
    for arch in ("lstm", "gru"):
        assert [j for j in again if j[0] == arch] == [j for j in first if j[0] == arch]
    firsts = {tuple(j[2] for j in first if j[0] == "lstm" and j[4] == s) for s in range(3)}
    assert len(firsts) > 1  # not always the same backend first
    assert seed_major(jobs(), seed=7) != first


def test_cross_runs_join_their_seed_block():
    ordered = seed_major(jobs(architectures=("lstm",), seeds=2, cross=True), seed=0)
    assert [job[4] for job in ordered] == [0] * 9 + [1] * 9
