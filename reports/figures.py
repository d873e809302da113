"""Figures that need a model, not just records: where the Gaussians sit, and the effect of the maximum scale.

  centres_figure(checkpoint, images, out)       the paper's xy-distribution figure: each image next to the 2-D
                                                centres of its k Gaussians (brightness = opacity)
  scale_effect_figure([(label, ckpt)], images, out)  reconstructions (mask ratio 0) of models that differ in c
Both write PNG and PDF and return the paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> list[Path]:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        p = out.with_suffix(f".{ext}")
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(p)
    _plt().close(fig)
    return paths


def load_images(paths: Sequence[str | Path], size: int) -> torch.Tensor:
    """[B, 3, size, size] ImageNet-normalised (the evaluation transform)."""
    from gmae.data.images import load_rgb
    from gmae.data.transforms import eval_transform

    tf = eval_transform(size)
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"image not found: {p}")
    return torch.stack([tf(load_rgb(p)) for p in paths])


def centres_figure(checkpoint: str | Path, images: Sequence[str | Path], out: str | Path) -> list[Path]:
    from gmae.data.transforms import denormalize
    from gmae.engine.export import load_pretrained_model
    from gmae.render import project

    model, cfg = load_pretrained_model(checkpoint)
    size = cfg.data.img_size
    x = load_images(images, size)
    g = model.predict_gaussians(x, mask_ratio=0.0)
    proj = project(g, size, size)
    uv = proj.means2d.numpy()
    op = g.opacities.numpy()
    plt = _plt()
    fig, axes = plt.subplots(2, len(images), figsize=(1.8 * len(images), 3.8), squeeze=False)
    for i in range(len(images)):
        axes[0, i].imshow(denormalize(x[i]).permute(1, 2, 0).numpy())
        ax = axes[1, i]
        ax.set_facecolor("black")
        ax.scatter(uv[i, :, 0], uv[i, :, 1], s=4, c=op[i], cmap="gray", vmin=0, vmax=1)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_aspect("equal")
        for a in (axes[0, i], ax):
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel(f"centres (k={g.means.shape[1]})")
    fig.suptitle(f"Gaussian centres, brightness = opacity ({cfg.model.name})", fontsize=8)
    return _save(fig, out)


def scale_effect_figure(models: Sequence[tuple[str, str | Path]], images: Sequence[str | Path],
                        out: str | Path) -> list[Path]:
    from gmae.data.transforms import denormalize
    from gmae.engine.export import load_pretrained_model

    plt = _plt()
    loaded = [(label, *load_pretrained_model(ck)) for label, ck in models]
    size = loaded[0][2].data.img_size
    x = load_images(images, size)
    fig, axes = plt.subplots(len(loaded) + 1, len(images), figsize=(1.6 * len(images), 1.6 * (len(loaded) + 1)),
                             squeeze=False)
    for i in range(len(images)):
        axes[0, i].imshow(denormalize(x[i]).permute(1, 2, 0).numpy())
    for r, (label, model, _) in enumerate(loaded, start=1):
        rgb = model.reconstruct(x, mask_ratio=0.0)["rgb"]
        for i in range(len(images)):
            axes[r, i].imshow(rgb[i].permute(1, 2, 0).numpy())
        axes[r, 0].set_ylabel(label, fontsize=7)
    axes[0, 0].set_ylabel("input", fontsize=7)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle("Effect of the maximum scale c (mask ratio 0)", fontsize=8)
    return _save(fig, out)
