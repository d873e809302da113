"""Depth layers of GMAE's Gaussians: renders of the K nearest, of depth-order slices, and grey depth-rank renders.

    gmae eval layers --checkpoint CKPT (--images IMG [IMG ...] | --data DIR) --out DIR [--ks 32 64 128 256]
                     [--slices 0:64 64:128] [--max-images 4] [--config layers/default] [key=value ...]

predict_sorted() is the first step of every zero-shot read-out (all k Gaussians, nearest first).
Design notes (ranks and slices, the renders, layers.{png,pdf,npz}): docs/zeroshot.md#depth-layers
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut
from eval.zeroshot.common import SHORTCUTS, at_least, load_model, validate_run
from gmae.errors import InputError
from gmae.render import Gaussians, batch_background, render

__all__ = [
    "LayerRenders", "cumulative_renders", "depth_rank_render", "input_transform", "predict_sorted", "resize_map",
    "slice_renders",
]


# ---------------------------------------------------------------------------------------------- maps


def resize_map(soft: Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [h, w] map in [0, 1] resized bilinearly (half-pixel centres, antialiased when shrinking) to size (H, W),
    as float64 numpy; how every read-out computed at the model's input size returns to the image's native size."""
    t = torch.as_tensor(np.asarray(soft.detach().cpu() if isinstance(soft, Tensor) else soft), dtype=torch.float32)
    if tuple(t.shape) != tuple(size):
        t = F.interpolate(t[None, None], size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=True)[0, 0]
    return t.clamp(0.0, 1.0).numpy().astype(np.float64)


# ---------------------------------------------------------------------------------------------- renders


@dataclass
class LayerRenders:
    """rgb [B, L, H, W, 3] on the background, alpha [B, L, H, W], depth [B, L, H, W] (expected camera depth,
    0 where nothing was drawn), one entry per depth range ``ranges[l] = (start, end)``."""

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    ranges: list


def slice_renders(gaussians: Gaussians, ranges: Sequence[tuple[int, int]], height: int, width: int, *,
                  background=None, backend: str = "auto", camera="paper") -> LayerRenders:
    """Render each depth-order slice [start, end) of Gaussians [B, N] alone (ranks counted nearest first).

    Returns :class:`LayerRenders` with L = len(ranges). background: [3] or [B, 3], default white.
    """
    n = gaussians.num
    ranges = [(int(a), int(b)) for a, b in ranges]
    for a, b in ranges:
        if not 0 <= a <= b <= n:
            raise ValueError(f"depth slice [{a}, {b}) is not within [0, {n}] with start <= end")
    if not ranges:
        raise ValueError("no depth slice to render")
    gs = gaussians.sort_by_depth(camera)
    bg = batch_background(background, gs.batch_size, gs.means.device)
    rgbs, alphas, depths = [], [], []
    for a, b in ranges:
        if a == b:  # nothing to draw: the bare background
            rgbs.append(bg[:, None, None, :].expand(-1, height, width, -1).clone())
            alphas.append(bg.new_zeros(gs.batch_size, height, width))
            depths.append(bg.new_zeros(gs.batch_size, height, width))
            continue
        # gs is sorted, so a plain slice along N is exactly depth ranks a .. b-1
        out = render(gs, height, width, background=bg, backend=backend, camera=camera, subset=slice(a, b))
        rgbs.append(out.rgb)
        alphas.append(out.alpha)
        depths.append(out.depth)
    return LayerRenders(torch.stack(rgbs, 1), torch.stack(alphas, 1), torch.stack(depths, 1), ranges)


def cumulative_renders(gaussians: Gaussians, ks: Sequence[int], height: int, width: int, *,
                       background=None, backend: str = "auto", camera="paper") -> LayerRenders:
    """The K nearest Gaussians of each image rendered alone, for every K in ``ks`` (0 <= K <= N).

    Returns :class:`LayerRenders` [B, len(ks), ...]; K = N equals ``render(gaussians)``.
    """
    return slice_renders(gaussians, [(0, int(k)) for k in ks], height, width, background=background,
                         backend=backend, camera=camera)


def depth_rank_render(gaussians: Gaussians, height: int, width: int, *, backend: str = "auto",
                      camera="paper") -> Tensor:
    """Grey-level depth render [B, H, W] in [0, 1]: the Gaussian of depth rank r (0 = nearest) of N is painted
    grey r / N (so the farthest stays distinguishable from the white background) and composited on white with its
    own opacity and shape."""
    gs = gaussians.sort_by_depth(camera)
    b, n = gs.batch_size, gs.num
    grey = torch.arange(n, dtype=torch.float32, device=gs.means.device) / n
    colors = grey.view(1, n, 1).expand(b, n, 3)
    out = render(gs.replace(colors=colors), height, width, background=batch_background(None, b, gs.means.device),
                 backend=backend, camera=camera)
    return out.rgb[..., 0]


# ---------------------------------------------------------------------------------------------- the model


def input_transform(size: int):
    """PIL image -> [3, size, size] ImageNet-normalised: the WHOLE image resized (bicubic, antialiased) to the
    model's square input, no crop, so maps computed at the model resolution resize back onto the full image."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    from gmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return T.Compose([T.Resize((size, size), interpolation=InterpolationMode.BICUBIC, antialias=True),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


@torch.no_grad()
def predict_sorted(model, imgs: Tensor) -> Gaussians:
    """imgs [B, 3, S, S] (normalised) -> the model's k Gaussians per image at mask ratio 0, sorted nearest first."""
    return model.predict_gaussians(imgs, mask_ratio=0.0).sort_by_depth()


