"""Zero-shot edges from GMAE's depth groups, scored with the BSDS500 benchmark (eval/bsds_benchmark.py).

    gmae eval edges --checkpoint CKPT --data BSDS_DIR --out PRED_DIR [--config edges/bsds500] [--results DIR]
                    [--gt GT_DIR] [key=value ...]

Edges of depth-group index maps at levels 4, 8, 16, 32, averaged (depth_group_edges()); written as
PRED_DIR/<id>.png and scored as protocol bsds_edges. Design notes (the method, outputs): docs/zeroshot.md#edges
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from gmae.data.bsds import find_bsds, load_gt_boundaries
from gmae.render import Gaussians, batch_background, render

from eval.bsds_benchmark import BENCHMARK_SHORTCUTS, DEFAULT_MAX_DIST, DEFAULT_THRESHOLDS, validate_benchmark
from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut
from eval.zeroshot.common import SHORTCUTS, at_least, load_model, validate_run, write_map
from eval.zeroshot.layers import resize_map
from gmae.errors import InputError

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
    """Depth-group edges of Gaussians [B, N] (steps 2-5 of docs/zeroshot.md#method) rendered at height x width.

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


@dataclass
class EdgesDataConfig:
    # BSDS500: images/ [+ groundTruth/], or the official release (BSR/BSDS500/data); "???" = must be given
    root: str = "???"
    split: str = "test"  # split of the official release layout
    gt: Optional[str] = None  # ground-truth folder of <id>.mat; None: the one found in root


RENDER_SIZES = ("model", "native")


@dataclass
class EdgesConfig:
    levels: List[int] = field(default_factory=lambda: list(LEVELS))  # numbers of depth groups l
    threshold: float = DEFAULT_THRESHOLD  # a group 'changes' a pixel when max_c |dRGB| exceeds this
    render_size: str = "model"  # model: render at the model's input size, resize the map | native: image size
    nms: bool = True  # NMS + thinning (false: not for benchmark numbers)
    batch_size: int = 8
    backend: str = "auto"  # auto | torch | dense | gsplat
    workers: int = 0  # worker processes of the BSDS evaluator; 0: all usable CPUs
    thresholds: int = DEFAULT_THRESHOLDS  # benchmark thresholds
    max_dist: float = DEFAULT_MAX_DIST  # benchmark matching radius, fraction of the image diagonal
    figure_images: int = 4  # images in the hierarchy figure (0: none)
    data: EdgesDataConfig = field(default_factory=EdgesDataConfig)
    run: EvalRunConfig = field(default_factory=lambda: EvalRunConfig(out_dir="runs/zeroshot/edges"))


def validate(cfg: EdgesConfig) -> None:
    validate_run(cfg)
    if not cfg.levels:
        raise InputError("levels: give at least one number of depth groups l")
    if min(cfg.levels) < 1:
        raise InputError(f"levels must all be >= 1, got {list(cfg.levels)}")
    if not cfg.threshold >= 0:
        raise InputError(f"threshold must be >= 0, got {cfg.threshold}")
    if cfg.render_size not in RENDER_SIZES:
        raise InputError(f"render_size must be one of {RENDER_SIZES}, got {cfg.render_size!r}")
    at_least(cfg, ("batch_size",), 1)
    at_least(cfg, ("figure_images",), 0)
    validate_benchmark(cfg)


def _check_inputs(cfg: EdgesConfig, out: Path) -> tuple[list[Path], Optional[Path]]:
    """Everything that can be wrong with the inputs, before the model runs."""
    image_dir, gt_dir = find_bsds(Path(cfg.data.root), cfg.data.split)
    if cfg.data.gt is not None:
        gt_dir = Path(cfg.data.gt)
        if not gt_dir.is_dir():
            raise FileNotFoundError(f"data.gt: folder not found: {gt_dir}")
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
    if out.is_dir():
        stale = sorted(p.name for p in out.glob("*.png") if p.stem not in ids)
        if stale:
            raise ValueError(f"run.out_dir {out} holds {len(stale)} .png files that are not images of this set "
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


def batch_edges(g: Gaussians, pils: list, size: int, cfg: EdgesConfig) -> list[tuple[DepthEdges, int]]:
    """(depth-group edges, index in them) of every image of a batch: one batched render at the model's input
    size, or one render per image at its native size (``render_size``)."""
    levels = tuple(cfg.levels)
    if cfg.render_size == "model":
        res = depth_group_edges(g, size, size, levels, cfg.threshold, backend=cfg.backend)
        return [(res, i) for i in range(len(pils))]
    return [(depth_group_edges(g.select_images(i), im.height, im.width, levels, cfg.threshold,
                               backend=cfg.backend), 0) for i, im in enumerate(pils)]


def write_edge_maps(model, size: int, images: list[Path], cfg: EdgesConfig, ctx: Context) -> list[tuple]:
    """OUT/<id>.png of every image (the benchmark's input); returns the examples for the hierarchy figure."""
    from gmae.data.images import load_rgb

    from eval.zeroshot.layers import input_transform, predict_sorted

    tf = input_transform(size)
    show = []
    for start in range(0, len(images), cfg.batch_size):
        paths = images[start:start + cfg.batch_size]
        pils = [load_rgb(p) for p in paths]
        g = predict_sorted(model, torch.stack([tf(im) for im in pils]).to(ctx.device))
        for p, im, (r, k) in zip(paths, pils, batch_edges(g, pils, size, cfg)):
            edge = native_edge_map(r.soft[k], (im.height, im.width), nms=cfg.nms)
            write_map(ctx.out_dir / f"{p.stem}.png", edge)
            if len(show) < cfg.figure_images:
                show.append((p.stem, np.asarray(im, np.float64) / 255.0,
                             {lv: r.edges[lv][k].cpu().numpy() for lv in cfg.levels}, edge))
    return show


def write_report(report: Path, settings: dict, show: list[tuple]) -> None:
    """REPORT/settings.json and, with examples, REPORT/edge_hierarchy.{png,pdf} (levels coarse to fine)."""
    from gmae.io import atomic_write_json

    from eval.zeroshot import figures

    atomic_write_json(report / "settings.json", settings)
    if show:
        ids, inputs, level_edges, fused = zip(*show)
        fig = figures.edge_hierarchy_figure(list(inputs), list(level_edges), sorted(settings["levels"], reverse=True),
                                            list(fused), ids=list(ids))
        figures.save_figure(fig, report / "edge_hierarchy")


def evaluate(cfg: EdgesConfig, ctx: Context) -> Outcome:
    """Soft edge maps of every image to OUT/, the report to OUT/report/, then the benchmark when ground truth
    is found; records of ODS / OIS / AP / R50."""
    from gmae.io import atomic_write_json

    from eval.bsds_benchmark import bsds_line, bsds_records, evaluate_dir, json_safe, usable_workers

    out, report = ctx.out_dir, ctx.out_dir / "report"
    images, gt_dir = _check_inputs(cfg, out)
    model, model_cfg = load_model(ctx)
    for lv in cfg.levels:
        try:
            group_bounds(model.num_gaussians, lv)
        except ValueError as e:
            raise InputError(f"levels: {e}") from None
    t0 = time.perf_counter()
    show = write_edge_maps(model, model_cfg.data.img_size, images, cfg, ctx)
    seconds = time.perf_counter() - t0
    settings = {"levels": list(cfg.levels), "threshold": cfg.threshold, "render_size": cfg.render_size,
                "nms": cfg.nms, "soft_map": "mean over levels of binary group-index discontinuities",
                "change": "first group with max_c |dRGB| > threshold", "img_size": model_cfg.data.img_size,
                "num_gaussians": model.num_gaussians, "backend": cfg.backend,
                "checkpoint": str(ctx.checkpoint.resolve()), "data": str(Path(cfg.data.root).resolve()),
                "n_images": len(images), "seconds_predict": seconds}
    write_report(report, settings, show)
    line = (f"edges: {len(images)} soft maps (levels {list(cfg.levels)}, threshold {cfg.threshold}) -> {out} "
            f"({seconds:.1f} s)")
    if gt_dir is None:
        return Outcome([], line + "\nedges: no ground truth found (BSDS_DIR/groundTruth or data.gt): not scored",
                       settings)

    res = json_safe(evaluate_dir(out, gt_dir, thresholds=cfg.thresholds, max_dist=cfg.max_dist,
                                 workers=usable_workers(cfg.workers), progress=cfg.run.progress))
    result_file = atomic_write_json(report / "bsds_result.json", res)
    records = bsds_records(ctx, res, data=str(Path(gt_dir).resolve()), method="gmae_zeroshot_depth_groups",
                           result_file=str(result_file.resolve()))
    return Outcome(records, f"{line}\n{bsds_line(res)} -> {result_file}", res)


command = EvalCommand(
    "edges", EdgesConfig, evaluate, validate=validate,
    shortcuts=(Shortcut("--gt", "data.gt", "ground-truth folder of <id>.mat (default: the one in --data)"),
               Shortcut("--split", "data.split", "split of the official release layout"),
               Shortcut("--levels", "levels", "numbers of depth groups l", nargs="+"),
               Shortcut("--threshold", "threshold", "a group 'changes' a pixel when max_c |dRGB| exceeds this"),
               Shortcut("--render-size", "render_size", "model | native"),
               Shortcut("--no-nms", "nms", "skip NMS + thinning (not for benchmark numbers)", switch=True,
                        sets="false"),
               Shortcut("--batch-size", "batch_size", "images per forward pass"),
               *BENCHMARK_SHORTCUTS,
               Shortcut("--figure-images", "figure_images", "images in the hierarchy figure (0: none)"),
               *SHORTCUTS),
    data_help="BSDS500 folder: images/ [+ groundTruth/], or the official release (sets data.root)",
    config_help="(edges/bsds500)")
