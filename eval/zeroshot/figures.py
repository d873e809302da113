"""Figures of the zero-shot read-outs, written as PNG + PDF: the layer figure (partial renders of the nearest K
Gaussians, depth slices and the grey depth render), the edge hierarchy (l = 32 / 16 / 8 / 4) and figure-ground
examples. Built on ``matplotlib.figure.Figure`` directly (no pyplot state, no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from gmae.io import atomic_write

__all__ = ["edge_hierarchy_figure", "figure_ground_figure", "layer_figure", "save_figure"]

_PANEL = 1.6  # inches per panel


def save_figure(fig: Figure, stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf atomically; returns both paths."""
    stem = Path(stem)
    out = []
    for fmt in ("png", "pdf"):
        out.append(atomic_write(stem.with_name(f"{stem.name}.{fmt}"),
                                lambda f, fmt=fmt: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")))
    return out


def _grid(rows: int, cols: int, aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(cols * _PANEL, rows * _PANEL * aspect), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    return fig, axes


def _show(ax, img, title: Optional[str] = None, grey: bool = False) -> None:
    img = np.clip(np.asarray(img, np.float64), 0.0, 1.0)
    if grey or img.ndim == 2:
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(img, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=7)


def layer_figure(inputs: np.ndarray, cumulative: np.ndarray, ks: Sequence[int], slice_rgb: np.ndarray,
                 slices: Sequence[tuple[int, int]], depth_grey: np.ndarray, ids: Sequence[str] = (),
                 n_total: Optional[int] = None) -> Figure:
    """One row per image: input [S, S, 3], the nearest K renders (cumulative [B, len(ks), S, S, 3]),
    depth slices (slice_rgb [B, len(slices), S, S, 3]) and the grey depth-rank render (depth_grey [B, S, S])."""
    b = inputs.shape[0]
    cols = 1 + len(ks) + len(slices) + 1
    fig, axes = _grid(b, cols)
    for i in range(b):
        top = i == 0
        _show(axes[i, 0], inputs[i], (ids[i] if i < len(ids) else "input") if top else
              (ids[i] if i < len(ids) else None))
        for j, k in enumerate(ks):
            title = f"first {k}" + (f" / {n_total}" if n_total else "")
            _show(axes[i, 1 + j], cumulative[i, j], title if top else None)
        for j, (a, e) in enumerate(slices):
            _show(axes[i, 1 + len(ks) + j], slice_rgb[i, j], f"ranks [{a}, {e})" if top else None)
        _show(axes[i, cols - 1], depth_grey[i], "depth rank (near = dark)" if top else None, grey=True)
    return fig


def edge_hierarchy_figure(inputs: Sequence[np.ndarray], level_edges: Sequence[dict], levels: Sequence[int],
                          soft: Sequence[np.ndarray], ids: Sequence[str] = ()) -> Figure:
    """One row per image: input, the binary edges of each level l (``level_edges[i][l]`` [h, w]), coarse to fine
    as given in ``levels``, and the fused soft map after NMS (``soft[i]`` at the image's size)."""
    b = len(inputs)
    cols = 2 + len(levels)
    fig, axes = _grid(b, cols)
    for i in range(b):
        top = i == 0
        _show(axes[i, 0], inputs[i], ids[i] if i < len(ids) else ("input" if top else None))
        for j, lv in enumerate(levels):
            _show(axes[i, 1 + j], 1.0 - np.asarray(level_edges[i][lv], np.float64), f"l = {lv}" if top else None,
                  grey=True)
        _show(axes[i, cols - 1], 1.0 - np.asarray(soft[i], np.float64), "fused, NMS" if top else None, grey=True)
    return fig


def figure_ground_figure(inputs: Sequence[np.ndarray], masks: Sequence[np.ndarray], soft: Sequence[np.ndarray],
                         ids: Sequence[str] = (), splits: Sequence[int] = ()) -> Figure:
    """One row per image: input, ground-truth mask, soft foreground map (front-layer alpha), its mask at 0.5."""
    b = len(inputs)
    fig, axes = _grid(b, 4)
    for i in range(b):
        top = i == 0
        _show(axes[i, 0], inputs[i], ids[i] if i < len(ids) else ("input" if top else None))
        _show(axes[i, 1], masks[i], "ground truth" if top else None, grey=True)
        split = f" (front {splits[i]})" if i < len(splits) else ""
        _show(axes[i, 2], soft[i], ("front-layer alpha" if top else "") + split or None, grey=True)
        _show(axes[i, 3], np.asarray(soft[i]) >= 0.5, ">= 0.5" if top else None, grey=True)
    return fig
