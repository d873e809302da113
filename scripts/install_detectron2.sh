#!/usr/bin/env bash
# Install detectron2 for `gmae eval coco` into the active Python environment (or $PYTHON's).
#
#   bash scripts/install_detectron2.sh            # PyPI only (CI): sal-detectron2 0.7.2 repacked as pure Python
#   bash scripts/install_detectron2.sh --source   # official source build from GitHub (compiles detectron2._C)
#
# Needs torch and torchvision installed first (pip install -e . does that). The PyPI route downloads one
# sha256-pinned wheel, drops its CPython-3.10 _C extension and stray `tools` package, and installs the rest with
# --no-deps next to its pure-Python requirements; why each step is safe is written in docs/coco.md#installing-detectron2.
set -euo pipefail

PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=pypi
for arg in "$@"; do
  case "$arg" in
    --source) MODE=source ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install_detectron2.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

"$PYTHON" -c "import torch, torchvision" 2>/dev/null || {
  echo "install_detectron2.sh: install torch and torchvision first (pip install -e .)" >&2; exit 1; }

if [ "$MODE" = pypi ] && "$PYTHON" -c "import detectron2" 2>/dev/null \
    && ! "$PYTHON" -m pip show sal-detectron2 >/dev/null 2>&1; then
  # e.g. an official source build: keep it (eval.coco runs on either)
  echo "install_detectron2.sh: a detectron2 not installed by this script is present; leaving it as it is"
  (cd "$ROOT" && "$PYTHON" -m eval.coco.install check)
  exit 0
fi

# Runtime requirements (upstream detectron2's setup.py list); torch, numpy etc. are left as they are.
mapfile -t REQS < <(cd "$ROOT" && "$PYTHON" -m eval.coco.install requirements)

if [ "$MODE" = source ]; then
  "$PYTHON" -m pip install "${REQS[@]}"
  # the repacked PyPI wheel owns the same detectron2/ files
  "$PYTHON" -m pip uninstall -y sal-detectron2 >/dev/null 2>&1 || true
  "$PYTHON" -m pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'
else
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  "$PYTHON" -m pip install "${REQS[@]}"
  # The only file on PyPI is tagged cp310; download it as such (its Python code runs on 3.11 too; checked).
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.10 \
      --dest "$TMP" "sal-detectron2==0.7.2"
  WHEEL=$(cd "$ROOT" && "$PYTHON" -m eval.coco.install repack "$TMP"/sal_detectron2-0.7.2-*.whl "$TMP/purepy")
  "$PYTHON" -m pip install --no-deps --force-reinstall "$WHEEL"
fi

(cd "$ROOT" && "$PYTHON" -m eval.coco.install check)
