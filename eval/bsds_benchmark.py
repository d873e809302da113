"""The BSDS500 boundary benchmark that `gmae eval bsds` and `gmae eval edges` both run: ODS, OIS, AP and R50 of
soft edge maps against every annotator's boundaries, and the benchmark's keys and records shared by both commands.

Inputs: PRED_DIR/<id>.png (8-bit single channel, edge probability = value / 255, the image's size) and
GT_DIR/<id>.mat (BSDS500 layout: variable ``groundTruth``, a 1 x K cell of structs whose ``Boundaries`` field is
one annotator's boundary map). Soft maps from CNNs should be NMS-ed first (``eval.edge_nms.edge_nms``).

Per image and threshold t in linspace(1/(n+1), n/(n+1), n) (0.01 .. 0.99 for n = 99):
  P = thin(E >= t) (``bwmorph(.., 'thin', Inf)``); for each annotator g, P is matched to G_g within
  maxDist = max_dist * image diagonal (pixel pairs farther apart never match); a predicted pixel is correct if it is
  matched for any annotator. Counts: cntR = sum_g |matches_g|, sumR = sum_g |G_g|, cntP = |correct pixels|,
  sumP = |P|. R = cntR / sumR, P = cntP / sumP, F = 2PR / (P + R) (0 where a denominator is 0).
ODS: counts summed over images per threshold; best F over linear interpolation between adjacent thresholds
  (100 points per segment, as edgesEvalDir's findBestRPF). OIS: for each image the threshold of its best F (the
  first if tied), those counts summed over images, then F. AP: unique recalls (first occurrence), precision
  linearly interpolated at recall 0:0.01:1, NaN (out of range) dropped, sum / 100. R50: the recall at precision
  max(0.5, lowest precision), interpolated over the unique precisions (NaN if 50 % precision is never reached).
  These follow Dollar's edgesEvalDir.m, which produced the HED / SAM reference numbers.

Correspondence: a maximum-cardinality matching of P to G_g within maxDist, and among those one of minimum total
Euclidean distance; deterministic, and the same objective as the original's CSA matching in all but pathological
cases. Why, and how it is computed quickly (Hopcroft-Karp, Dulmage-Mendelsohn, a min-cost matching on the part
of the graph that can change, reuse across thresholds, worker processes): docs/bsds.md.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, maximum_bipartite_matching, min_weight_full_bipartite_matching

from gmae.data.bsds import boundaries_from_segmentation, ground_truth_mat_bytes, load_gt_boundaries

from eval.command import Shortcut
from eval.edge_nms import thin

DEFAULT_THRESHOLDS = 99
DEFAULT_MAX_DIST = 0.0075
_EPS = np.finfo(np.float64).eps

__all__ = [
    "evaluate_image", "correspond", "summarize", "evaluate_dir", "load_prediction", "thresholds_for",
    "synthetic_image", "write_synthetic_set",
]


# ============================================================================================ inputs


def thresholds_for(n: int) -> np.ndarray:
    """The benchmark's n thresholds, ``linspace(1/(n+1), 1 - 1/(n+1), n)``."""
    if int(n) < 1:
        raise ValueError(f"need at least one threshold, got {n}")
    n = int(n)
    return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


def load_prediction(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit single-channel PNG as (H, W) float64 edge probabilities value / 255."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: cannot read image: {e}") from e
    if mode != "L" or arr.dtype != np.uint8 or arr.ndim != 2:
        raise ValueError(f"{path}: expected an 8-bit single-channel (mode 'L') PNG, got mode {mode!r}")
    return arr.astype(np.float64) / 255.0


# ============================================================================================ matching


