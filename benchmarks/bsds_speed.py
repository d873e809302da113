"""Speed of the BSDS500 evaluator (eval/bsds_benchmark.py) next to pyEdgeEval on the same generated inputs.

Generates N BSDS-like cases (481 x 321, 5 annotators; soft maps NMS-ed as CNN outputs are, or raw with --raw),
scores them with 99 thresholds and max_dist 0.0075, and prints images/s and the extrapolated time for the
200-image test split. pyEdgeEval (GPL, test/benchmark-only dependency) runs on the first --ref-images of them,
one process, with its own thinning; the metrics of both on that common subset are printed too.

    OMP_NUM_THREADS=1 python benchmarks/bsds_speed.py 20 --workers 2 --ref-images 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmae.data.bsds import load_gt_boundaries  # noqa: E402

from eval import bsds_benchmark  # noqa: E402


def _pyedgeeval_counts(pred_path: Path, gt_path: Path, thr: np.ndarray) -> np.ndarray:
    from pyEdgeEval.common.binary_label.evaluate_boundaries import evaluate_boundaries_threshold_multiple_gts

    pred = bsds_benchmark.load_prediction(pred_path)
    gts = [g.astype(np.uint8) for g in load_gt_boundaries(gt_path)]
    cr, sr, cp, sp = evaluate_boundaries_threshold_multiple_gts(thr, pred, gts, max_dist=0.0075, apply_thinning=True)
    return np.stack([cr, sr, cp, sp], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n_images", type=int, nargs="?", default=20, help="generated images for our evaluator")
    ap.add_argument("--workers", type=int, default=2, help="worker processes for the parallel run (default 2)")
    ap.add_argument("--ref-images", type=int, default=1, help="images to time pyEdgeEval on (0: skip)")
    ap.add_argument("--raw", action="store_true", help="score the blurred maps without NMS (thick, harder)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    thr = bsds_benchmark.thresholds_for(99)
    lines = [f"# bsds_speed: {args.n_images} images 481x321, 5 annotators, 99 thresholds, max_dist 0.0075, "
             f"{'raw blurred' if args.raw else 'NMS-ed'} soft maps",
             f"# host: {platform.machine()}, {os.cpu_count()} cpu visible, python {platform.python_version()}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pred_dir, gt_dir = bsds_benchmark.write_synthetic_set(tmp, args.n_images, 321, 481, 5, seed=args.seed,
                                                              nms=not args.raw)
        lines.append(f"generated inputs in {time.perf_counter() - t0:.1f} s")
        ids = sorted(p.stem for p in gt_dir.glob("*.mat"))

        # One process, image by image: the per-image cost.
        t0 = time.perf_counter()
        ours = {i: bsds_benchmark.evaluate_image(bsds_benchmark.load_prediction(pred_dir / f"{i}.png"),
                                       load_gt_boundaries(gt_dir / f"{i}.mat"), thr) for i in ids}
        t1 = time.perf_counter() - t0
        ips1 = len(ids) / t1
        lines.append(f"ours, 1 process : {t1:7.1f} s for {len(ids)} images = {ips1:6.3f} images/s "
                     f"-> 200 images in {200 / ips1 / 60:5.1f} min")

        if args.workers > 1:
            t0 = time.perf_counter()
            res = bsds_benchmark.evaluate_dir(pred_dir, gt_dir, 99, 0.0075, workers=args.workers)
            tw = time.perf_counter() - t0
            ipsw = len(ids) / tw
            lines.append(f"ours, {args.workers} workers: {tw:7.1f} s for {len(ids)} images = {ipsw:6.3f} images/s "
                         f"-> 200 images in {200 / ipsw / 60:5.1f} min (evaluate_dir, incl. input checks, spawn)")
        else:
            res = bsds_benchmark.summarize(thr, np.stack([ours[i] for i in ids]), ids)
        lines.append(f"ours, all {len(ids)}: ODS {res['ods']:.4f} OIS {res['ois']:.4f} AP {res['ap']:.4f} "
                     f"R50 {res['r50']:.4f}")

        n_ref = min(args.ref_images, len(ids))
        if n_ref > 0:
            import importlib.util

            if importlib.util.find_spec("pyEdgeEval") is None:
                lines.append("pyEdgeEval not installed: reference timing skipped")
                n_ref = 0
        if n_ref > 0:
            t0 = time.perf_counter()
            ref = [_pyedgeeval_counts(pred_dir / f"{i}.png", gt_dir / f"{i}.mat", thr) for i in ids[:n_ref]]
            tr = time.perf_counter() - t0
            ipsr = n_ref / tr
            lines.append(f"pyEdgeEval 0.2.8, 1 process: {tr:7.1f} s for {n_ref} images = {ipsr:6.4f} images/s "
                         f"-> 200 images in {200 / ipsr / 3600:5.2f} h (1 process)")
            lines.append(f"speed-up, 1 process vs 1 process: {ips1 / ipsr:.0f}x")
            a = bsds_benchmark.summarize(thr, np.stack([ours[i] for i in ids[:n_ref]]))
            b = bsds_benchmark.summarize(thr, np.stack(ref))
            lines.append(f"common {n_ref} image(s): ours ODS {a['ods']:.4f} OIS {a['ois']:.4f} AP {a['ap']:.4f} | "
                         f"pyEdgeEval counts, same aggregation: ODS {b['ods']:.4f} OIS {b['ois']:.4f} AP {b['ap']:.4f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