def default_ks(n: int) -> list[int]:
    """The paper's K = 32, 64, 128, 256 for k = 256; for other k the same fractions k/8, k/4, k/2, k."""
    return sorted({max(1, (n * f) // 8) for f in (1, 2, 4, 8)})


# ---------------------------------------------------------------------------------------------- command


@dataclass
class LayersDataConfig:
    # a folder of images (or a data set folder holding images/); or give data.images instead
    root: Optional[str] = None
    images: List[str] = field(default_factory=list)  # image files (--images)


@dataclass
class LayersConfig:
    ks: Optional[List[int]] = None  # numbers K of nearest Gaussians to render; None: k/8, k/4, k/2, k
    slices: Optional[List[str]] = None  # depth-order slices "START:END" to render; None: the quarters of k
    max_images: int = 4  # images shown (the first ones, sorted by name)
    backend: str = "auto"  # auto | torch | dense | gsplat
    data: LayersDataConfig = field(default_factory=LayersDataConfig)
    run: EvalRunConfig = field(default_factory=lambda: EvalRunConfig(out_dir="runs/zeroshot/layers"))


def parse_slice(text: str) -> tuple[int, int]:
    """``"START:END"`` -> (START, END)."""
    try:
        a, b = str(text).split(":")
        return int(a), int(b)
    except ValueError:
        raise InputError(f"slices: a depth slice is START:END (e.g. 0:64), got {text!r}") from None


def validate(cfg: LayersConfig) -> None:
    validate_run(cfg)
    if (cfg.data.root is None) == (not cfg.data.images):
        raise InputError("give either data.root (--data) or data.images (--images), not both or neither")
    at_least(cfg, ("max_images",), 1)
    for text in cfg.slices or ():
        parse_slice(text)


def layer_ranges(cfg: LayersConfig, n: int) -> tuple[list[int], list[tuple[int, int]]]:
    """(ks, slices) of the config for a model with n Gaussians, defaults filled in; raises naming the key."""
    ks = list(cfg.ks) if cfg.ks else default_ks(n)
    slices = ([parse_slice(t) for t in cfg.slices] if cfg.slices is not None
              else [(i * n // 4, (i + 1) * n // 4) for i in range(4)])
    bad = [k for k in ks if not 0 <= k <= n] + [s for s in slices if not 0 <= s[0] <= s[1] <= n]
    if bad:
        raise InputError(f"ks / slices: {bad} out of range for a model with k = {n} Gaussians")
    return ks, slices


def layer_arrays(model, imgs: Tensor, ks: list[int], slices: list[tuple[int, int]], size: int,
                 backend: str) -> dict:
    """The renders of layers.npz (docs/zeroshot.md#outputs) of a batch of normalised images [B, 3, S, S]."""
    from gmae.data.transforms import denormalize

    g = predict_sorted(model, imgs)
    cum = cumulative_renders(g, ks, size, size, backend=backend)
    sl = slice_renders(g, slices, size, size, backend=backend) if slices else None
    grey = depth_rank_render(g, size, size, backend=backend)
    return {"ks": np.array(ks), "slices": np.array(slices).reshape(-1, 2),
            "inputs": denormalize(imgs).permute(0, 2, 3, 1).cpu().numpy(), "cumulative": cum.rgb.cpu().numpy(),
            "depth_grey": grey.cpu().numpy(),
            "slice_rgb": sl.rgb.cpu().numpy() if sl is not None else np.zeros((imgs.shape[0], 0, size, size, 3))}


def write_npz(path: Path, arrays: dict) -> Path:
    from gmae.io import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def evaluate(cfg: LayersConfig, ctx: Context) -> Outcome:
    """Render the first ``max_images`` images' layers; OUT/layers.npz and the figure OUT/layers.{png,pdf}."""
    from gmae.data.images import ImageListDataset

    from eval.zeroshot import figures

    if cfg.data.images:
        ds = ImageListDataset(cfg.data.images)
    else:
        root = Path(cfg.data.root)
        ds = ImageListDataset(root / "images" if (root / "images").is_dir() else root)
    model, model_cfg = load_model(ctx)
    n, size = model.num_gaussians, model_cfg.data.img_size
    ks, slices = layer_ranges(cfg, n)
    tf = input_transform(size)
    count = min(cfg.max_images, len(ds))
    ids = [Path(ds.paths[i]).stem for i in range(count)]
    imgs = torch.stack([tf(ds[i]) for i in range(count)]).to(ctx.device)
    arrays = {"ids": np.array(ids), **layer_arrays(model, imgs, ks, slices, size, cfg.backend)}
    write_npz(ctx.out_dir / "layers.npz", arrays)
    fig = figures.layer_figure(arrays["inputs"], arrays["cumulative"], ks, arrays["slice_rgb"], slices,
                               arrays["depth_grey"], ids=ids, n_total=n)
    paths = figures.save_figure(fig, ctx.out_dir / "layers")
    return Outcome([], f"layers of {count} images (k = {n}, K = {ks}) -> {', '.join(str(p) for p in paths)}",
                   {"ids": ids, "ks": ks, "slices": slices})


command = EvalCommand(
    "layers", LayersConfig, evaluate, validate=validate,
    shortcuts=(Shortcut("--images", "data.images", "image files (instead of --data)", nargs="+"),
               Shortcut("--ks", "ks", "numbers K of nearest Gaussians to render (default k/8, k/4, k/2, k)",
                        nargs="+"),
               Shortcut("--slices", "slices", "depth-order slices START:END (default: the quarters of k)",
                        nargs="*"),
               Shortcut("--max-images", "max_images", "images shown (the first ones, sorted by name)"),
               *SHORTCUTS),
    data_help="a folder of images, or a data set folder holding images/ (sets data.root)",
    config_help="(layers/default)")
