"""Depth layers of GMAE's Gaussians: renders of the K nearest, of depth-order slices, and grey depth-rank renders.

    gmae eval layers --checkpoint CKPT (--images IMG [IMG ...] | --data DIR) --out DIR [--ks 32 64 128 256]
                     [--slices 0:64 64:128] [--max-images 4]

The zero-shot read-outs share one first step (:func:`predict_sorted`): the whole image, resized to the model's
square input without cropping (so every read-out maps back onto the full image), is encoded with mask ratio 0; all
k Gaussians are decoded and sorted by camera depth t_z = z + 8, nearest first. Rank r then means "the r-th
nearest Gaussian"; a depth slice [start, end) holds ranks start .. end - 1.

* ``cumulative_renders(g, ks)``: the first K Gaussians (K in ``ks``) rendered alone on white; K = k is the full
  render. ``slice_renders(g, [(start, end), ...])``: any depth slices. An empty slice is the bare background.
* ``depth_rank_render(g)``: every Gaussian painted grey level rank / k (nearest black, farthest almost white)
  and composited as usual on white; it shows which depth range covers each pixel (the paper's grey layer figure).

The command writes DIR/layers.{png,pdf} (one row per image: input, cumulative renders, slices, grey depth) and
DIR/layers.npz with the tensors (``ids``, ``ks``, ``slices``, ``cumulative`` [B, len(ks), S, S, 3],
``slice_rgb`` [B, len(slices), S, S, 3], ``depth_grey`` [B, S, S], ``inputs`` [B, S, S, 3], S = model input size).
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gmae.render import Gaussians, batch_background, render

__all__ = [
    "LayerRenders", "cumulative_renders", "depth_rank_render", "input_transform", "load_gaussian_model",
    "predict_sorted", "resize_map", "resolve_device", "slice_renders",
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


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available")
    return torch.device(name)


def load_gaussian_model(checkpoint: str | Path, device: torch.device | str = "cpu"):
    """(model, cfg) of a GMAE training checkpoint, in eval mode on ``device``; raises naming the file when the
    file is missing or its model does not predict Gaussians (e.g. an MAE checkpoint)."""
    from gmae.engine.export import load_pretrained_model

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    model, cfg = load_pretrained_model(path)
    if not hasattr(model, "predict_gaussians"):
        raise ValueError(f"{path}: model {cfg.model.name!r} does not predict Gaussians; the zero-shot read-outs "
                         "need a GMAE checkpoint")
    return model.to(device).eval(), cfg


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


def _parse_slice(text: str) -> tuple[int, int]:
    try:
        a, b = text.split(":")
        return int(a), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a depth slice is START:END (e.g. 0:64), got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="GMAE training checkpoint (checkpoint.pth)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="IMAGE", help="image files")
    src.add_argument("--data", help="a folder of images (or a data set folder holding images/)")
    parser.add_argument("--out", required=True, help="output folder for layers.{png,pdf,npz}")
    parser.add_argument("--ks", type=int, nargs="+", default=None,
                        help="numbers K of nearest Gaussians to render (default k/8, k/4, k/2, k)")
    parser.add_argument("--slices", type=_parse_slice, nargs="*", default=None, metavar="START:END",
                        help="depth-order slices to render (default: the quarters of k)")
    parser.add_argument("--max-images", type=int, default=4, help="images shown (the first ones, sorted by name)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "dense", "gsplat"),
                        help="rendering backend")


def run(args: argparse.Namespace) -> int:
    from gmae.data.images import ImageListDataset
    from gmae.io import atomic_write

    from eval.zeroshot import figures

    try:
        if args.max_images < 1:
            raise ValueError("--max-images must be >= 1")
        if args.images:
            ds = ImageListDataset(args.images)
        else:
            root = Path(args.data)
            ds = ImageListDataset(root / "images" if (root / "images").is_dir() else root)
        device = resolve_device(args.device)
        model, cfg = load_gaussian_model(args.checkpoint, device)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"gmae eval layers: error: {e}", file=sys.stderr)
        return 2
    n, size = model.num_gaussians, cfg.data.img_size
    ks = args.ks or default_ks(n)
    slices = args.slices if args.slices is not None else [(i * n // 4, (i + 1) * n // 4) for i in range(4)]
    bad = [k for k in ks if not 0 <= k <= n] + [s for s in slices if not 0 <= s[0] <= s[1] <= n]
    if bad:
        print(f"gmae eval layers: error: {bad} out of range for a model with k = {n} Gaussians", file=sys.stderr)
        return 2

    tf = input_transform(size)
    count = min(args.max_images, len(ds))
    ids = [Path(ds.paths[i]).stem for i in range(count)]
    imgs = torch.stack([tf(ds[i]) for i in range(count)]).to(device)
    g = predict_sorted(model, imgs)
    cum = cumulative_renders(g, ks, size, size, backend=args.backend)
    sl = slice_renders(g, slices, size, size, backend=args.backend) if slices else None
    grey = depth_rank_render(g, size, size, backend=args.backend)
    from gmae.data.transforms import denormalize

    inputs = denormalize(imgs).permute(0, 2, 3, 1).cpu().numpy()
    arrays = {"ids": np.array(ids), "ks": np.array(ks), "slices": np.array(slices).reshape(-1, 2),
              "inputs": inputs, "cumulative": cum.rgb.cpu().numpy(), "depth_grey": grey.cpu().numpy(),
              "slice_rgb": sl.rgb.cpu().numpy() if sl is not None else np.zeros((count, 0, size, size, 3))}
    out = Path(args.out)

    def write_npz(f):
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        f.write(buf.getvalue())

    atomic_write(out / "layers.npz", write_npz)
    fig = figures.layer_figure(inputs, arrays["cumulative"], ks, arrays["slice_rgb"], slices, arrays["depth_grey"],
                               ids=ids, n_total=n)
    paths = figures.save_figure(fig, out / "layers")
    print(f"layers of {count} images (k = {n}, K = {ks}) -> {', '.join(str(p) for p in paths)}")
    return 0
