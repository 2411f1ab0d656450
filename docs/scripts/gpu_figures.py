"""The first GPU figures: Keras on JAX and on PyTorch, the PyTorch harness, and the cuDNN ceiling.

Run on a GPU machine from the repository root (the data through `BENCH_DATA`):

    python docs/scripts/gpu_figures.py OUT_FOLDER

It writes OUT_FOLDER/gpu_figures.json and prints one line per measurement. Each stack is timed
the same way on the same real IMDB batches: a warm-up pass, then `PASSES` timed passes of
`STEPS` batches, each pass ended by a device synchronisation; the figure is the median pass over
STEPS, with the interquartile range. The ceiling is PyTorch's own `nn.LSTM` (or RNN/GRU) on
cuDNN with no embedding, head or optimiser: forward and backward of the recurrent layer alone,
timed with CUDA events the DeepBench way (warm-up, synchronised, median of repeats).

Keras backends run in child processes (`KERAS_BACKEND` must be set before Keras is imported);
each child measures one architecture at both shapes, so its peak GPU memory is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ARCHITECTURES = ("simple_rnn", "lstm", "gru", "bilstm")
# (name, batch, sequence_length, hidden, embedding): bench perf's main shape, then the default
# configuration of the full `imdb` study.
SHAPES = (("perf", 64, 200, 64, 32), ("study", 64, 200, 256, 64))
STEPS, PASSES, NUM_WORDS = int(os.environ.get("GPU_FIGURES_STEPS", 20)), 7, 10_000
CEILING_REPEATS, CEILING_WARMUP = 100, 20


def batches_for(sequence_length: int, batch: int):
    from harness.data.classification import load_imdb
    from harness.training import epoch_batches

    data = load_imdb(None, num_words=NUM_WORDS, sequence_length=sequence_length)
    order = [i for i in epoch_batches(len(data.train), batch, 0, 1) if len(i) == batch][:STEPS]
    return data, order


def summarise(pass_seconds: list[float]) -> dict[str, float]:
    return quartiles(list(np.asarray(pass_seconds) / STEPS * 1e3))


# --- PyTorch: the harness's own training loop, and the bare cuDNN ceiling -----------------------


def torch_harness(arch: str, shape: tuple) -> dict[str, object]:
    import torch

    from backends import get_backend
    from harness.initialization import initial_weights
    from harness.model_spec import ModelSpec, OptimizerSpec
    from harness.training import train_epoch

    _, batch, length, hidden, embedding = shape
    backend = get_backend("torch")
    data, order = batches_for(length, batch)
    spec = ModelSpec(arch, NUM_WORDS, embedding_dim=embedding, hidden_size=hidden)
    backend.seed(0)
    torch.cuda.reset_peak_memory_stats()
    model = backend.build(spec, OptimizerSpec())
    model.set_weights(initial_weights(spec, 0))
    seconds = []
    for index in range(PASSES + 1):
        started = time.perf_counter()
        train_epoch(model, data.train, order)
        backend.synchronize()
        if index:
            seconds.append(time.perf_counter() - started)
    return {
        **summarise(seconds),
        "kernel": model.kernel(),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
    }


def cudnn_ceiling(arch: str, shape: tuple) -> dict[str, object]:
    """Forward and backward of PyTorch's own recurrent layer alone, timed with CUDA events."""
    import torch
    from torch import nn

    _, batch, length, hidden, embedding = shape
    layer_type = {"simple_rnn": nn.RNN, "gru": nn.GRU}.get(arch, nn.LSTM)
    layer = layer_type(embedding, hidden, batch_first=True, bidirectional=arch == "bilstm").cuda()
    x = torch.randn(batch, length, embedding, device="cuda", requires_grad=True)

    def step() -> None:
        out, _ = layer(x)
        out[:, -1].sum().backward()

    return quartiles(cuda_event_ms(step, CEILING_WARMUP, CEILING_REPEATS))


