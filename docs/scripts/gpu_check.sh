#!/usr/bin/env bash
# The GPU check, in one command on the lent GPU machine (docs/benchmarks.md, "Running the GPU
# check"): after `../shared/gpu/prepare.sh study` here, and its command prefix there (the wheels
# into /tmp/site, BENCH_DATA at the IMDB archive cut to 2,500 reviews per label and split):
#   1. `bench doctor` for the three GPU backends: versions, device, kernels, logit parity;
#   2. the study imdb-gpu-quick end to end (`bench run`, SQLite stores: the machine has no MLflow
#      server), then `bench report` from its stores;
#   3. `bench perf --quick` for the GPU backends on the LSTM (its scaling and fast paths).
# Sized for 9 minutes on one H100 (not yet measured: no GPU was lent while it was written).
#
#   OUT=/path/to/results docs/scripts/gpu_check.sh
#
# Writes 7 files to $OUT as each piece ends (a run cut short keeps what finished; the machine
# returns at most 8, 16 MiB each): environment.txt, doctor.txt, study.log (`bench run`, then
# `bench report`), study.tar.gz (the report folder, bench.log and every run's log and job file;
# not the runs' figures), stores.tar.gz (optuna.db, mlflow.db: `bench report` and `mlflow ui`
# read them here), perf.log, perf.tar.gz (benchmarks.md, perf.json, the charts, the measuring
# processes' logs). Any failing command ends it (set -e), its output last on the terminal.
#
# GPU_CHECK_REDUCED=1: the same commands on a CPU in about two minutes, so that the script
# cannot rot (tests/test_gpu_check.py): one tiny LSTM search on torch and keras-torch, doctor
# and perf on torch alone at toy sizes, torch.compile off. GPU_CHECK_WORKERS: worker slots
# sharing the GPU in the full form (default 3; each slot runs one job at a time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${OUT:?set OUT to the folder the results go to}"
: "${BENCH_DATA:?set BENCH_DATA to the IMDB archive (../shared/gpu/prepare.sh study prints how)}"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-160}  # logs as they happen, tables unsqueezed
bench() { "$python" -m harness "$@"; }
started=$SECONDS
say() { printf '[gpu_check %4ds] %s\n' $((SECONDS - started)) "$*"; }
mkdir -p "$OUT"
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")

if [ "${GPU_CHECK_REDUCED:-0}" = 1 ]; then
  mode="reduced (CPU)"
  study=$work/imdb-gpu-quick-reduced.toml
  cat > "$study" <<'TOML'
[study]
name = "imdb-gpu-quick-reduced"
description = "gpu_check.sh reduced: one tiny LSTM search pair, for a CPU"
architectures = ["lstm"]
backends = ["torch", "keras-torch"]
baseline = "torch"
epochs = 2
sized_for = "gpu"

[budget]
trials = 1

[objective]
metric = "val_accuracy"
direction = "maximize"

[pruner]
type = "none"

[data]
subset = 100

[retrain]
seeds = 2
cross_backend = false

[fixed]
num_words = 1000
embedding_dim = 8
sequence_length = 32

[search]
hidden_size = { low = 4, high = 16, step = 4, default = 8 }
TOML
  doctor=(--backend torch)
  anyway=(--on-cpu)  # the reduced study is sized for a GPU too, as the real one is
  perf=(--arch simple_rnn --backend torch --steps 1 --passes 1 --sequence-length 8 --batch-size 8)
  export TORCHDYNAMO_DISABLE=1  # perf's torch.compile point: its compiling alone is 30 s on a CPU
  workers=1
else
  mode="full (GPU)"
  study=studies/imdb-gpu-quick.toml
  doctor=(--backend torch --backend keras-jax --backend keras-torch)
  anyway=()
  perf=(--arch lstm --backend torch --backend keras-jax --backend keras-torch)
  workers=${GPU_CHECK_WORKERS:-3}
fi
say "mode: $mode; study: $study; data: $BENCH_DATA; scratch: $work; results: $OUT"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "mode: $mode"
  "$python" -c 'import platform, sys; print("python:", sys.version.split()[0], platform.machine())'
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: none"; fi
} > "$OUT/environment.txt" 2>&1
say "environment -> $OUT/environment.txt"

say "bench doctor ${doctor[*]}"
bench doctor "${doctor[@]}" 2>&1 | tee "$OUT/doctor.txt"
say "doctor -> $OUT/doctor.txt"

stores=$work/study
storage=sqlite:///$stores/optuna.db
tracking=sqlite:///$stores/mlflow.db
say "bench run --study $study (workers $workers)"
bench run --study "$study" --data "$BENCH_DATA" --out "$stores" --storage "$storage" \
  --tracking-uri "$tracking" --workers "$workers" "${anyway[@]}" 2>&1 | tee "$OUT/study.log"
say "bench report --study $study"
bench report --study "$study" --out "$stores" --storage "$storage" --tracking-uri "$tracking" \
  2>&1 | tee -a "$OUT/study.log"
tar -czf "$OUT/study.tar.gz" -C "$work" --exclude=study/artifacts --exclude='study/jobs/*.png' \
  --exclude='*.db' study
tar -czf "$OUT/stores.tar.gz" -C "$work" study/optuna.db study/mlflow.db
say "study -> $OUT/study.log; report and logs -> $OUT/study.tar.gz; stores -> $OUT/stores.tar.gz"

say "bench perf --quick ${perf[*]}"
bench perf --quick "${perf[@]}" --data "$BENCH_DATA" --out "$work/perf" 2>&1 | tee "$OUT/perf.log"
tar -czf "$OUT/perf.tar.gz" -C "$work" perf
say "perf -> $OUT/perf.log; tables, perf.json and charts -> $OUT/perf.tar.gz"

rm -rf "$work"
say "done: $(ls "$OUT" | wc -l) files in $OUT"
