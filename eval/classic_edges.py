"""Classic edge baselines for BSDS500: write PRED_DIR/<id>.png soft edge maps for BSDS_DIR/images/<id>.jpg.

    gmae eval classic-edges --data BSDS_DIR --method sobel|canny --out PRED_DIR [--config classic_edges/sobel]

Score them with ``gmae eval bsds --pred PRED_DIR --gt BSDS_DIR/groundTruth --model-name sobel``. Settings:
:class:`ClassicEdgesConfig` (``configs/classic_edges/{sobel,canny}.yaml``).

sobel: the Sobel gradient magnitude of the grey image (``skimage.filters.sobel``), divided by its maximum over the
  image, then the structured-edge NMS (``eval.edge_nms.edge_nms``, r=1, s=5, m=1.01) that CNN maps get.
canny: ``skimage.feature.canny`` made soft by sweeping its thresholds. For each scale sigma (default 1, 2, 4) it is
  run at K high thresholds h_k = k / (K + 1) * M_sigma (k = 1..K, M_sigma the largest Gaussian-smoothed Sobel
  magnitude of the image) with the low threshold at 0.4 h_k; raising both thresholds only removes edge pixels, so
  the fraction of runs in which a pixel is an edge is a soft map whose level sets are Canny outputs
  (E >= t  <=>  an edge at h = t * M_sigma, up to the 1/K grid). The soft maps of the scales are averaged, which
  favours edges present at several scales; Canny output is already thin, so no further NMS is applied (the
  benchmark thins the binarised maps anyway). The BSDS reference number for Canny (.600/.640/.580) comes from a
  different (MATLAB) implementation and scale choice, so expect a comparable, not identical, score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut
from gmae.errors import InputError

METHODS = ("sobel", "canny")
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def _grey(path: Path) -> np.ndarray:
    from gmae.data.images import load_rgb

    return np.asarray(load_rgb(path).convert("L"), np.float64) / 255.0


def sobel_edges(grey: np.ndarray) -> np.ndarray:
    """(H, W) grey image in [0, 1] -> (H, W) NMS-ed Sobel soft edge map in [0, 1]."""
    from skimage.filters import sobel

    from eval.edge_nms import edge_nms

    mag = sobel(grey)
    mag = mag / max(float(mag.max()), 1e-12)
    return np.clip(edge_nms(mag), 0.0, 1.0)


def canny_edges(grey: np.ndarray, sigmas: tuple[float, ...] = (1.0, 2.0, 4.0), levels: int = 32,
                low_ratio: float = 0.4) -> np.ndarray:
    """(H, W) grey image in [0, 1] -> (H, W) soft Canny map in [0, 1] (threshold sweep, averaged over scales)."""
    from scipy import ndimage as ndi
    from skimage.feature import canny

    out = np.zeros(grey.shape, np.float64)
    for sigma in sigmas:
        smooth = ndi.gaussian_filter(grey, sigma)
        # skimage.feature.canny thresholds the unscaled ndi.sobel magnitude of the smoothed image.
        top = float(np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1)).max())
        if top <= 0:
            continue
        hits = np.zeros(grey.shape, np.int32)
        for k in range(1, levels + 1):
            high = k / (levels + 1) * top
            hits += canny(grey, sigma=sigma, low_threshold=low_ratio * high, high_threshold=high)
        out += hits / levels
    return out / len(sigmas)


def write_predictions(bsds_dir: str | Path, out_dir: str | Path, method: str) -> list[Path]:
    """Write OUT/<id>.png for every BSDS_DIR/images/<id>.{jpg,jpeg,png}; returns the written paths."""
    from PIL import Image

    from gmae.io import atomic_write

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    img_dir = Path(bsds_dir) / "images"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"image directory not found: {img_dir} (expected BSDS_DIR/images/<id>.jpg)")
    paths = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    if not paths:
        raise ValueError(f"no .jpg/.png images in {img_dir}")
    fn = sobel_edges if method == "sobel" else canny_edges
    out_dir = Path(out_dir)
    written = []
    for p in paths:
        soft = fn(_grey(p))
        png = Image.fromarray(np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8))
        target = out_dir / f"{p.stem}.png"
        atomic_write(target, lambda f: png.save(f, format="PNG"))
        written.append(target)
    return written


@dataclass
class ClassicEdgesDataConfig:
    root: str = "???"  # BSDS folder holding images/<id>.jpg; "???" = must be given


@dataclass
class ClassicEdgesConfig:
    method: str = "???"  # sobel | canny
    data: ClassicEdgesDataConfig = field(default_factory=ClassicEdgesDataConfig)
    # the folder of <id>.png soft edge maps (nothing else .png is written there)
    run: EvalRunConfig = field(default_factory=lambda: EvalRunConfig(out_dir="runs/classic_edges"))


def validate(cfg: ClassicEdgesConfig) -> None:
    if cfg.method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {cfg.method!r}")


def evaluate(cfg: ClassicEdgesConfig, ctx: Context) -> Outcome:
    """Edge maps only: scoring them is ``gmae eval bsds``'s job, so no records."""
    written = write_predictions(cfg.data.root, ctx.out_dir, cfg.method)
    return Outcome([], f"{cfg.method}: wrote {len(written)} edge maps to {ctx.out_dir}", {"n_images": len(written)})


command = EvalCommand("classic-edges", ClassicEdgesConfig, evaluate, validate=validate, checkpoint="none",
                      shortcuts=(Shortcut("--method", "method", "sobel | canny"),),
                      data_help="BSDS folder holding images/<id>.jpg (sets data.root)",
                      config_help="(classic_edges/sobel, classic_edges/canny)")