def cuda_event_ms(step, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of `repeats` calls of `step` after `warmup` untimed ones, the DeepBench way."""
    import torch

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def quartiles(times_ms: list[float]) -> dict[str, float]:
    q1, median, q3 = np.percentile(times_ms, [25, 50, 75])
    return {"step_ms": float(median), "step_ms_q1": float(q1), "step_ms_q3": float(q3)}


# --- Keras on JAX / PyTorch: model.fit, the backend's own compiled step -------------------------


def keras_child(arch: str) -> list[dict[str, object]]:
    """In a child with KERAS_BACKEND set: `fit` on both shapes, the kernel that ran, peak memory."""
    import keras

    from backends.keras_model import build_keras_model, canonical_variables, keras_optimizer
    from harness.initialization import initial_weights
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = keras.backend.backend()
    rows = []
    for shape in SHAPES:
        name, batch, length, hidden, embedding = shape
        data, order = batches_for(length, batch)
        x = np.concatenate([data.train.x[i] for i in order])
        y = np.concatenate([data.train.y[i] for i in order])
        spec = ModelSpec(arch, NUM_WORDS, embedding_dim=embedding, hidden_size=hidden)
        keras.utils.set_random_seed(0)
        model = build_keras_model(spec)
        for key, variable in canonical_variables(spec, model).items():
            variable.assign(initial_weights(spec, 0)[key])
        model.compile(
            optimizer=keras_optimizer(OptimizerSpec()),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
        )
        seconds: list[float] = []

        class Timer(keras.callbacks.Callback):
            def __init__(self, seconds: list[float]) -> None:
                super().__init__()
                self.seconds = seconds

            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                float(logs["loss"])  # a value from the device: the epoch's work is done
                synchronize(backend)
                self.seconds.append(time.perf_counter() - self.started)

        model.fit(x, y, batch, PASSES + 1, verbose=0, callbacks=[Timer(seconds)], shuffle=False)
        parity = parity_gap(spec, model, data.test.x[:batch])
        rows.append(
            {
                "stack": f"keras-{backend}",
                "architecture": arch,
                "shape": name,
                **summarise(seconds[1:]),
                "kernel": kernel_that_ran(backend, model, x[:batch]),
                "peak_gpu_mib": peak_gpu_mib(backend),
                "logit_gap_vs_cpu_float32": parity,
            }
        )
    return rows


def synchronize(backend: str) -> None:
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    # JAX: `float(logs["loss"])` above already waited for the step's result.


def peak_gpu_mib(backend: str) -> float:
    """The process's peak: both shapes ran in this child, the larger one last."""
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    import jax

    stats = jax.devices()[0].memory_stats() or {}  # None on a CPU
    return stats.get("peak_bytes_in_use", 0) / 2**20


def kernel_that_ran(backend: str, model, x: np.ndarray) -> str:
    """What the framework itself reports: cuDNN RNN ops in torch's profile of a training step,
    a cuDNN custom call in the compiled JAX program of the forward pass."""
    if backend == "torch":
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model.train_on_batch(x, np.zeros(len(x), np.float32))
        names = {event.name for event in prof.events()}
        return "cudnn" if any("cudnn_rnn" in name for name in names) else "generic"
    import jax

    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, n, xs: model.stateless_call(t, n, xs, training=True)[0])
    text = forward.lower(trainable, other, x).compile().as_text()
    if "cudnn" in text.lower():
        return "cudnn"
    return "scan (fused input projection)" if model.name == "gru" else "scan"


def parity_gap(spec, model, x: np.ndarray) -> float:
    """Largest |logit| gap against PyTorch's float32 CPU model with the same trained weights."""
    import torch

    from backends.keras_model import canonical_variables
    from backends.torch_backend import TorchModel
    from harness.model_spec import OptimizerSpec

    reference = TorchModel(spec, OptimizerSpec(), torch.device("cpu"))
    reference.set_weights(
        {k: np.asarray(keras_to_numpy(v)) for k, v in canonical_variables(spec, model).items()}
    )
    ours = np.asarray(model.predict(x, verbose=0))[:, 0]
    return float(np.abs(ours - reference.predict_batch(x)).max())


def keras_to_numpy(variable) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(variable.value)


# --- the driver ---------------------------------------------------------------------------------


def main(out: Path) -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--keras-child":
        print(json.dumps(keras_child(sys.argv[2])), flush=True)
        return
    import torch

    out.mkdir(parents=True, exist_ok=True)
    facts = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "python": sys.version.split()[0],
        "steps": STEPS,
        "passes": PASSES,
    }
    rows: list[dict[str, object]] = []
    batches_for(SHAPES[0][2], SHAPES[0][1])  # tokenise once; children read the cache

    def keep(row: dict[str, object]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "gpu_figures.json").write_text(json.dumps({"facts": facts, "rows": rows}, indent=1))

    for arch in ARCHITECTURES:
        for shape in SHAPES:
            keep(
                {
                    "stack": "cudnn-ceiling",
                    "architecture": arch,
                    "shape": shape[0],
                    **cudnn_ceiling(arch, shape),
                }
            )
            keep(
                {
                    "stack": "torch-harness",
                    "architecture": arch,
                    "shape": shape[0],
                    **torch_harness(arch, shape),
                }
            )
    for backend in ("jax", "torch"):
        for arch in ARCHITECTURES:
            env = {**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
            try:
                child = subprocess.run(
                    [sys.executable, __file__, "--keras-child", arch],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=150,
                )
            except subprocess.TimeoutExpired:
                keep({"stack": f"keras-{backend}", "architecture": arch, "error": "timed out"})
                continue
            if child.returncode != 0:
                keep(
                    {
                        "stack": f"keras-{backend}",
                        "architecture": arch,
                        "error": child.stderr.strip().splitlines()[-15:],
                    }
                )
                continue
            for row in json.loads(child.stdout.strip().splitlines()[-1]):
                keep(row)


if __name__ == "__main__":
    main(Path(sys.argv[-1]) if sys.argv[1] != "--keras-child" else Path("."))
