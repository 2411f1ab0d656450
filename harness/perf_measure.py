"""One backend's `bench perf` measurements in its own process: `python -m harness.perf_measure JOB`.

The harness side is timed through `harness.training.train_epoch`, the very loop `bench train`
runs; the baseline through `Backend.plain_training_seconds`, the framework's tutorial path.
Both get the same real IMDB batches, in the same order, for the same number of passes. Each pass
ends with a forced read of a value computed on the device (and `synchronize()`), so an
asynchronous framework cannot stop the clock early. Results go to stdout as JSON lines.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from backends import Backend, get_backend
from harness.imdb import load_imdb
from harness.initialization import initial_weights
from harness.model_spec import ModelSpec, OptimizerSpec
from harness.perf import MAIN, Point
from harness.system import cpu_model, peak_resident_memory
from harness.training import epoch_batches, train_epoch

EVAL_REPEATS = 3  # timed predict_logits calls after one warm-up call
EVAL_REVIEWS = 2048  # at most this many test reviews per eval call


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


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
    passes = plan["passes"] + 1  # the first one warms up and is left out
    record: dict[str, object] = {"steps": len(batches)}
    if point.plain:
        # Before the harness's run: seed() switches on TensorFlow's op determinism, which a
        # tutorial would not have.
        x = np.concatenate([data.train.x[index] for index in batches])
        y = np.concatenate([data.train.y[index] for index in batches])
        record["plain_pass_seconds"] = backend.plain_training_seconds(
            spec, optimizer, x, y, point.batch_size, passes
        )
    backend.seed(0)
    backend.reset_peak_device_memory()
    started = time.perf_counter()
    model = backend.build(spec, optimizer, point.options())
    model.set_weights(initial_weights(spec, 0))
    train_epoch(model, data.train, batches[:1])
    backend.synchronize()
    record["first_step_seconds"] = time.perf_counter() - started
    record["pass_seconds"] = []
    for _ in range(passes):
        started = time.perf_counter()
        train_epoch(model, data.train, batches)
        backend.synchronize()
        record["pass_seconds"].append(time.perf_counter() - started)
    record["kernel"] = model.kernel()
    if point.kind == MAIN:
        test = data.test.x[:EVAL_REVIEWS]
        record["eval_samples"] = len(test)
        record["eval_seconds"] = []
        for repeat in range(EVAL_REPEATS + 1):
            started = time.perf_counter()
            model.predict_logits(test)  # returns numpy: the values are on the host
            if repeat:
                record["eval_seconds"].append(time.perf_counter() - started)
        record["peak_rss_bytes"] = peak_resident_memory()
        record["peak_device_bytes"] = backend.peak_device_memory()
    return record


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    plan = job["plan"]
    backend = get_backend(job["backend"])
    threads = backend.limit_threads(plan["threads"])
    framework, version = backend.framework()
    device = backend.accelerator()
    emit(
        "machine",
        backend=job["backend"],
        framework=framework,
        framework_version=version,
        device=device or cpu_model(),
        gpu=device is not None,
        threads=threads,
    )
    for fields in job["points"]:
        point = Point(**fields)
        emit("point", backend=job["backend"], **fields)
        record = {"backend": job["backend"], **fields}
        if point.needs_gpu and device is None:
            record["not_applicable"] = "needs a GPU; this run has none"
        else:
            record.update(measure(backend, point, plan, job["data"]))
        emit("result", **record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
