"""CPU speed and memory of the tiled PyTorch renderer against the dense definition, side by side.

Each (backend, size) runs in a fresh subprocess, so its peak resident memory (getrusage ru_maxrss) minus the
resident memory just before rendering is that configuration's own peak. A step is forward + backward of an
MSE loss on the rendered RGB, with Gaussians drawn like a trained GMAE decoder's outputs: centres uniform in
(-1, 1)^3, scales uniform in [0.15, 1.0] per axis (c = 1: pixel std about 2-14 px at 224 px), Shoemake
rotations, opacities sigmoid(N(0, 1)), colours uniform.

    python benchmarks/render_cpu.py [--repeats 3] [--threads 1] [--out benchmarks/results/render_cpu.txt]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (height = width, N, B); the dense renderer at 224 px / B = 8 needs about 6-7 GB and half a minute per step.
CONFIGS = [(224, 256, 1), (224, 256, 8), (64, 256, 1), (64, 256, 8)]


def make_gaussians(b: int, n: int, seed: int = 0):
    import torch

    from gmae.render import Gaussians

    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(b, n, 3, generator=gen) * 2 - 1
    scales = 0.15 + 0.85 * torch.rand(b, n, 3, generator=gen)
    u = torch.rand(b, n, 3, generator=gen)
    # Shoemake's uniform rotation map, read as (w, x, y, z) as the GMAE head does.
    quats = torch.stack(
        (
            torch.sqrt(1 - u[..., 0]) * torch.sin(2 * math.pi * u[..., 1]),
            torch.sqrt(1 - u[..., 0]) * torch.cos(2 * math.pi * u[..., 1]),
            torch.sqrt(u[..., 0]) * torch.sin(2 * math.pi * u[..., 2]),
            torch.sqrt(u[..., 0]) * torch.cos(2 * math.pi * u[..., 2]),
        ),
        -1,
    )
    colors = torch.rand(b, n, 3, generator=gen)
    opac = torch.sigmoid(torch.randn(b, n, generator=gen))
    return Gaussians(means, scales, quats, colors, opac)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child(backend: str, size: int, n: int, b: int, repeats: int, warmup: int, threads: int) -> dict:
    """One configuration in this process: median seconds per forward + backward step and peak extra RSS."""
    import torch

    from gmae.render.torch_backend import render_dense, render_tiles

    torch.set_num_threads(threads)
    fn = render_tiles if backend == "torch" else render_dense
    g = make_gaussians(b, n)
    leaves = [t.requires_grad_() for t in (g.means, g.scales, g.quats, g.colors, g.opacities)]
    target = torch.rand(b, size, size, 3, generator=torch.Generator().manual_seed(1))
    from gmae.render import Gaussians

    def step():
        rgb, _, _ = fn(Gaussians(*leaves), size, size)
        loss = (rgb - target).square().mean()
        loss.backward()
        for t in leaves:
            t.grad = None

    base = _rss_mb()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    return {"backend": backend, "size": size, "n": n, "b": b, "repeats": repeats, "times_s": times,
            "median_s": statistics.median(times), "peak_extra_mb": peak - base}


def run_config(backend, size, n, b, repeats, warmup, threads) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("TORCH_CUDA_ARCH_LIST", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", backend, str(size), str(n), str(b),
           "--repeats", str(repeats), "--warmup", str(warmup), "--threads", str(threads)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return {"backend": backend, "size": size, "n": n, "b": b, "error": res.stderr.strip()[-2000:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the dense 224 px / B = 8 run skips it)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both backends")
    p.add_argument("--out", default=None, help="also write the report to this text file")
    p.add_argument("--child", nargs=4, metavar=("BACKEND", "SIZE", "N", "B"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        backend, size, n, b = args.child[0], *map(int, args.child[1:])
        print(json.dumps(child(backend, size, n, b, args.repeats, args.warmup, args.threads)))
        return 0

    import torch

    lines = [
        "gmae.render CPU benchmark: tiled torch backend vs dense definition, forward + backward (MSE on RGB)",
        f"CPU: {cpu_name()}, {os.cpu_count()} cores visible (2-core machine shared with other jobs); "
        f"torch {torch.__version__}, {args.threads} thread(s); median of {args.repeats} step(s) after "
        f"{args.warmup} warm-up(s); peak = max RSS minus RSS before rendering, own subprocess per row",
        "Gaussians: centres U(-1,1)^3, scales U[0.15,1.0] (pixel std ~2-14 px at 224), opacity sigmoid(N(0,1))",
        "",
        f"{'size':>7} {'N':>4} {'B':>3} | {'torch s/step':>12} {'ms/img':>8} {'peak MB':>8} | "
        f"{'dense s/step':>12} {'ms/img':>8} {'peak MB':>8} | {'speed-up':>8} {'mem ratio':>9}",
    ]
    print("\n".join(lines), flush=True)
    records = []
    for size, n, b in CONFIGS:
        row = {}
        for backend in ("torch", "dense"):
            heavy = backend == "dense" and size * size * b >= 224 * 224 * 8
            warm = 0 if heavy else args.warmup
            reps = 1 if heavy else args.repeats
            row[backend] = run_config(backend, size, n, b, reps, warm, args.threads)
            records.append(row[backend])
        t, d = row["torch"], row["dense"]
        if "error" in t or "error" in d:
            line = f"{size:>4}^2 {n:>4} {b:>3} | error: {(t.get('error') or d.get('error'))[-300:]}"
        else:
            line = (
                f"{size:>4}^2 {n:>4} {b:>3} | {t['median_s']:>12.4f} {1e3 * t['median_s'] / b:>8.1f} "
                f"{t['peak_extra_mb']:>8.0f} | {d['median_s']:>12.4f} {1e3 * d['median_s'] / b:>8.1f} "
                f"{d['peak_extra_mb']:>8.0f} | {d['median_s'] / t['median_s']:>7.1f}x "
                f"{d['peak_extra_mb'] / max(t['peak_extra_mb'], 1.0):>8.1f}x"
            )
            if d["repeats"] != args.repeats:
                line += f"  (dense: {d['repeats']} step, no warm-up)"
        lines.append(line)
        print(line, flush=True)
    if args.out:
        from gmae.io import atomic_write_text

        atomic_write_text(args.out, "\n".join(lines) + "\n\nraw:\n" + json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    raise SystemExit(main())
