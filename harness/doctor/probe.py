"""One backend's `bench doctor` facts, in its own process: `python -m harness.doctor.probe JOB`.

The parity check builds every architecture on the backend's device, loads the harness's initial
weights and compares the logits of one batch with the float32 numpy forward pass of the same
weights (`harness.reference`): a fused kernel, a driver or a default such as TF32 that changes
the numbers shows up here, before a study spends hours on them.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass

import numpy as np

from harness.initialization import initial_weights
from harness.model_spec import ARCHITECTURES, ModelSpec, OptimizerSpec
from harness.reference import reference_logits
from harness.run.devices import thread_settings
from harness.run.events import Diagnosis
from harness.run.jobs import emit, read_job
from harness.system import cpu_model, leave
from harness.tasks import predict_logits

# The parity batch: big enough to run the device's real kernels, small enough for a second.
VOCAB, EMBEDDING, HIDDEN, BATCH, TIME = 1000, 32, 64, 32, 50


@dataclass(frozen=True)
class ProbeJob:
    backend: str
    module: str  # the backend's module, which defines BACKEND (`backends.BackendInfo.module`)


def kernel_of(model) -> str:
    try:
        return model.kernel()
    except NotImplementedError:
        return "unknown"


def probe(job: ProbeJob) -> Diagnosis:
    backend = importlib.import_module(job.module).BACKEND
    framework, version = backend.framework()
    backend.seed(0)
    x = np.random.default_rng(0).integers(0, VOCAB, size=(BATCH, TIME)).astype(np.int32)
    kernels, gaps, denormals = {}, {}, "unknown"
    for arch in ARCHITECTURES:
        spec = ModelSpec(arch, VOCAB, EMBEDDING, HIDDEN)
        model = backend.build(spec, OptimizerSpec())
        weights = initial_weights(spec, 0)
        model.set_weights(weights)
        logits = predict_logits(model, x)
        gaps[arch] = float(np.max(np.abs(logits - reference_logits(spec, weights, x))))
        kernels[arch] = kernel_of(model)
        denormals = model.denormal_mode()
    watched = thread_settings("")  # the variables the harness sets for worker slots
    return Diagnosis(
        backend=job.backend,
        framework=framework,
        version=version,
        device=backend.accelerator() or cpu_model(),
        gpu=backend.accelerator() is not None,
        cpus=os.cpu_count() or 1,
        threads={name: os.environ[name] for name in watched if name in os.environ},
        denormal_mode=denormals,
        kernels=kernels,
        parity=gaps,
    )


def main(job_path: str) -> int:
    emit(probe(read_job(ProbeJob, job_path)))
    return 0


if __name__ == "__main__":
    leave(main(sys.argv[1]))
