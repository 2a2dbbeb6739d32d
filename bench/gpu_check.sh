#!/usr/bin/env bash
# One GPU session: the CPU-vs-GPU equality tests (parametrised over "cuda" when visible) and the benchmark at
# Cityscapes sizes (DeepLabv2-R101, random weights, 512x1024, 19 classes). Figures and logs go to $OUT.
# Needs torch, h5py, opencv, pandas; pytest is installed from .whl/ (carried) when missing. No snakemake needed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/esl-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
if ! "$PY" -c "import pytest" 2>/dev/null && [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi -L; "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"; } 2>&1 | tee "$OUT/device.txt"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider --noconftest tests/test_thresholds.py tests/test_entropy.py tests/test_infer.py \
  -k "torch or device or first_pass or normalize" 2>&1 | tee "$OUT/tests_gpu.txt"
timeout "${BENCH_TIMEOUT:-300}" "$PY" bench/run_all.py --gpu --only thresholds,inference,training \
  --json "$OUT/bench_gpu.json" "$@" 2>&1 | tee "$OUT/bench_gpu.txt"
