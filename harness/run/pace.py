"""The pace of a study's training steps on this machine, in its own process:
`python -m harness.run.pace JOB`.

`bench run` asks for it before a study sized for a GPU starts on a machine without one
(`harness.run.sizing`): per architecture, the model of the study's default configuration, one
warm-up step (graph building, compilation, first allocations), then a few timed steps through
`harness.training.train_epoch`, the loop every run trains with. The tokens are random: a
recurrent step costs what its shapes cost, whatever the words, so no data need be read. Its own
process, as every framework's work is (`harness.run.jobs`): `bench run` never imports one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from backends import get_backend
from harness.config import RunConfig
from harness.initialization import initial_weights
from harness.run.events import Paced
from harness.run.jobs import emit, read_job
from harness.training import train_epoch


@dataclass(frozen=True)
class PaceJob:
    configs: list[dict[str, object]]  # RunConfig fields, one run per architecture
    steps: int  # timed steps per architecture, after one warm-up step


@dataclass(frozen=True)
class RandomBatch:
    """One batch of random tokens in the shapes of a run's training split."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


def random_batch(config: RunConfig) -> RandomBatch:
    rng = np.random.default_rng(0)
    shape = (config.batch_size, config.sequence_length)
    x = rng.integers(1, config.num_words, size=shape, dtype=np.int32)
    if config.task == "language_model":  # the next token at every position
        return RandomBatch(x, rng.integers(1, config.num_words, size=shape, dtype=np.int32))
    return RandomBatch(x, rng.integers(0, 2, size=config.batch_size).astype(np.float32))


def step_seconds(config: RunConfig, steps: int) -> tuple[float, str | None]:
    """Seconds per training step of `config` after a warm-up step, and the GPU it ran on."""
    backend = get_backend(config.backend)
    backend.seed(config.seed)
    spec = config.model_spec()
    model = backend.build(spec, config.optimizer_spec(), config.execution_options())
    model.set_weights(initial_weights(spec, config.seed))
    batch = random_batch(config)
    index = np.arange(len(batch))
    train_epoch(model, batch, [index])
    started = time.perf_counter()
    train_epoch(model, batch, [index] * steps)  # reads the metrics: waits for the device
    return (time.perf_counter() - started) / steps, backend.accelerator()


def main(job_path: str) -> int:
    job = read_job(PaceJob, job_path)
    for fields in job.configs:
        config = RunConfig(**fields)  # type: ignore[arg-type]
        seconds, accelerator = step_seconds(config, job.steps)
        emit(Paced(config.backend, config.architecture, seconds, accelerator))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