def _disk(radius: float, row_stride: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Flat offsets and lengths of all integer (dy, dx) with dy^2 + dx^2 <= radius^2, nearest first."""
    reach = int(math.ceil(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    d2 = (dy * dy + dx * dx).ravel()
    order = np.argsort(d2, kind="stable")
    keep = order[d2[order] <= radius * radius]
    flat = (dy.ravel() * row_stride + dx.ravel())[keep].astype(np.int64)
    return flat, np.sqrt(d2[keep].astype(np.float64)), reach


@dataclass
class _Annotator:
    """One annotator's GT pixels and, for every pixel within the radius of them, its GT neighbours (CSR)."""

    near_row: np.ndarray  # padded flat map: row of the neighbour table for pixels near the GT, -1 elsewhere
    indptr: np.ndarray    # neighbour table: GT index and distance of each (near pixel, GT pixel) pair
    gt: np.ndarray
    dist: np.ndarray
    n_pixels: int
    cache_key: np.ndarray | None = None
    cache_val: tuple[np.ndarray, int] | None = None


class _Grid:
    """Padded flat indexing for one image size and matching radius."""

    def __init__(self, shape: tuple[int, int], max_dist: float):
        if not max_dist > 0:
            raise ValueError(f"max_dist must be > 0, got {max_dist}")
        h, w = shape
        self.h, self.w = h, w
        self.radius = max_dist * math.hypot(h, w)
        self.reach = int(math.ceil(self.radius))
        self.stride = w + 2 * self.reach
        self.size = (h + 2 * self.reach) * self.stride
        self.offsets, self.dist, _ = _disk(self.radius, self.stride)

    def flat(self, mask: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(mask)
        return (ys + self.reach) * self.stride + (xs + self.reach)

    def annotator(self, gt: np.ndarray) -> _Annotator:
        gid = np.full(self.size, -1, np.int32)
        idx = self.flat(gt)
        gid[idx] = np.arange(idx.size, dtype=np.int32)
        near = np.zeros(self.size, bool)
        for off in self.offsets:  # dilation by the disk
            near[idx + off] = True
        # Only pixels inside the image can be predicted (and their disks stay inside the padded array).
        near2d = near.reshape(-1, self.stride)
        near2d[:self.reach] = near2d[-self.reach:] = False
        near2d[:, :self.reach] = near2d[:, -self.reach:] = False
        near_idx = np.flatnonzero(near)
        near_row = np.full(self.size, -1, np.int32)
        near_row[near_idx] = np.arange(near_idx.size, dtype=np.int32)
        # Built once per image: the per-threshold work is then a gather of table rows.
        nb = gid[near_idx[:, None] + self.offsets[None, :]]
        rows, cols = np.nonzero(nb >= 0)
        indptr = np.zeros(near_idx.size + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=near_idx.size), out=indptr[1:])
        return _Annotator(near_row, indptr, nb[rows, cols], self.dist[cols], int(idx.size))


def _match(rows_of: np.ndarray, ann: _Annotator) -> tuple[np.ndarray, int]:
    """Maximum matching of the predicted pixels whose neighbour-table rows are ``rows_of`` to the GT pixels.

    Returns (matched, count): which of them are matched in a minimum-distance maximum matching, and its size.
    """
    n = rows_of.size
    matched = np.zeros(n, bool)
    if n == 0:
        return matched, 0
    start = ann.indptr[rows_of]
    deg = ann.indptr[rows_of + 1] - start
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    pos = np.arange(indptr[-1]) + np.repeat(start - indptr[:-1], deg)
    gt_col, dist = ann.gt[pos], ann.dist[pos]
    rows = np.repeat(np.arange(n), deg)
    m = ann.n_pixels
    graph = sp.csr_matrix((np.ones(pos.size, np.int8), gt_col, indptr), shape=(n, m))
    mate = maximum_bipartite_matching(graph, perm_type="column")  # per predicted pixel: GT pixel or -1
    count = int(np.count_nonzero(mate >= 0))
    matched[mate >= 0] = True
    free = np.flatnonzero(mate < 0)
    if free.size == 0:  # every predicted pixel is matched in every maximum matching
        return matched, count

    # Predicted pixels reachable from a free one by an even alternating path (u -g-> mate(g)) may be left
    # unmatched by some maximum matching; which ones is decided by distances, on that part of the graph only.
    mate_of_gt = np.full(m, -1, np.int64)
    hit = np.flatnonzero(mate >= 0)
    mate_of_gt[mate[hit]] = hit
    nxt = mate_of_gt[gt_col]
    step = (nxt >= 0) & (nxt != rows)
    src = np.concatenate([rows[step], np.full(free.size, n)])  # node n: a source linked to every free pixel
    dst = np.concatenate([nxt[step], free])
    alt = sp.csr_matrix((np.ones(src.size, np.int8), (src, dst)), shape=(n + 1, n + 1))
    reach = breadth_first_order(alt, n, directed=True, return_predecessors=False)
    in_d = np.zeros(n + 1, bool)
    in_d[reach] = True
    in_d = in_d[:n]

    e = in_d[rows]
    d_ids, d_col = np.unique(rows[e], return_inverse=True)
    g_ids, g_row = np.unique(gt_col[e], return_inverse=True)
    # All of N(D) is matched in every maximum matching, so a full matching of the GT rows exists; the +1 keeps
    # zero distances as explicit edges (every full matching has the same number of edges, so argmin is unchanged).
    sub = sp.csr_matrix((dist[e] + 1.0, (g_row, d_col)), shape=(g_ids.size, d_ids.size))
    _, col = min_weight_full_bipartite_matching(sub)
    matched[d_ids] = False
    matched[d_ids[col]] = True
    return matched, count


def correspond(pred_mask: np.ndarray, gt_mask: np.ndarray, max_dist: float = DEFAULT_MAX_DIST
               ) -> tuple[np.ndarray, int]:
    """Match one binary prediction to one annotator (no thinning).

    Args:
        pred_mask, gt_mask: (H, W) binary maps.
        max_dist: matching radius as a fraction of the image diagonal.
    Returns:
        ((H, W) bool map of matched predicted pixels, number of matched pairs).
    """
    pred_mask = np.asarray(pred_mask) != 0
    gt_mask = np.asarray(gt_mask) != 0
    if pred_mask.shape != gt_mask.shape or pred_mask.ndim != 2:
        raise ValueError(f"shapes differ or are not 2-D: {pred_mask.shape} vs {gt_mask.shape}")
    grid = _Grid(pred_mask.shape, max_dist)
    ann = grid.annotator(gt_mask)
    near = ann.near_row[grid.flat(pred_mask)]
    sel = np.flatnonzero(near >= 0)
    matched, count = _match(near[sel], ann)
    out = np.zeros(pred_mask.size, bool)
    ys, xs = np.nonzero(pred_mask)
    out[(ys * pred_mask.shape[1] + xs)[sel[matched]]] = True
    return out.reshape(pred_mask.shape), count


def evaluate_image(pred: np.ndarray, gts: Sequence[np.ndarray], thresholds: int | Sequence[float] = 99,
                   max_dist: float = DEFAULT_MAX_DIST, apply_thin: bool = True) -> np.ndarray:
    """Benchmark counts of one image at every threshold.

    Args:
        pred: (H, W) float edge probabilities in [0, 1].
        gts: K annotator boundary maps, each (H, W) binary.
        thresholds: a count n (the benchmark's linspace) or an increasing sequence of thresholds.
        max_dist: matching radius as a fraction of the image diagonal.
        apply_thin: thin each binarised map (the benchmark does).
    Returns:
        (T, 4) int64 array of [cntR, sumR, cntP, sumP] per threshold.
    """
    pred = np.asarray(pred, np.float64)
    thr = thresholds_for(thresholds) if np.isscalar(thresholds) else np.asarray(thresholds, np.float64)
    if thr.ndim != 1 or (thr.size > 1 and np.any(np.diff(thr) <= 0)):
        raise ValueError("thresholds must be a count or a strictly increasing 1-D sequence")
    if pred.ndim != 2:
        raise ValueError(f"prediction must be 2-D, got shape {pred.shape}")
    if len(gts) == 0:
        raise ValueError("need at least one annotator")
    for g in gts:
        if np.shape(g) != pred.shape:
            raise ValueError(f"annotator size {np.shape(g)} differs from the prediction's {pred.shape}")
    grid = _Grid(pred.shape, max_dist)
    anns = [grid.annotator(np.asarray(g) != 0) for g in gts]
    sum_r = sum(a.n_pixels for a in anns)

    counts = np.zeros((thr.size, 4), np.int64)
    n_prev = -1
    for k, t in enumerate(thr):
        binary = pred >= max(t, _EPS)
        n_bin = int(np.count_nonzero(binary))
        if n_bin == n_prev:  # nested sets of equal size are equal: same P, same counts
            counts[k] = counts[k - 1]
            continue
        n_prev = n_bin
        pflat = grid.flat(thin(binary) if apply_thin else binary)
        correct = np.zeros(pflat.size, bool)
        cnt_r = 0
        for ann in anns:
            near = ann.near_row[pflat]
            sel = np.flatnonzero(near >= 0)
            key = near[sel]
            if ann.cache_key is not None and np.array_equal(key, ann.cache_key):
                matched, c = ann.cache_val
            else:
                matched, c = _match(key, ann)
                ann.cache_key, ann.cache_val = key, (matched, c)
            correct[sel[matched]] = True
            cnt_r += c
        counts[k] = (cnt_r, sum_r, int(np.count_nonzero(correct)), pflat.size)
    return counts


# ============================================================================================ aggregation


def _rpf(cnt_r, sum_r, cnt_p, sum_p):
    r = np.asarray(cnt_r, np.float64) / np.maximum(_EPS, sum_r)
    p = np.asarray(cnt_p, np.float64) / np.maximum(_EPS, sum_p)
    return r, p, 2 * p * r / np.maximum(_EPS, p + r)


def _best_f_interp(t: np.ndarray, r: np.ndarray, p: np.ndarray) -> tuple[float, float, float, float]:
    """edgesEvalDir's findBestRPF: best F over 100-point linear interpolation between adjacent thresholds.

    Returns (threshold, recall, precision, F).
    """
    if t.size == 1:
        return float(t[0]), float(r[0]), float(p[0]), float(2 * p[0] * r[0] / max(_EPS, p[0] + r[0]))
    a = np.linspace(0.0, 1.0, 100)[None, :]
    rj = r[1:, None] * a + r[:-1, None] * (1 - a)
    pj = p[1:, None] * a + p[:-1, None] * (1 - a)
    tj = t[1:, None] * a + t[:-1, None] * (1 - a)
    fj = 2 * pj * rj / np.maximum(_EPS, pj + rj)
    i = int(np.argmax(fj))  # first maximum in (segment, step) order, as the strict '>' update
    return float(tj.flat[i]), float(rj.flat[i]), float(pj.flat[i]), float(fj.flat[i])


def _ap_r50(r: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """AP and R50 from a dataset P/R curve (edgesEvalDir conventions)."""
    ru, first = np.unique(r, return_index=True)  # ascending unique recalls, first occurrence
    pu = p[first]
    if ru.size > 1:
        pi = np.interp(np.linspace(0.0, 1.0, 101), ru, pu, left=np.nan, right=np.nan)
        ap = float(np.nansum(pi) / 100.0)
        # R50 uses the recall-deduplicated curve, deduplicated again by precision.
        order = np.argsort(-ru, kind="stable")  # edgesEvalDir reverses to descending recall first
        rr, pp = ru[order], pu[order]
        pv, pfirst = np.unique(pp, return_index=True)
        q = max(float(pv[0]), 0.5)
        r50 = float(np.interp(q, pv, rr[pfirst], left=np.nan, right=np.nan)) if pv.size > 1 else (
            float(rr[pfirst[0]]) if q == pv[0] else float("nan"))
    else:
        ap = 0.0
        r50 = float(ru[0])
    return ap, r50


def summarize(thresholds: Sequence[float], counts: np.ndarray, ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Dataset metrics from per-image counts.

    Args:
        thresholds: (T,) thresholds.
        counts: (N, T, 4) [cntR, sumR, cntP, sumP] per image and threshold.
        ids: N image ids for the per-image table.
    Returns:
        dict with ods, ois, ap, r50, n_images, ODS/OIS details, the P/R curve and a per-image table.
    """
    t = np.asarray(thresholds, np.float64)
    c = np.asarray(counts, np.float64)
    if c.ndim != 3 or c.shape[1:] != (t.size, 4):
        raise ValueError(f"counts must be (N, {t.size}, 4), got {c.shape}")
    n = c.shape[0]
    ids = [str(i) for i in (ids if ids is not None else range(n))]
    total = c.sum(0)
    r, p, f = _rpf(*total.T)
    ods_t, ods_r, ods_p, ods_f = _best_f_interp(t, r, p)

    per_image = []
    ois_counts = np.zeros(4)
    for i in range(n):
        ri, pi, fi = _rpf(*c[i].T)
        k = int(np.argmax(fi))  # first best threshold
        ois_counts += c[i, k]
        bt, br, bp, bf = _best_f_interp(t, ri, pi)
        per_image.append({"id": ids[i], "threshold": bt, "recall": br, "precision": bp, "f": bf,
                          "ois_index": k, "counts_at_ois": [int(x) for x in c[i, k]]})
    ois_r, ois_p, ois_f = (float(x) for x in _rpf(*ois_counts))
    ap, r50 = _ap_r50(r, p)
    return {
        "ods": ods_f, "ois": ois_f, "ap": ap, "r50": r50, "n_images": n,
        "ods_threshold": ods_t, "ods_precision": ods_p, "ods_recall": ods_r,
        "ois_precision": ois_p, "ois_recall": ois_r,
        "curve": {"threshold": t.tolist(), "recall": r.tolist(), "precision": p.tolist(), "f": f.tolist(),
                  "cntR": total[:, 0].astype(np.int64).tolist(), "sumR": total[:, 1].astype(np.int64).tolist(),
                  "cntP": total[:, 2].astype(np.int64).tolist(), "sumP": total[:, 3].astype(np.int64).tolist()},
        "per_image": per_image,
    }


# ============================================================================================ directories


def _pair_ids(pred_dir: Path, gt_dir: Path) -> list[str]:
    for d, what in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise FileNotFoundError(f"{what} directory not found: {d}")
    preds = {p.stem for p in pred_dir.glob("*.png")}
    gts = {p.stem for p in gt_dir.glob("*.mat")}
    if not gts:
        raise ValueError(f"no <id>.mat files in {gt_dir}")
    missing_pred = sorted(gts - preds)
    missing_gt = sorted(preds - gts)
    if missing_pred or missing_gt:
        msg = []
        if missing_pred:
            msg.append(f"{len(missing_pred)} ids have ground truth but no {pred_dir}/<id>.png: "
                       f"{', '.join(missing_pred[:10])}{' ...' if len(missing_pred) > 10 else ''}")
        if missing_gt:
            msg.append(f"{len(missing_gt)} predictions have no {gt_dir}/<id>.mat: "
                       f"{', '.join(missing_gt[:10])}{' ...' if len(missing_gt) > 10 else ''}")
        raise ValueError("prediction / ground-truth ids differ; " + "; ".join(msg))
    return sorted(gts)


def _check_pair(pred_path: Path, gt_path: Path) -> None:
    from PIL import Image

    gts = load_gt_boundaries(gt_path)
    try:
        with Image.open(pred_path) as im:
            mode, (w, h) = im.mode, im.size
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{pred_path}: cannot read image: {e}") from e
    if mode != "L":
        raise ValueError(f"{pred_path}: expected an 8-bit single-channel (mode 'L') PNG, got mode {mode!r}")
    if (h, w) != gts[0].shape:
        raise ValueError(f"{pred_path}: size {h}x{w} (HxW) differs from the ground truth {gt_path} "
                         f"{gts[0].shape[0]}x{gts[0].shape[1]}")


def _eval_one(job: tuple[str, str, str, np.ndarray, float]) -> tuple[str, np.ndarray]:
    image_id, pred_path, gt_path, thr, max_dist = job
    return image_id, evaluate_image(load_prediction(pred_path), load_gt_boundaries(gt_path), thr, max_dist)


def evaluate_dir(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, thresholds: int = DEFAULT_THRESHOLDS,
                 max_dist: float = DEFAULT_MAX_DIST, workers: int = 1, progress: bool = False) -> dict[str, Any]:
    """Score every PRED_DIR/<id>.png against GT_DIR/<id>.mat; returns ``summarize``'s dict plus run details."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not max_dist > 0:
        raise ValueError(f"max_dist must be > 0, got {max_dist}")
    thr = thresholds_for(thresholds)
    ids = _pair_ids(pred_dir, gt_dir)
    for i in ids:  # all input errors surface before the expensive part
        _check_pair(pred_dir / f"{i}.png", gt_dir / f"{i}.mat")
    jobs = [(i, str(pred_dir / f"{i}.png"), str(gt_dir / f"{i}.mat"), thr, float(max_dist)) for i in ids]
    start = time.perf_counter()
    results: dict[str, np.ndarray] = {}
    workers = max(1, min(int(workers), len(jobs)))
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="bsds", unit="img", file=sys.stderr, disable=not progress)
    if workers == 1:
        for job in jobs:
            k, v = _eval_one(job)
            results[k] = v
            bar.update()
    else:
        import multiprocessing as mp

        # spawn: no forked BLAS / thread state; workers import only numpy, scipy and this module.
        with mp.get_context("spawn").Pool(workers) as pool:
            for k, v in pool.imap_unordered(_eval_one, jobs, chunksize=1):
                results[k] = v
                bar.update()
    bar.close()
    out = summarize(thr, np.stack([results[i] for i in ids]), ids)
    out.update({"max_dist": float(max_dist), "n_thresholds": int(thr.size), "pred_dir": str(pred_dir),
                "gt_dir": str(gt_dir), "workers": workers, "seconds": time.perf_counter() - start,
                "matching": "maximum-cardinality, then minimum total distance (deterministic); see docs/bsds.md"})
    return out


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become null, numpy scalars / arrays become Python values."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def usable_workers(workers: int = 0) -> int:
    """``workers``, or all CPUs this process may use when it is 0."""
    if workers:
        return int(workers)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


METRICS = ("ods", "ois", "ap", "r50")


def bsds_records(ctx, res: dict, **extra) -> list[dict]:
    """The ``bsds_edges`` records (ODS, OIS, AP, R50) of a JSON-safe result, through the shell's ``ctx``."""
    return [ctx.record("bsds_edges", m, res[m], n_images=res["n_images"], **extra) for m in METRICS]


def bsds_line(res: dict) -> str:
    """``ODS .. OIS .. AP .. R50 .. (N images)`` of a JSON-safe result (nan where a metric is null)."""
    def fmt(v):
        return "nan" if v is None else f"{v:.3f}"

    return "  ".join(f"{m.upper()} {fmt(res[m])}" for m in METRICS) + f"  ({res['n_images']} images)"


def validate_benchmark(cfg) -> None:
    """The benchmark's keys (``thresholds``, ``max_dist``, ``workers``), naming the bad one."""
    from gmae.errors import InputError

    if cfg.thresholds < 1:
        raise InputError(f"thresholds must be >= 1, got {cfg.thresholds}")
    if not cfg.max_dist > 0:
        raise InputError(f"max_dist must be > 0, got {cfg.max_dist}")
    if cfg.workers < 0:
        raise InputError(f"workers must be >= 0, got {cfg.workers}")


# the benchmark's settings, also keys of the zero-shot edges (eval/zeroshot/edges.py)
BENCHMARK_SHORTCUTS = (
    Shortcut("--thresholds", "thresholds", "benchmark thresholds: linspace(1/(n+1), n/(n+1), n)"),
    Shortcut("--max-dist", "max_dist", "benchmark matching radius as a fraction of the image diagonal"),
    Shortcut("--workers", "workers", "worker processes of the benchmark (0: all usable CPUs)"),
)


# ============================================================================================ synthetic data


def synthetic_image(rng: np.random.Generator, height: int = 321, width: int = 481, n_annotators: int = 5,
                    n_regions: int = 25, clutter: float = 0.15) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """A BSDS-like test case: K perturbed piecewise-constant segmentations and a noisy soft prediction.

    The annotators share warped Voronoi regions, each with its own seed jitter, boundary wiggle and merges;
    the prediction is their blurred mean boundary with smoothly varying strength plus background clutter.
    Returns (pred (H, W) uint8, K segmentations (H, W) uint16, K boundary maps (H, W) bool).
    """
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    scale = min(height, width) / 321.0
    seeds = rng.uniform([0, 0], [height, width], (n_regions, 2))
    warp = ndi.gaussian_filter(rng.standard_normal((2, height, width)), (0, 12 * scale, 12 * scale)) * 60 * scale
    segs, bds = [], []
    for _ in range(n_annotators):
        s = seeds + rng.normal(0, 1.0, seeds.shape)
        wy = yy + warp[0] + ndi.gaussian_filter(rng.standard_normal((height, width)), 6 * scale) * 8 * scale
        wx = xx + warp[1] + ndi.gaussian_filter(rng.standard_normal((height, width)), 6 * scale) * 8 * scale
        best = np.zeros((height, width), np.int64)
        best_d = np.full((height, width), np.inf)
        for i in range(n_regions):
            d = (wy - s[i, 0]) ** 2 + (wx - s[i, 1]) ** 2
            closer = d < best_d
            best[closer], best_d[closer] = i, d[closer]
        labels = np.arange(n_regions)
        merge = rng.random(n_regions) < 0.2
        labels[merge] = rng.integers(0, n_regions, int(merge.sum()))
        seg = (labels[best] + 1).astype(np.uint16)
        segs.append(seg)
        bds.append(boundaries_from_segmentation(seg).astype(bool))
    soft = ndi.gaussian_filter(np.mean(bds, axis=0), 1.5)
    soft /= max(soft.max(), 1e-12)
    soft *= 0.4 + 1.2 * ndi.gaussian_filter(rng.random((height, width)), 8)
    soft += clutter * ndi.gaussian_filter(rng.random((height, width)), 1.0)
    pred = np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8)
    return pred, segs, bds


def write_synthetic_set(out_dir: str | os.PathLike, n_images: int, height: int = 321, width: int = 481,
                        n_annotators: int = 5, seed: int = 0, nms: bool = True) -> tuple[Path, Path]:
    """Write ``n_images`` synthetic cases as OUT/pred/<id>.png and OUT/groundTruth/<id>.mat.

    With ``nms`` the soft map goes through ``edge_nms`` first, as CNN outputs do before scoring.
    Returns (pred_dir, gt_dir).
    """
    from PIL import Image

    from eval.edge_nms import edge_nms

    out = Path(out_dir)
    pred_dir, gt_dir = out / "pred", out / "groundTruth"
    pred_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        pred, segs, bds = synthetic_image(rng, height, width, n_annotators)
        if nms:
            pred = np.round(np.clip(edge_nms(pred / 255.0), 0, 1) * 255).astype(np.uint8)
        image_id = f"{100000 + i}"
        Image.fromarray(pred).save(pred_dir / f"{image_id}.png")
        (gt_dir / f"{image_id}.mat").write_bytes(ground_truth_mat_bytes(segs, bds))
    return pred_dir, gt_dir
