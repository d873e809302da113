"""Zero-shot figure-ground segmentation from GMAE's depth layers, scored on salient-object sets.

    gmae eval figure-ground --checkpoint CKPT --data DIR [--config figure_ground/default] [--out DIR]
                            [--results DIR] [--oracle] [key=value ...]

DIR: images/<id>.<ext> + masks/<id>.png (ECSSD, DUTS-TE, DUT-OMRON). The rule, figure_ground(): the front layer
is the opacity-weighted Otsu split of the depth-sorted Gaussians; metrics iou, pixel_acc, max_f.
Design notes (rule, oracle, metrics, outputs): docs/zeroshot.md#figure-ground
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from gmae.render import Gaussians, camera_depths, render

from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut
from eval.zeroshot.common import SHORTCUTS, at_least, load_model, validate_run, write_map
from eval.zeroshot.layers import resize_map

__all__ = [
    "BETA2", "FigureGround", "f_beta_curve", "figure_ground", "image_metrics", "iou", "max_f_beta",
    "oracle_figure_ground", "otsu_split", "pixel_accuracy",
]

BETA2 = 0.3  # beta^2 of the F-measure (salient-object convention)
N_THRESHOLDS = 255
MASK_THRESHOLD = 0.5


# ---------------------------------------------------------------------------------------------- the rule


def otsu_split(depths: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Weighted Otsu split of depth-sorted values: depths [B, N] ascending, weights [B, N] >= 0 (default 1).

    Returns s [B] in 1 .. N-1 (the front layer is the first s) maximising W_0 W_1 (mu_0 - mu_1)^2; a split between
    two equal depths is never chosen. With N = 1, or no admissible split, s = N (everything in front).
    """
    d = depths.detach().double()
    b, n = d.shape
    if n < 2:
        return torch.full((b,), n, dtype=torch.long, device=depths.device)
    w = torch.ones_like(d) if weights is None else weights.detach().double().clamp_min(0.0)
    w0 = torch.cumsum(w, -1)[:, :-1]  # front weight for s = 1 .. N-1
    m0 = torch.cumsum(w * d, -1)[:, :-1]
    w1 = w.sum(-1, keepdim=True) - w0
    m1 = (w * d).sum(-1, keepdim=True) - m0
    ok = (w0 > 0) & (w1 > 0) & (d[:, 1:] > d[:, :-1])
    mu0 = m0 / w0.clamp_min(1e-300)
    mu1 = m1 / w1.clamp_min(1e-300)
    between = torch.where(ok, w0 * w1 * (mu0 - mu1) ** 2, torch.full_like(w0, -1.0))
    s = between.argmax(-1) + 1  # argmax returns the first maximum: the smaller split on ties
    return torch.where(ok.any(-1), s, torch.full_like(s, n))


@dataclass
class FigureGround:
    """soft [B, H, W]: accumulated alpha of the front layer; split [B]: its size (the s nearest Gaussians)."""

    soft: Tensor
    split: Tensor


def figure_ground(gaussians: Gaussians, height: int, width: int, *, backend: str = "auto",
                  camera="paper") -> FigureGround:
    """The documented rule (docs/zeroshot.md#the-rule): front layer = the s nearest Gaussians, s = opacity-weighted Otsu
    split of the camera depths; soft foreground = that layer's accumulated alpha [B, height, width]."""
    gs = gaussians.sort_by_depth(camera)
    split = otsu_split(camera_depths(gs, camera), gs.opacities)
    out = render(gs.keep_first(split), height, width, backend=backend, camera=camera)
    return FigureGround(out.alpha, split)


