"""Zero-shot edges from GMAE's depth groups, scored with the BSDS500 benchmark (eval/bsds.py).

    gmae eval edges --checkpoint CKPT --data BSDS_DIR --out PRED_DIR [--results DIR] [--gt GT_DIR]

Method (the paper's, with the choices it leaves open made explicit):
1. Encode the whole image at mask ratio 0, decode all k Gaussians, sort them nearest first
   (``eval.zeroshot.layers.predict_sorted``).
2. For each level l in ``levels`` (default 4, 8, 16, 32) split the sorted Gaussians into l equal groups, group j
   holding ranks floor(j k / l) .. floor((j + 1) k / l) - 1, and render cumulatively: R_0 = the white background,
   R_j = the first j groups alone. Renders shared between levels are computed once.
3. Group-index map: a pixel gets the first group j (0-based) whose addition changes it by more than
   ``threshold`` (default 0.1) in the largest absolute change over R, G, B: max_c |R_{j+1} - R_j| > threshold.
   Pixels that no group changes that much get index l. (The first significant change marks the nearest surface
   that covers the pixel, so index discontinuities are depth discontinuities.)
4. Level-l edges: pixels with a 4-neighbour of another index (both sides of a discontinuity are marked).
5. Soft edge map: the mean over levels of the binary level edges, E in {0, 1/|L|, .., 1}. A discontinuity that
   persists at coarse levels (few groups, object-level layers) is stronger than one seen only at fine levels,
   so E ranks boundaries by the hierarchy the levels form.
6. E, computed at the model's input size (the whole image squashed to a square), is resized bilinearly to the
   image's native size (``--render-size native`` instead renders every step at the native size); then
   structured-edge NMS (``eval.edge_nms.edge_nms``, r = 1, s = 5, m = 1.01) and thinning of its support
   (``eval.edge_nms.thin``), the standard preparation of soft maps for the benchmark.

Writes PRED_DIR/<id>.png (8-bit single channel, value = round(255 E), the image's size) and, in
PRED_DIR/report/ (a subfolder, so PRED_DIR holds only predictions): settings.json, edge_hierarchy.{png,pdf} (edges at
l = 32 / 16 / 8 / 4 and the fused map for the first few images) and, when ground truth is found
(BSDS_DIR/groundTruth or --gt), bsds_result.json from ``eval.bsds.evaluate_dir``; with ``--results DIR`` the ODS,
OIS, AP and R50 go to the results store as protocol ``bsds_edges``.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from gmae.data.bsds import find_bsds, load_gt_boundaries
from gmae.render import Gaussians, batch_background, render

from eval.zeroshot.layers import resize_map

__all__ = [
    "DEFAULT_THRESHOLD", "LEVELS", "DepthEdges", "depth_group_edges", "group_bounds", "group_index_map",
    "index_edges", "native_edge_map",
]

LEVELS = (4, 8, 16, 32)
DEFAULT_THRESHOLD = 0.1


def group_bounds(n: int, groups: int) -> list[int]:
    """Boundaries [groups + 1] of ``groups`` near-equal depth groups of n ranks: floor(j n / groups)."""
    if not 1 <= groups <= n:
        raise ValueError(f"cannot split {n} Gaussians into {groups} non-empty groups (need 1 <= l <= {n})")
    return [j * n // groups for j in range(groups + 1)]


def _changes(new: Tensor, old: Tensor, threshold: float) -> Tensor:
    return (new - old).abs().amax(-1) > threshold


def group_index_map(renders: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """Group index of every pixel from cumulative renders [B, l + 1, H, W, 3] (R_0 = background, R_l = all).

    Returns [B, H, W] long: the first j in 0 .. l-1 with max_c |R_{j+1} - R_j| > threshold, else l.
    """
    if renders.dim() != 5 or renders.shape[1] < 2:
        raise ValueError(f"renders must be [B, l + 1 >= 2, H, W, 3], got {tuple(renders.shape)}")
    levels = renders.shape[1] - 1
    sig = _changes(renders[:, 1:], renders[:, :-1], threshold)  # [B, l, H, W]
    first = sig.to(torch.uint8).argmax(1)  # the first True (argmax returns the first maximum)
    return torch.where(sig.any(1), first, torch.full_like(first, levels))


def index_edges(index: Tensor | np.ndarray) -> Tensor:
    """Edges [..., H, W] bool of an index map [..., H, W]: pixels with a 4-neighbour of another index."""
    idx = torch.as_tensor(index)
    e = torch.zeros(idx.shape, dtype=torch.bool, device=idx.device)
    dx = idx[..., :, 1:] != idx[..., :, :-1]
    dy = idx[..., 1:, :] != idx[..., :-1, :]
    e[..., :, 1:] |= dx
    e[..., :, :-1] |= dx
    e[..., 1:, :] |= dy
    e[..., :-1, :] |= dy
    return e


@dataclass
class DepthEdges:
    """index[l] [B, H, W] long in 0 .. l (l: no group changed the pixel enough), edges[l] [B, H, W] bool,
    soft [B, H, W] float = mean over ``levels`` of edges[l]."""

    levels: tuple
    index: dict
    edges: dict
    soft: Tensor


def depth_group_edges(gaussians: Gaussians, height: int, width: int, levels: Sequence[int] = LEVELS,
                      threshold: float = DEFAULT_THRESHOLD, *, backend: str = "auto", camera="paper",
                      background=None, chunk_images: int = 64) -> DepthEdges:
    """Depth-group edges of Gaussians [B, N] (steps 2-5 of the module docstring) rendered at height x width.

    Renders of several prefixes go through one batched call (``chunk_images`` images per call); R_j is never
    stored for all j at once, so memory stays at a chunk of renders plus one previous render per level.
    """
    levels = tuple(int(lv) for lv in levels)
    if not levels:
        raise ValueError("no level l given")
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    gs = gaussians.sort_by_depth(camera)
    b, n, dev = gs.batch_size, gs.num, gs.means.device
    bounds = {lv: group_bounds(n, lv) for lv in levels}
    counts = sorted(set().union(*bounds.values()) - {0})
    bg = batch_background(background, b, dev)
    base = bg[:, None, None, :].expand(b, height, width, 3)
    prev = {lv: base for lv in levels}
    done = {lv: 0 for lv in levels}  # groups added so far
    index = {lv: torch.full((b, height, width), lv, dtype=torch.long, device=dev) for lv in levels}
    found = {lv: torch.zeros((b, height, width), dtype=torch.bool, device=dev) for lv in levels}
    per_call = max(1, chunk_images // b)
    for start in range(0, len(counts), per_call):
        chunk = counts[start:start + per_call]
        c = len(chunk)
        cnt = torch.tensor(chunk, device=dev).repeat(b)  # image-major
        rgb = render(gs.repeat_images(c).keep_first(cnt), height, width, background=bg.repeat_interleave(c, 0),
                     backend=backend, camera=camera).rgb.view(b, c, height, width, 3)
        for j, k in enumerate(chunk):
            cur = rgb[:, j]
            for lv in levels:
                if k != bounds[lv][done[lv] + 1]:
                    continue
                new = _changes(cur, prev[lv], threshold) & ~found[lv]
                index[lv][new] = done[lv]
                found[lv] |= new
                prev[lv] = cur
                done[lv] += 1
    edges = {lv: index_edges(index[lv]) for lv in levels}
    soft = torch.stack([edges[lv].float() for lv in levels]).mean(0)
    return DepthEdges(levels, index, edges, soft)


def native_edge_map(soft: Tensor | np.ndarray, size: tuple[int, int], nms: bool = True) -> np.ndarray:
    """A soft edge map [h, w] resized (bilinear) to the image's size (H, W), then NMS-ed and thinned for the
    benchmark: ``edge_nms`` (r = 1, s = 5, m = 1.01), values kept only on ``thin(support)``. float64 in [0, 1]."""
    from eval.edge_nms import edge_nms, thin

    e = resize_map(soft, size)
    if nms:
        e = edge_nms(e)
        e = np.where(thin(e > 0), e, 0.0)
    return np.clip(e, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------- command


def _levels_arg(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"a level l must be >= 1, got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="GMAE training checkpoint (checkpoint.pth)")
    parser.add_argument("--data", required=True, help="BSDS500 folder (images/ [+ groundTruth/], or the release)")
    parser.add_argument("--out", required=True, help="folder for the <id>.png soft edge maps")
    parser.add_argument("--gt", default=None, help="ground-truth folder of <id>.mat (default: the one in --data)")
    parser.add_argument("--results", default=None, help="results store folder to append bsds_edges records to")
    parser.add_argument("--split", default="test", help="split of the official release layout (default: test)")
    parser.add_argument("--levels", type=_levels_arg, nargs="+", default=list(LEVELS),
                        help="numbers of depth groups l (default: 4 8 16 32)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="a group 'changes' a pixel when max_c |dRGB| exceeds this (default: %(default)s)")
    parser.add_argument("--render-size", choices=("model", "native"), default="model",
                        help="render at the model's input size and resize the edge map (default), or render at "
                             "each image's native size")
    parser.add_argument("--no-nms", action="store_true", help="skip NMS + thinning (not for benchmark numbers)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "dense", "gsplat"),
                        help="rendering backend")
    parser.add_argument("--workers", type=int,
                        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
                        help="worker processes of the BSDS evaluator (default: all usable CPUs)")
    parser.add_argument("--thresholds", type=int, default=99, help="benchmark thresholds (default: 99)")
    parser.add_argument("--figure-images", type=int, default=4, help="images in the hierarchy figure (0: none)")
    parser.add_argument("--model-name", default=None, help="label of the records (default: the checkpoint's model)")


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.rint(np.clip(arr, 0, 1) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _check_inputs(args) -> tuple[list[Path], Optional[Path]]:
    """Everything that can be wrong with the inputs, before the model runs."""
    if args.batch_size < 1 or args.thresholds < 1 or args.workers < 1:
        raise ValueError("--batch-size, --thresholds and --workers must be >= 1")
    if not args.threshold >= 0:
        raise ValueError(f"--threshold must be >= 0, got {args.threshold}")
    image_dir, gt_dir = find_bsds(Path(args.data), args.split)
    if args.gt is not None:
        gt_dir = Path(args.gt)
        if not gt_dir.is_dir():
            raise FileNotFoundError(f"--gt: folder not found: {gt_dir}")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise FileNotFoundError(f"no image in {image_dir}")
    ids = {p.stem for p in images}
    if len(ids) != len(images):
        raise ValueError(f"{image_dir}: several images share a name stem")
    if gt_dir is not None:
        gts = {p.stem for p in gt_dir.glob("*.mat")}
        if gts != ids:
            raise ValueError(f"images in {image_dir} and ground truth in {gt_dir} differ: "
                             f"{sorted(ids - gts)[:5]} have no .mat, {sorted(gts - ids)[:5]} have no image")
        _check_ground_truth(images, gt_dir)
    out = Path(args.out)
    if out.is_dir():
        stale = sorted(p.name for p in out.glob("*.png") if p.stem not in ids)
        if stale:
            raise ValueError(f"--out {out} holds {len(stale)} .png files that are not images of this set "
                             f"({', '.join(stale[:5])}); the benchmark would pair them, use an empty folder")
    return images, gt_dir


def _check_ground_truth(images: list[Path], gt_dir: Path) -> None:
    """Read every .mat now (a few seconds for BSDS500's 200) so a malformed one is named before inference."""
    from PIL import Image

    for p in images:
        gt = load_gt_boundaries(gt_dir / f"{p.stem}.mat")
        with Image.open(p) as im:  # the header only
            w, h = im.size
        if gt[0].shape != (h, w):
            raise ValueError(f"{gt_dir / (p.stem + '.mat')}: ground truth is {gt[0].shape[0]}x{gt[0].shape[1]} "
                             f"(HxW) but {p} is {h}x{w}")


def run(args: argparse.Namespace) -> int:
    from gmae.data.images import load_rgb
    from gmae.io import atomic_write, atomic_write_json

    from eval.zeroshot import figures
    from eval.zeroshot.layers import input_transform, load_gaussian_model, predict_sorted, resolve_device

    try:
        images, gt_dir = _check_inputs(args)
        device = resolve_device(args.device)
        model, cfg = load_gaussian_model(args.checkpoint, device)
        for lv in args.levels:
            group_bounds(model.num_gaussians, lv)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"gmae eval edges: error: {e}", file=sys.stderr)
        return 2
    size, levels = cfg.data.img_size, tuple(args.levels)
    tf = input_transform(size)
    out = Path(args.out)
    report = out / "report"
    show = []
    t0 = time.perf_counter()
    for start in range(0, len(images), args.batch_size):
        paths = images[start:start + args.batch_size]
        pils = []
        for p in paths:
            pils.append(load_rgb(p))
        imgs = torch.stack([tf(im) for im in pils]).to(device)
        g = predict_sorted(model, imgs)
        if args.render_size == "model":
            res = [depth_group_edges(g, size, size, levels, args.threshold, backend=args.backend)]
        else:
            res = [depth_group_edges(g.select_images(i), im.height, im.width, levels, args.threshold,
                                     backend=args.backend) for i, im in enumerate(pils)]
        for i, (p, im) in enumerate(zip(paths, pils)):
            r, k = (res[0], i) if args.render_size == "model" else (res[i], 0)
            edge = native_edge_map(r.soft[k], (im.height, im.width), nms=not args.no_nms)
            atomic_write(out / f"{p.stem}.png", lambda f, e=edge: f.write(_png(e)))
            if len(show) < args.figure_images:
                show.append((p.stem, np.asarray(im, np.float64) / 255.0,
                             {lv: r.edges[lv][k].cpu().numpy() for lv in levels}, edge))
    seconds = time.perf_counter() - t0
    settings = {"levels": list(levels), "threshold": args.threshold, "render_size": args.render_size,
                "nms": not args.no_nms, "soft_map": "mean over levels of binary group-index discontinuities",
                "change": "first group with max_c |dRGB| > threshold", "img_size": size,
                "num_gaussians": model.num_gaussians, "backend": args.backend,
                "checkpoint": str(Path(args.checkpoint).resolve()), "data": str(Path(args.data).resolve()),
                "n_images": len(images), "seconds_predict": seconds}
    atomic_write_json(report / "settings.json", settings)
    if show:
        fig = figures.edge_hierarchy_figure([s[1] for s in show], [s[2] for s in show],
                                            sorted(levels, reverse=True), [s[3] for s in show],
                                            ids=[s[0] for s in show])
        figures.save_figure(fig, report / "edge_hierarchy")
    print(f"edges: {len(images)} soft maps (levels {list(levels)}, threshold {args.threshold}) -> {out} "
          f"({seconds:.1f} s)")
    if gt_dir is None:
        print("edges: no ground truth found (BSDS_DIR/groundTruth or --gt): not scored")
        return 0

    from eval.bsds import evaluate_dir

    res = evaluate_dir(out, gt_dir, thresholds=args.thresholds, workers=args.workers)
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in res.items()}
    atomic_write_json(report / "bsds_result.json", _finite(res))
    if args.results:
        from eval.common import stored_model_name
        from gmae.results import ResultsStore, make_record

        name = args.model_name or stored_model_name(args.checkpoint)
        config = {k: settings[k] for k in ("levels", "threshold", "render_size", "nms", "soft_map", "change",
                                           "img_size", "num_gaussians", "backend")}
        config.update({"thresholds": args.thresholds, "max_dist": res.get("max_dist"),
                       "pred_dir": str(out.resolve())})
        records = [make_record("bsds_edges", m, clean[m], model=name, checkpoint=args.checkpoint, config=config,
                               data=str(Path(gt_dir).resolve()), n_images=res["n_images"],
                               method="gmae_zeroshot_depth_groups",
                               result_file=str((report / "bsds_result.json").resolve()))
                   for m in ("ods", "ois", "ap", "r50")]
        ResultsStore(args.results).append(records)
    fmt = lambda v: "nan" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"ODS {fmt(clean['ods'])}  OIS {fmt(clean['ois'])}  AP {fmt(clean['ap'])}  R50 {fmt(clean['r50'])}  "
          f"({res['n_images']} images) -> {report / 'bsds_result.json'}")
    return 0


def _finite(obj):
    """JSON-safe copy: non-finite floats become null, numpy scalars / arrays become Python values."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
