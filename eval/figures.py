"""Figures drawn by running a model (the report only collects them): ``gmae eval figures`` and the
reconstruction grid of ``gmae eval recon``.

    gmae eval figures --checkpoint GMAE_CKPT --data IMAGE_DIR --out DIR [--config figures/default]
                      ['scale_effect={"c = 0.5": CKPT_A, "c = 1": CKPT_B}'] [key=value ...]

* OUT/centres.{png,pdf}: the paper's xy-distribution figure: each image (eval transform: resize + centre crop
  to the model's input size) above the 2-D projected centres of its k Gaussians at mask ratio 0, brightness =
  opacity;
* OUT/scale_effect.{png,pdf} (when ``scale_effect`` names models): the inputs and, one row per model, their
  reconstructions at mask ratio 0, for models that differ in the maximum scale c.
The images are the first ``max_images`` of ``data.root`` sorted by name. No result records.
Settings: :class:`FiguresConfig` (``configs/figures/default.yaml``).

:func:`plot_recon_grid` draws the reconstruction grid (input, masked input, GMAE, MAE) that ``gmae eval recon``
writes for every mask ratio it evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut
from eval.zeroshot.common import validate_device
from gmae.errors import InputError


@dataclass
class FiguresDataConfig:
    root: str = "???"  # a folder of images; the first max_images (sorted by name) are shown


@dataclass
class FiguresConfig:
    max_images: int = 6
    # {row label: checkpoint} of models that differ in the maximum scale c; empty: no scale-effect figure
    scale_effect: Dict[str, str] = field(default_factory=dict)
    data: FiguresDataConfig = field(default_factory=FiguresDataConfig)
    run: EvalRunConfig = field(default_factory=lambda: EvalRunConfig(out_dir="runs/figures"))


def validate(cfg: FiguresConfig) -> None:
    from gmae.engine.checkpoint import require_file

    validate_device(cfg)
    if cfg.max_images < 1:
        raise InputError(f"max_images must be >= 1, got {cfg.max_images}")
    for label, path in cfg.scale_effect.items():
        require_file(path, f"scale_effect[{label!r}] checkpoint")


def load_images(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """[B, 3, size, size] ImageNet-normalised (the evaluation transform)."""
    from gmae.data.images import load_rgb
    from gmae.data.transforms import eval_transform

    tf = eval_transform(size)
    return torch.stack([tf(load_rgb(p)) for p in paths])


def _grid(rows: int, cols: int, width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


@torch.no_grad()
def centres_figure(model, model_name: str, x: torch.Tensor, size: int, out: Path) -> list[Path]:
    """Inputs x [B, 3, S, S] above the projected centres of their Gaussians (brightness = opacity)."""
    from gmae.data.transforms import denormalize
    from gmae.render import project

    from eval.zeroshot.figures import save_figure

    g = model.predict_gaussians(x, mask_ratio=0.0)
    uv = project(g, size, size).means2d.cpu().numpy()
    op = g.opacities.cpu().numpy()
    b = x.shape[0]
    fig, axes = _grid(2, b, 1.8 * b, 3.8)
    for i in range(b):
        axes[0, i].imshow(denormalize(x[i]).permute(1, 2, 0).cpu().numpy())
        ax = axes[1, i]
        ax.set_facecolor("black")
        ax.scatter(uv[i, :, 0], uv[i, :, 1], s=4, c=op[i], cmap="gray", vmin=0, vmax=1)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel(f"centres (k={g.means.shape[1]})")
    fig.suptitle(f"Gaussian centres, brightness = opacity ({model_name})", fontsize=8)
    return save_figure(fig, out)


@torch.no_grad()
def scale_effect_figure(models: Sequence[tuple[str, torch.nn.Module]], x: torch.Tensor, out: Path) -> list[Path]:
    """Inputs x [B, 3, S, S] and one row of mask-ratio-0 reconstructions per (label, model)."""
    from gmae.data.transforms import denormalize

    from eval.zeroshot.figures import save_figure

    b = x.shape[0]
    fig, axes = _grid(len(models) + 1, b, 1.6 * b, 1.6 * (len(models) + 1))
    for i in range(b):
        axes[0, i].imshow(denormalize(x[i]).permute(1, 2, 0).cpu().numpy())
    for r, (label, model) in enumerate(models, start=1):
        rgb = model.reconstruct(x, mask_ratio=0.0)["rgb"].cpu()
        for i in range(b):
            axes[r, i].imshow(rgb[i].permute(1, 2, 0).numpy())
        axes[r, 0].set_ylabel(label, fontsize=7)
    axes[0, 0].set_ylabel("input", fontsize=7)
    fig.suptitle("Effect of the maximum scale c (mask ratio 0)", fontsize=8)
    return save_figure(fig, out)


def evaluate(cfg: FiguresConfig, ctx: Context) -> Outcome:
    from gmae.data.images import ImageListDataset
    from gmae.engine.checkpoint import load_pretrained_model

    paths = ImageListDataset(cfg.data.root).paths[:cfg.max_images]
    model, model_cfg = load_pretrained_model(ctx.checkpoint, needs="predict_gaussians")
    size = model_cfg.data.img_size
    x = load_images(paths, size).to(ctx.device)
    written = centres_figure(model.to(ctx.device), model_cfg.model.name, x, size, ctx.out_dir / "centres")
    if cfg.scale_effect:
        models = [(label, load_pretrained_model(path, needs="reconstruct")[0].to(ctx.device))
                  for label, path in cfg.scale_effect.items()]
        written += scale_effect_figure(models, x, ctx.out_dir / "scale_effect")
    return Outcome([], f"figures of {len(paths)} images -> {', '.join(str(p) for p in written)}",
                   {"files": [str(p) for p in written]})


command = EvalCommand("figures", FiguresConfig, evaluate, validate=validate,
                      shortcuts=(Shortcut("--max-images", "max_images", "images shown (the first ones by name)"),
                                 Shortcut("--device", "run.device", "auto | cpu | cuda")),
                      data_help="a folder of images (sets data.root)", config_help="(figures/default)")


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
