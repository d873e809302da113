#!/usr/bin/env bash
# The renderer's GPU check in one command, for a CUDA machine without network (see benchmarks/gpu_check.py).
# Bring the wheel along first (here, with network; wheels/ is not committed):
#   pip download gsplat==1.5.3 --no-deps -d wheels/
# Then, on the CUDA machine, from the repository root:
#   bash benchmarks/gpu_check.sh [wheel] [out_dir]
# Writes gpu_check.json, gpu_check.txt and gpu_check.log to out_dir (default $OUT, else out/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
WHEEL="${1:-wheels/gsplat-1.5.3-py3-none-any.whl}"
OUT_DIR="${2:-${OUT:-out/gpu_check}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
"$PY" benchmarks/gpu_check.py --wheel "$WHEEL" --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/gpu_check.log"
