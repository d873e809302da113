"""The reconstruction grid of the paper (input, masked input, GMAE, MAE): one row per image, one column per
kind of image, written as PNG and PDF. ``gmae eval recon`` calls it for every mask ratio it evaluates."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np


def plot_recon_grid(columns: Mapping[str, Sequence[np.ndarray]], out_stem: str | os.PathLike,
                    title: Optional[str] = None, cell_inches: float = 1.6, dpi: int = 150) -> list[Path]:
    """Draw an images grid and save ``<out_stem>.png`` and ``<out_stem>.pdf``.

    columns: ordered {column title: [n images, each [H, W, 3] uint8 or float in [0, 1]]}, e.g.
    {"input": ..., "masked input (75%)": ..., "GMAE": ..., "MAE": ...}; every column holds the same n >= 1
    images in row order. Returns the two paths.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not columns:
        raise ValueError("no column to draw")
    counts = {k: len(v) for k, v in columns.items()}
    n = next(iter(counts.values()))
    if n < 1 or any(c != n for c in counts.values()):
        raise ValueError(f"every column needs the same number (>= 1) of images, got {counts}")
    ncols = len(columns)
    head_lines = max(str(k).count("\n") + 1 for k in columns)
    # exact layout in inches: square cells, a small gap, room above for column titles (8 pt lines) and the title
    gap, margin = 0.06, 0.05
    top = 0.16 * head_lines + 0.1 + (0.3 if title else 0.0)
    width = ncols * cell_inches + (ncols - 1) * gap + 2 * margin
    height = n * cell_inches + (n - 1) * gap + top + margin
    fig, axes = plt.subplots(n, ncols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=margin / width, right=1 - margin / width, bottom=margin / height, top=1 - top / height,
                        wspace=gap / cell_inches, hspace=gap / cell_inches)
    for c, (name, imgs) in enumerate(columns.items()):
        for r, img in enumerate(imgs):
            ax = axes[r][c]
            arr = np.asarray(img)
            ax.imshow(arr if arr.dtype == np.uint8 else np.clip(arr, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if r == 0:
                ax.set_title(name, fontsize=8, pad=3)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.06 / height, va="top")
    stem = Path(out_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