def oracle_figure_ground(gaussians: Gaussians, masks: Sequence[np.ndarray], height: int, width: int, *,
                         candidates: Optional[Sequence[int]] = None, backend: str = "auto", camera="paper",
                         chunk_images: int = 64) -> FigureGround:
    """ORACLE (uses the ground truth): for every image the split s (candidates, default 1 .. N) whose front-layer
    alpha, resized to the mask's size and thresholded at 0.5, has the highest IoU with ``masks[b]`` (first best)."""
    gs = gaussians.sort_by_depth(camera)
    b, n = gs.batch_size, gs.num
    cand = list(range(1, n + 1)) if candidates is None else [int(c) for c in candidates]
    if not cand or any(not 1 <= c <= n for c in cand):
        raise ValueError(f"oracle candidates must lie in 1 .. {n}")
    best = [-1.0] * b
    best_s = torch.zeros(b, dtype=torch.long)
    best_soft = torch.zeros(b, height, width, device=gs.means.device)
    per_call = max(1, chunk_images // b)
    for start in range(0, len(cand), per_call):
        chunk = cand[start:start + per_call]
        c = len(chunk)
        counts = torch.tensor(chunk, device=gs.means.device).repeat(b)  # image-major: (img 0: s_0..s_c), ...
        alpha = render(gs.repeat_images(c).keep_first(counts), height, width, backend=backend,
                       camera=camera).alpha.view(b, c, height, width)
        for i in range(b):
            gt = np.asarray(masks[i]) != 0
            for j, s in enumerate(chunk):
                v = iou(resize_map(alpha[i, j], gt.shape) >= MASK_THRESHOLD, gt)
                if v > best[i]:
                    best[i], best_s[i] = v, s
                    best_soft[i] = alpha[i, j]
    return FigureGround(best_soft, best_s)


# ---------------------------------------------------------------------------------------------- metrics


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|pred and gt| / |pred or gt| of two binary masks; 1.0 when both are empty."""
    p, g = np.asarray(pred) != 0, np.asarray(gt) != 0
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else np.count_nonzero(p & g) / union


def pixel_accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred) != 0) == (np.asarray(gt) != 0)))


def f_beta_curve(soft: np.ndarray, gt: np.ndarray, beta2: float = BETA2) -> np.ndarray:
    """F_beta [255] at the thresholds q >= t, t = 1 .. 255, of the 8-bit map q = round(255 soft)."""
    q = np.rint(np.clip(np.asarray(soft, np.float64), 0.0, 1.0) * 255.0).astype(np.int64).ravel()
    g = (np.asarray(gt) != 0).ravel()
    # counts of pixels with q >= t, by reverse cumulative histograms
    pred_n = np.cumsum(np.bincount(q, minlength=256)[::-1])[::-1][1:].astype(np.float64)
    tp = np.cumsum(np.bincount(q[g], minlength=256)[::-1])[::-1][1:].astype(np.float64)
    n_gt = float(g.sum())
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = tp / n_gt if n_gt > 0 else np.zeros_like(tp)
    den = beta2 * precision + recall
    return np.divide((1.0 + beta2) * precision * recall, den, out=np.zeros_like(tp), where=den > 0)


def max_f_beta(soft: np.ndarray, gt: np.ndarray, beta2: float = BETA2) -> float:
    """max over the 255 thresholds of :func:`f_beta_curve`."""
    return float(f_beta_curve(soft, gt, beta2).max())


def image_metrics(soft: np.ndarray, gt: np.ndarray, beta2: float = BETA2) -> dict:
    """{"iou", "pixel_acc", "max_f"} of one soft map [H, W] in [0, 1] against a binary mask of the same size."""
    soft, gt = np.asarray(soft), np.asarray(gt)
    if soft.shape != gt.shape:
        raise ValueError(f"soft map {soft.shape} and mask {gt.shape} differ in size")
    pred = soft >= MASK_THRESHOLD
    return {"iou": iou(pred, gt), "pixel_acc": pixel_accuracy(pred, gt), "max_f": max_f_beta(soft, gt, beta2)}


# ---------------------------------------------------------------------------------------------- command


@dataclass
class FigureGroundDataConfig:
    # a salient-object set: images/<id>.<ext> + masks/<id>.png (ECSSD, DUTS-TE, DUT-OMRON); "???" = must be given
    root: str = "???"


@dataclass
class FigureGroundConfig:
    oracle: bool = False  # also score the ORACLE split (chosen with the ground truth; labelled as such)
    batch_size: int = 16
    backend: str = "auto"  # auto | torch | dense | gsplat
    figure_images: int = 6  # images shown in the figure (0: no figure)
    max_images: Optional[int] = None  # score only the first N images (smoke runs); None: all
    data: FigureGroundDataConfig = field(default_factory=FigureGroundDataConfig)
    run: EvalRunConfig = field(default_factory=lambda: EvalRunConfig(out_dir="runs/zeroshot/figure_ground"))


def validate(cfg: FigureGroundConfig) -> None:
    validate_run(cfg)
    at_least(cfg, ("batch_size", "max_images"), 1)
    at_least(cfg, ("figure_images",), 0)


METRICS = ("iou", "pixel_acc", "max_f")


def _suffix(variant: str) -> str:
    return "" if variant == "rule" else "_oracle"


@dataclass
class _Scored:
    """Everything the images scored so far leave behind: per-image rows, F curves per variant, figure examples."""
    rows: list = field(default_factory=list)
    curves: dict = field(default_factory=dict)
    shown: list = field(default_factory=list)


def score_batch(g: Gaussians, masks: Sequence[np.ndarray], size: int, cfg: FigureGroundConfig) -> dict:
    """{variant: FigureGround} of one batch of depth-sorted Gaussians, at the model's input size."""
    results = {"rule": figure_ground(g, size, size, backend=cfg.backend)}
    if cfg.oracle:
        results["oracle"] = oracle_figure_ground(g, masks, size, size, backend=cfg.backend)
    return results


def score_image(image_id: str, results: dict, j: int, mask: np.ndarray, scored: _Scored) -> np.ndarray:
    """Score image j of a batch for every variant (adds its row and F curves); returns the rule's soft map at
    the mask's size."""
    row = {"id": image_id}
    maps = {}
    for v, res in results.items():
        maps[v] = resize_map(res.soft[j], mask.shape)
        sfx = _suffix(v)
        scored.curves.setdefault(v, []).append(f_beta_curve(maps[v], mask))
        row.update({f"split{sfx}": int(res.split[j]),
                    **{k + sfx: val for k, val in image_metrics(maps[v], mask).items()}})
    scored.rows.append(row)
    return maps["rule"]


def summarize(scored: _Scored, num_gaussians: int, size: int, extra: dict) -> dict:
    """Means over images of every metric and split, per variant, and F of the mean curve."""
    rows = scored.rows
    summary = {"n_images": len(rows), "num_gaussians": num_gaussians, "img_size": size, "rule": "depth_otsu",
               "beta2": BETA2, "mask_threshold": MASK_THRESHOLD, "n_thresholds": N_THRESHOLDS, **extra}
    for v, curves in scored.curves.items():
        sfx = _suffix(v)
        for k in METRICS:
            summary[k + sfx] = float(np.mean([r[k + sfx] for r in rows]))
        summary["max_f_of_mean_curve" + sfx] = float(np.mean(curves, axis=0).max())
        summary["mean_split" + sfx] = float(np.mean([r["split" + sfx] for r in rows]))
    return summary


def write_outputs(out: Path, scored: _Scored, summary: dict) -> None:
    """OUT/per_image.{csv,json}, OUT/summary.json and, with examples, OUT/figure_ground.{png,pdf}."""
    from gmae.io import atomic_write_json, atomic_write_text

    from eval.zeroshot import figures

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(scored.rows[0].keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(scored.rows)
    atomic_write_text(out / "per_image.csv", buf.getvalue())
    atomic_write_json(out / "per_image.json", scored.rows)
    atomic_write_json(out / "summary.json", summary)
    if scored.shown:
        ids, inputs, masks, soft, splits = zip(*scored.shown)
        fig = figures.figure_ground_figure(list(inputs), list(masks), list(soft), ids=list(ids), splits=list(splits))
        figures.save_figure(fig, out / "figure_ground")


def evaluate(cfg: FigureGroundConfig, ctx: Context) -> Outcome:
    """Score every image (maps to OUT/maps/), write the tables and the figure; records of the means."""
    from gmae.data.saliency import SaliencyDataset
    from gmae.data.transforms import denormalize

    from eval.zeroshot.layers import input_transform, predict_sorted

    ds = SaliencyDataset(cfg.data.root)
    model, model_cfg = load_model(ctx)
    size, n, out = model_cfg.data.img_size, model.num_gaussians, ctx.out_dir
    tf = input_transform(size)
    total = len(ds) if cfg.max_images is None else min(len(ds), cfg.max_images)
    scored = _Scored()
    t0 = time.perf_counter()
    for start in range(0, total, cfg.batch_size):
        idx = list(range(start, min(total, start + cfg.batch_size)))
        items = [ds[i] for i in idx]
        imgs = torch.stack([tf(img) for img, _ in items]).to(ctx.device)
        masks = [m for _, m in items]
        results = score_batch(predict_sorted(model, imgs), masks, size, cfg)
        for j, i in enumerate(idx):
            image_id = ds.images[i].stem
            soft = score_image(image_id, results, j, masks[j], scored)
            write_map(out / "maps" / f"{image_id}.png", soft)
            if len(scored.shown) < cfg.figure_images:
                inp = denormalize(imgs[j]).permute(1, 2, 0).cpu().numpy()
                scored.shown.append((image_id, inp, masks[j], soft, int(results["rule"].split[j])))
    summary = summarize(scored, n, size, {"checkpoint": str(ctx.checkpoint.resolve()),
                                          "data": str(Path(cfg.data.root).resolve()),
                                          "seconds": time.perf_counter() - t0})
    write_outputs(out, scored, summary)

    records = [ctx.record("figure_ground", k + _suffix(v), summary[k + _suffix(v)], data=summary["data"],
                          variant=v, n_images=summary["n_images"], beta2=BETA2,
                          per_image_file=str((out / "per_image.csv").resolve()))
               for v in scored.curves for k in METRICS]
    line = "  ".join(f"{k} {summary[k]:.3f}" for k in METRICS)
    if cfg.oracle:
        line += "  | oracle: " + "  ".join(f"{k} {summary[k + '_oracle']:.3f}" for k in METRICS)
    return Outcome(records, f"figure-ground ({summary['n_images']} images, rule depth_otsu, beta^2 = {BETA2}): "
                            f"{line} -> {out}", summary)


command = EvalCommand(
    "figure-ground", FigureGroundConfig, evaluate, validate=validate,
    shortcuts=(Shortcut("--oracle", "oracle", "also score the ORACLE split (uses the ground truth)", switch=True),
               Shortcut("--batch-size", "batch_size", "images per forward pass"),
               Shortcut("--figure-images", "figure_images", "images shown in the figure (0: no figure)"),
               Shortcut("--max-images", "max_images", "score only the first N images (smoke runs)"),
               *SHORTCUTS),
    data_help="salient-object set with images/ and masks/ (ECSSD, DUTS-TE ...; sets data.root)",
    config_help="(figure_ground/default)")
