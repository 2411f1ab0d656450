"""One backend's `bench perf` measurements in its own process: `python -m harness.perf.measure JOB`.

The harness side is timed through `harness.training.train_epoch`, the very loop `bench train`
runs; the baseline through `Backend.plain_training_seconds`, the framework's tutorial path.
Both get the same real IMDB batches, in the same order, for the same number of passes, and their
passes alternate (plain, harness, plain, ...) in one process. Each pass ends with a forced read
of a value computed on the device (and `synchronize()`), so an asynchronous framework cannot
stop the clock early. Results go to the parent as events (`harness.run.jobs`).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from backends import Backend, get_backend
from harness.data.classification import load_imdb
from harness.initialization import initial_weights
from harness.model_spec import ModelSpec, OptimizerSpec
from harness.perf.plan import MAIN, OPTION, WARMUP_ALLOWANCE, PerfJob, Point
from harness.run.events import Machine, Measured, Measuring
from harness.run.jobs import emit, read_job
from harness.system import cpu_model, leave, peak_resident_memory
from harness.tasks import predict_logits
from harness.training import epoch_batches, train_epoch

EVAL_REPEATS = 3  # timed predict_logits calls after one warm-up call
EVAL_REVIEWS = 2048  # at most this many test reviews per eval call


def load_batches(point: Point, plan: dict, source: str):
    """Real IMDB reviews through the harness's pipeline: the first `steps` full batches of the
    harness's epoch-1 order. Long sequence lengths are mostly front padding (reviews are ~230
    words long at the median), as `pad_sequences` would make them."""
    needed = plan["steps"] * point.batch_size
    subset = int(needed / 0.8) + 2  # the pipeline carves 20% of train off for validation
    data = load_imdb(
        source,
        num_words=plan["num_words"],
        sequence_length=point.sequence_length,
        subset=subset,
    )
    batches = [
        index
        for index in epoch_batches(len(data.train), point.batch_size, seed=0, epoch=1)
        if len(index) == point.batch_size
    ][: plan["steps"]]
    if len(batches) < plan["steps"]:
        raise SystemExit(f"the dataset has too few reviews for {plan['steps']} batches")
    return data, batches


def measure(backend: Backend, point: Point, plan: dict, source: str) -> dict[str, object]:
    spec = ModelSpec(
        point.architecture,
        vocab_size=plan["num_words"],
        embedding_dim=plan["embedding_dim"],
        hidden_size=plan["hidden_size"],
    )
    optimizer = OptimizerSpec()
    data, batches = load_batches(point, plan, source)
    passes = plan["passes"] + WARMUP_ALLOWANCE  # the report measures warm-up and drops it
    record: dict[str, object] = {"steps": len(batches)}
    backend.seed(0)
    backend.reset_peak_device_memory()
    started = time.perf_counter()
    model = backend.build(spec, optimizer, point.options())
    weights = initial_weights(spec, 0)
    model.set_weights(weights)
    train_epoch(model, data.train, batches[:1])
    backend.synchronize()
    record["first_step_seconds"] = time.perf_counter() - started
    pass_seconds: list[float] = []

    def harness_pass() -> None:
        started = time.perf_counter()
        train_epoch(model, data.train, batches)
        backend.synchronize()
        pass_seconds.append(time.perf_counter() - started)

    if point.plain:
        # Plain and harness passes alternate (the plain loop calls `harness_pass` between its
        # epochs), so a machine whose speed drifts by 10-20% between blocks of work, as a
        # shared VM does, slows both alike instead of biasing the ratio.
        x = np.concatenate([data.train.x[index] for index in batches])
        y = np.concatenate([data.train.y[index] for index in batches])
        record["plain_pass_seconds"] = backend.plain_training_seconds(
            spec, optimizer, weights, x, y, point.batch_size, passes, after_epoch=harness_pass
        )
    else:
        for _ in range(passes):
            harness_pass()
    record["pass_seconds"] = pass_seconds
    record["kernel"] = model.kernel()
    record["denormal_mode"] = model.denormal_mode()
    if point.kind == MAIN:
        test = data.test.x[:EVAL_REVIEWS]
        record["eval_samples"] = len(test)
        record["eval_seconds"] = []
        for repeat in range(EVAL_REPEATS + 1):
            started = time.perf_counter()
            predict_logits(model, test)  # returns numpy: the values are on the host
            if repeat:
                record["eval_seconds"].append(time.perf_counter() - started)
        record["peak_rss_bytes"] = peak_resident_memory()
        record["peak_device_bytes"] = backend.peak_device_memory()
    return record


def main(job_path: str) -> int:
    job = read_job(PerfJob, job_path)
    backend = get_backend(job.backend)
    threads = backend.limit_threads(job.plan["threads"])
    framework, version = backend.framework()
    device = backend.accelerator()
    gpu = device is not None
    emit(Machine(job.backend, framework, version, device or cpu_model(), gpu, threads))
    for fields in job.points:
        emit(Measuring(job.backend, fields))
        record = measure_point(backend, Point(**fields), job.plan, job.data, gpu=gpu)
        emit(Measured(job.backend, fields, record))
    return 0


def measure_point(
    backend: Backend, point: Point, plan: dict, source: str, gpu: bool
) -> dict[str, object]:
    """One point's record; a fast path this machine cannot run is recorded, not fatal.

    Whether a fast path runs depends on the hardware as much as on the framework: PyTorch's
    bf16 LSTM on a CPU needs oneDNN's AVX-512 kernels, for one. The plain and scaling points
    have no such excuse, so their errors end the run.
    """
    if point.needs_gpu and not gpu:
        return {"not_applicable": "needs a GPU; this run has none"}
    if point.kind != OPTION:
        return measure(backend, point, plan, source)
    try:
        return measure(backend, point, plan, source)
    except Exception as error:  # noqa: BLE001 - recorded in the table with its reason
        line = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return {"not_applicable": f"the framework refused it on this machine ({line})"}


if __name__ == "__main__":
    leave(main(sys.argv[1]))
