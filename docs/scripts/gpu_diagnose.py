"""Why the first H200 figures look as they do: bare recurrent layers, timed in isolation.

Run on a GPU machine from the repository root: `python docs/scripts/gpu_diagnose.py OUT_FOLDER`.
Writes OUT_FOLDER/gpu_diagnose.json. Three questions, each answered by timing the recurrent layer
alone (forward + backward, no embedding, head or optimiser; warm-up, then the median of repeats):

1. Is PyTorch's cuDNN RNN slower than JAX's? The same cuDNN LSTM through `jax.experimental.rnn`
   (what Keras on JAX calls) against `torch.nn.LSTM`, at both shapes of gpu_figures.py.
2. Does TF32 explain it? PyTorch with `torch.backends.cudnn.allow_tf32` on (its default) and
   off; JAX with its default float32 matmul precision and with "highest".
3. Is a `lax.scan` GRU (Keras on JAX's own GRU) faster than cuDNN's GRU at these sizes?
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from gpu_figures import SHAPES, cuda_event_ms, quartiles  # noqa: E402  (the same two shapes)

WARMUP, REPEATS = 20, 100


def torch_layer(cell: str, shape: tuple, tf32: bool, bidirectional: bool = False) -> dict:
    import torch
    from torch import nn

    torch.backends.cudnn.allow_tf32 = tf32
    _, batch, length, hidden, embedding = shape
    layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](
        embedding, hidden, batch_first=True, bidirectional=bidirectional
    ).cuda()
    x = torch.randn(batch, length, embedding, device="cuda", requires_grad=True)

    def step() -> None:
        out, _ = layer(x)
        out[:, -1].sum().backward()

    times = cuda_event_ms(step, WARMUP, REPEATS)
    torch.backends.cudnn.allow_tf32 = True
    return quartiles(times)


def jax_layer(cell: str, shape: tuple, precision: str) -> dict:
    import jax
    import jax.numpy as jnp
    from keras import activations

    # The module, not the `rnn` function that keras.src.backend.jax also exports.
    keras_jax_rnn = importlib.import_module("keras.src.backend.jax.rnn")

    _, batch, length, hidden, embedding = shape
    key = jax.random.PRNGKey(0)
    gates = 4 if cell == "lstm" else 3
    kernel = jax.random.normal(key, (embedding, gates * hidden)) * 0.05
    recurrent = jax.random.normal(key, (hidden, gates * hidden)) * 0.05
    bias = jnp.zeros((gates * hidden,) if cell == "lstm" else (2, gates * hidden))
    x = jax.random.normal(key, (batch, length, embedding))
    h0 = jnp.zeros((batch, hidden))

    def loss(x, kernel, recurrent, bias):
        if cell == "lstm":
            last, _, _ = keras_jax_rnn.lstm(
                x, h0, h0, None, kernel, recurrent, bias, activations.tanh, activations.sigmoid
            )
        else:
            last, _, _ = keras_jax_rnn.gru(
                x, h0, None, kernel, recurrent, bias, activations.tanh, activations.sigmoid
            )
        return last.sum()

    # "default": no context at all, as Keras runs; naming "default" explicitly made
    # jax.experimental.rnn refuse the LSTM ("bfloat16 support not implemented").
    context = (
        contextlib.nullcontext()
        if precision == "default"
        else jax.default_matmul_precision(precision)
    )
    with context:
        step = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
        for _ in range(WARMUP):
            jax.block_until_ready(step(x, kernel, recurrent, bias))
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            jax.block_until_ready(step(x, kernel, recurrent, bias))
            times.append((time.perf_counter() - started) * 1e3)
        hlo = step.lower(x, kernel, recurrent, bias).compile().as_text().lower()
    return {**quartiles(times), "cudnn_in_program": "cudnn" in hlo}


def main(out: Path) -> None:
    import jax
    import torch

    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    facts = {
        "gpu": torch.cuda.get_device_name(),
        "jax": jax.__version__,
        "torch": torch.__version__,
    }

    def keep(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        (out / "gpu_diagnose.json").write_text(json.dumps({"facts": facts, "rows": rows}, indent=1))

    for shape in SHAPES:
        for cell in ("lstm", "gru"):
            for tf32 in (True, False):
                keep(
                    {
                        "stack": "torch nn",
                        "cell": cell,
                        "shape": shape[0],
                        "tf32": tf32,
                        **torch_layer(cell, shape, tf32),
                    }
                )
            for precision in ("default", "highest"):
                try:
                    figures = jax_layer(cell, shape, precision)
                except Exception as error:  # noqa: BLE001 - recorded, the rest still runs
                    figures = {"error": f"{type(error).__name__}: {error}"[:300]}
                keep(
                    {
                        "stack": "jax keras.src rnn",
                        "cell": cell,
                        "shape": shape[0],
                        "precision": precision,
                        **figures,
                    }
                )
    for row in keras_jax_reversed(out):
        keep(row)


def keras_jax_reversed(out: Path) -> list[dict]:
    """gpu_figures.py's Keras-on-JAX LSTM child with the shapes in the other order: is the
    smaller model's slower step a property of the shape or of going first?"""
    import os
    import subprocess

    code = (
        "import json, gpu_figures as g; g.SHAPES = g.SHAPES[::-1]; "
        "print(json.dumps(g.keras_child('lstm')))"
    )
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}",
    }
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if child.returncode:
        return [{"stack": "keras-jax reversed", "error": child.stderr.splitlines()[-5:]}]
    return [
        {**row, "stack": "keras-jax, study shape first"}
        for row in json.loads(child.stdout.splitlines()[-1])
    ]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
