"""Speed of FID feature extraction (TF Inception 2015-12-05 pool3 through eval/fid.py) and of the Frechet distance.

Extraction is timed from PNG files on disk (decode + uint8 batch + TF1 bilinear resize to 299 + Inception), the way
``gmae eval recon`` reads its reconstructions, on random 224 x 224 PNGs, after one warm-up batch. The Frechet
distance is timed on 2048-d statistics of full rank (from 4096 random feature vectors), as at ImageNet val scale.

    python benchmarks/fid_speed.py [--images 32] [--batch 16] [--threads 1] [--device cpu]
                                   [--out benchmarks/results/fid_speed.txt]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the report here")
    args = ap.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from eval import fid as fidlib

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = fidlib.resolve_extractor()
    t0 = time.perf_counter()
    extractor = spec.build(args.device)
    t_load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.images):
            # smooth random images (PNG-compressible like photos), not white noise
            small = rng.integers(0, 256, (args.size // 8, args.size // 8, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((args.size, args.size), Image.BICUBIC)
            p = Path(tmp) / f"{i:05d}.png"
            img.save(p)
            files.append(p)
        fidlib.extract_features(files[:args.batch], extractor, args.device, args.batch)  # warm-up
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            feats = fidlib.extract_features(files, extractor, args.device, args.batch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    f = rng.normal(size=(4096, 2048))
    mu, sigma = fidlib.feature_statistics(f)
    mu2, sigma2 = fidlib.feature_statistics(rng.normal(0.1, 1.1, size=(4096, 2048)))
    t = time.perf_counter()
    fidlib.frechet_distance(mu, sigma, mu2, sigma2)
    t_frechet = time.perf_counter() - t

    cpu = platform.processor() or platform.machine()
    lines.append("FID feature extraction speed (eval/fid.py, torch-fidelity FeatureExtractorBase)")
    lines.append(f"extractor: {spec.label()}; device {args.device}; torch {torch.__version__}, "
                 f"{torch.get_num_threads()} thread(s); {os.cpu_count()} cpu visible ({cpu})")
    lines.append(f"{args.images} PNGs of {args.size}x{args.size}, batch {args.batch}, median of {args.repeats} "
                 f"after 1 warm-up batch; features {tuple(feats.shape)}")
    lines.append(f"images/s: {args.images / med:.2f}   (s/image {med / args.images:.3f}; runs "
                 f"{', '.join(f'{x:.2f}' for x in times)} s)")
    lines.append(f"extractor load: {t_load:.2f} s; Frechet distance at D=2048, full rank: {t_frechet:.2f} s")
    lines.append(f"=> 50k ImageNet val images per FID set at this rate: {50000 * med / args.images / 3600:.1f} h")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
