"""GPU check of the renderer on a CUDA machine without network: install and build gsplat, parity, timings.

Run from the repository root on the CUDA machine (Python 3.12, torch 2.11 cu130 there; see
shared/spec/renderer-and-env.md), with gsplat's pure-Python wheel brought along:

    pip download gsplat==1.5.3 --no-deps -d wheels/          # here, with network; do not commit wheels/
    python3 benchmarks/gpu_check.py --wheel wheels/gsplat-1.5.3-py3-none-any.whl --out "$OUT"

Sections, each timed and wrapped in try/except so one failure is recorded and the rest still run:
  env       versions, GPU, nvcc
  install   pip install --no-deps --no-index --target <site> <wheel>, then import gsplat from there
  build     TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16, then gsplat's JIT build of its CUDA extension (minutes)
  pytest    the CUDA-marked tests of tests/test_render.py
  parity    gsplat vs torch backend on random batches, different Gaussians per image: max / mean abs
            difference of rgb, alpha, depth and of the gradients of a random linear loss
  timing    forward and forward + backward at B = 64 and 256, N = 256, 224 x 224, both backends,
            with peak GPU memory
  mae_step  hook for the ViT-B MAE step timing (:func:`time_mae_step`, to be filled in by its owners)
Results go to <out>/gpu_check.json (rewritten after every section, so a timeout keeps what finished)
and <out>/gpu_check.txt.

--dry-run runs on CPU and exercises everything except CUDA: it installs the wheel into a temporary site
(pure Python, importable without CUDA), skips the build (and never sets TORCH_CUDA_ARCH_LIST), uses the
dense renderer as a stand-in for gsplat in the parity section and tiny sizes for the timings.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FIELDS = ("means", "scales", "quats", "colors", "opacities")


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


def random_gaussians(b: int, n: int, seed: int, device, *, scale_lo=0.15, scale_hi=1.0, extreme_opacity=False):
    """Gaussians like a trained decoder's, different per image (centres U(-1,1)^3, scales U[lo, hi])."""
    import torch

    from gmae.render import Gaussians

    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(b, n, 3, generator=gen) * 2 - 1
    scales = scale_lo + (scale_hi - scale_lo) * torch.rand(b, n, 3, generator=gen)
    quats = torch.randn(b, n, 4, generator=gen)
    colors = torch.rand(b, n, 3, generator=gen)
    opac = torch.sigmoid(torch.randn(b, n, generator=gen))
    if extreme_opacity:
        opac[:, 0::5] = 1.0
        opac[:, 1::7] = 0.9995
        opac[:, 2::9] = 0.003
    return Gaussians(means, scales, quats, colors, opac).to(device)


def sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()


def render_with_grads(g, h, w, backend, weights=None, seed=0):
    """Render with fresh leaves; returns outputs, gradients of sum(weights * outputs) and the weights."""
    import torch

    from gmae.render import Gaussians, render

    leaves = [getattr(g, f).detach().clone().requires_grad_() for f in FIELDS]
    out = render(Gaussians(*leaves), h, w, background=torch.tensor([1.0, 1.0, 1.0]), backend=backend)
    outs = (out.rgb, out.alpha, out.depth)
    if weights is None:
        gen = torch.Generator(device=out.rgb.device).manual_seed(seed)
        weights = [torch.randn(o.shape, generator=gen, device=o.device) for o in outs]
        # depth = sum w z / alpha is ill-conditioned where alpha is tiny; weight it only where coverage is solid
        weights[2] = weights[2] * (out.alpha.detach() > 0.2)
    loss = sum((o * wt).sum() for o, wt in zip(outs, weights))
    grads = torch.autograd.grad(loss, leaves)
    return [o.detach() for o in outs], [gr.detach() for gr in grads], weights, out.backend


def diff_stats(a, b) -> dict:
    import torch

    d = (a.double() - b.double()).abs().flatten()
    if not d.numel():
        return {"max_abs": 0.0}
    # A pixel flipping across the alpha = 1/255 cut (fast-math exp) shows as a rare large difference; the
    # 99.9th percentile and the fraction over 1e-4 tell such flips from a systematic mismatch.
    srt = torch.sort(d).values
    return {
        "max_abs": srt[-1].item(),
        "mean_abs": d.mean().item(),
        "p99_9_abs": srt[min(len(srt) - 1, int(0.999 * len(srt)))].item(),
        "frac_over_1e-4": (d > 1e-4).double().mean().item(),
        "rel_l2": (d.norm() / b.double().norm().clamp_min(1e-30)).item(),
        "ref_max_abs": b.double().abs().max().item(),
        "nonfinite": int((~torch.isfinite(a)).sum().item()),
    }


# ----------------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------------


def section_env(ctx: dict) -> dict:
    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST"),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_mem_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
    nvcc = shutil.which("nvcc")
    info["nvcc"] = nvcc
    if nvcc:
        res = subprocess.run([nvcc, "--version"], capture_output=True, text=True)
        info["nvcc_version"] = res.stdout.strip().splitlines()[-1] if res.stdout else res.stderr.strip()
    return info


def section_install(ctx: dict) -> dict:
    args = ctx["args"]
    site = args.site or (tempfile.mkdtemp(prefix="gsplat_site_") if args.dry_run else "/tmp/gsplat_site")
    if args.wheel:
        if not os.path.isfile(args.wheel):
            raise FileNotFoundError(
                f"--wheel {args.wheel!r} does not exist (pip download gsplat==1.5.3 --no-deps -d wheels/)"
            )
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "--no-cache-dir",
               "--upgrade", "--target", site, args.wheel]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"pip install failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
        sys.path.insert(0, site)
        importlib.invalidate_caches()
    for mod in [m for m in sys.modules if m == "gsplat" or m.startswith("gsplat.")]:
        del sys.modules[mod]  # import the freshly installed copy
    import gsplat

    missing = [m for m in ("jaxtyping", "rich", "ninja", "numpy") if importlib.util.find_spec(m) is None]
    return {"site": site if args.wheel else None, "gsplat_version": gsplat.__version__,
            "gsplat_path": os.path.dirname(gsplat.__file__), "missing_requirements": missing}


def section_build(ctx: dict) -> dict:
    args = ctx["args"]
    if args.dry_run:
        return {"skipped": "dry run: no CUDA build (TORCH_CUDA_ARCH_LIST left unset)"}
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: cannot build gsplat's extension")
    os.environ["TORCH_CUDA_ARCH_LIST"] = args.arch
    os.environ["MAX_JOBS"] = str(args.jobs)
    t0 = time.perf_counter()
    from gsplat.cuda._backend import _C

    if _C is None:
        raise RuntimeError("gsplat's CUDA extension did not load (no CUDA toolkit found?)")
    return {"build_or_load_s": time.perf_counter() - t0, "arch": args.arch, "max_jobs": args.jobs,
            "extension": getattr(_C, "__file__", str(_C))}


def section_pytest(ctx: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_render.py"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1200)
    tail = (res.stdout + res.stderr).strip().splitlines()[-15:]
    if res.returncode not in (0, 5):
        raise RuntimeError("pytest -m cuda failed:\n" + "\n".join(tail))
    return {"returncode": res.returncode, "tail": tail}


PARITY_CASES = [
    # (B, N, H, W, seed, options)
    (8, 256, 224, 224, 0, {}),
    (4, 16, 64, 96, 1, {"scale_lo": 0.05, "scale_hi": 2.0}),  # N < 32, non-square
    (6, 128, 120, 200, 2, {"scale_lo": 0.01, "scale_hi": 1.5, "extreme_opacity": True}),
]


def section_parity(ctx: dict) -> dict:
    args, device = ctx["args"], ctx["device"]
    other = "dense" if args.dry_run else "gsplat"
    cases = PARITY_CASES
    if args.dry_run:
        cases = [(2, 24, 40, 56, 0, {}), (2, 12, 20, 33, 1, {"extreme_opacity": True})]
    results = []
    for b, n, h, w, seed, opts in cases:
        rec = {"B": b, "N": n, "H": h, "W": w, "seed": seed, "options": opts, "compared": f"{other} vs torch"}
        try:
            g = random_gaussians(b, n, seed, device, **opts)
            vals_o, grads_o, weights, used = render_with_grads(g, h, w, other, seed=seed)
            vals_t, grads_t, _, _ = render_with_grads(g, h, w, "torch", weights=weights)
            rec["backend_used"] = used
            rec["values"] = {k: diff_stats(a, r) for k, a, r in zip(("rgb", "alpha", "depth"), vals_o, vals_t)}
            rec["grads"] = {f: diff_stats(a, r) for f, a, r in zip(FIELDS, grads_o, grads_t)}
            # batch independence: image 0 alone equals image 0 of the batch
            from gmae.render import Gaussians

            g0 = Gaussians(*(getattr(g, f)[:1] for f in FIELDS))
            solo, _, _, _ = render_with_grads(g0, h, w, other, weights=[wt[:1] for wt in weights])
            rec["batch_vs_single_rgb_max_abs"] = (solo[0] - vals_o[0][:1]).abs().max().item()
        except Exception as e:  # keep the other cases
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc()[-3000:]
        results.append(rec)
    return {"cases": results}


def time_step(fn, device, repeats: int, warmup: int) -> dict:
    import torch

    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    rec = {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "repeats": repeats}
    if device.type == "cuda":
        rec["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return rec


def section_timing(ctx: dict) -> dict:
    import torch

    from gmae.render import Gaussians, render

    args, device = ctx["args"], ctx["device"]
    backends = ["dense", "torch"] if args.dry_run else ["gsplat", "torch"]
    size = 32 if args.dry_run else args.size
    batches = [2] if args.dry_run else args.batches
    out = []
    for b in batches:
        g = random_gaussians(b, args.n, 10 + b, device)
        target = torch.rand(b, size, size, 3, device=device)
        for backend in backends:
            rec = {"backend": backend, "B": b, "N": args.n, "H": size, "W": size}
            try:
                leaves = [getattr(g, f).detach().clone().requires_grad_() for f in FIELDS]

                def forward():
                    with torch.no_grad():
                        render(Gaussians(*leaves), size, size, backend=backend)

                def forward_backward():
                    o = render(Gaussians(*leaves), size, size, backend=backend)
                    (o.rgb - target).square().mean().backward()
                    for t in leaves:
                        t.grad = None

                rec["forward"] = time_step(forward, device, args.repeats, 2)
                rec["forward_backward"] = time_step(forward_backward, device, args.repeats, 2)
                rec["forward_backward"]["per_image_ms"] = rec["forward_backward"]["median_ms"] / b
            except Exception as e:
                rec["error"] = f"{type(e).__name__}: {e}"
                rec["traceback"] = traceback.format_exc()[-3000:]
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            out.append(rec)
    return {"runs": out}


def time_mae_step(device, batch: int, dry_run: bool) -> dict:
    """ViT-B/224 training steps (forward + backward + AdamW) of GMAE and MAE side by side, alternating, medians;
    GMAE's rendering share from its own timer. Reuses benchmarks/step_cost.py (the same measurement as on CPU)."""
    from pathlib import Path

    import torch

    spec = importlib.util.spec_from_file_location("step_cost", Path(__file__).with_name("step_cost.py"))
    step_cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(step_cost)
    if dry_run:  # the CPU dry run exercises the same code at the tiny preset
        return step_cost.measure("tiny", 8, torch.device("cpu"), steps=2, warmup=1, render_steps=1)
    runs = [step_cost.measure("vit_b", b, device, steps=20, warmup=5, render_steps=5) for b in (64, 256)]
    return {"runs": runs}


def section_mae_step(ctx: dict) -> dict:
    return time_mae_step(ctx["device"], 64, ctx["args"].dry_run)


SECTIONS = [
    ("env", section_env),
    ("install", section_install),
    ("build", section_build),
    ("pytest", section_pytest),
    ("parity", section_parity),
    ("timing", section_timing),
    ("mae_step", section_mae_step),
]


# ----------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------


def summarize(report: dict) -> str:
    lines = [f"gmae.render GPU check ({'DRY RUN on CPU' if report['dry_run'] else 'CUDA'}), {report['started']}"]
    for name, sec in report["sections"].items():
        status = sec.get("status")
        lines.append(f"\n[{name}] {status} in {sec.get('seconds', 0):.1f} s")
        if "error" in sec:
            lines.append("  " + sec["error"])
            continue
        res = sec.get("result") or {}
        if name == "env":
            lines.append("  " + ", ".join(f"{k}={v}" for k, v in res.items()))
        elif name in ("install", "build"):
            lines.append("  " + json.dumps(res))
        elif name == "pytest":
            lines.extend("  " + t for t in res.get("tail", []))
        elif name == "parity":
            for c in res.get("cases", []):
                head = f"  B={c['B']} N={c['N']} {c['H']}x{c['W']} {c['options'] or ''} ({c['compared']})"
                if "error" in c:
                    lines.append(head + ": ERROR " + c["error"])
                    continue
                lines.append(head)
                for k, v in list(c["values"].items()) + [("d" + f, v) for f, v in c["grads"].items()]:
                    lines.append(f"    {k:<11} max {v['max_abs']:.2e} p99.9 {v['p99_9_abs']:.2e} "
                                 f"mean {v['mean_abs']:.2e} >1e-4 {v['frac_over_1e-4']:.1e} relL2 {v['rel_l2']:.1e} "
                                 f"(|ref| max {v['ref_max_abs']:.3g})"
                                 + (f" NONFINITE {v['nonfinite']}" if v["nonfinite"] else ""))
                lines.append(f"    batch vs single image rgb max {c['batch_vs_single_rgb_max_abs']:.3e}")
        elif name == "timing":
            for r in res.get("runs", []):
                head = f"  {r['backend']:<6} B={r['B']:<4} N={r['N']} {r['H']}x{r['W']}"
                if "error" in r:
                    lines.append(head + ": ERROR " + r["error"])
                    continue
                fb = r["forward_backward"]
                mem = f", peak {fb['peak_mem_gib']:.2f} GiB" if "peak_mem_gib" in fb else ""
                lines.append(f"{head}: fwd {r['forward']['median_ms']:.2f} ms, fwd+bwd {fb['median_ms']:.2f} ms "
                             f"({fb['per_image_ms']:.3f} ms/img){mem}")
        else:
            lines.append("  " + json.dumps(res))
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str) -> None:
    from gmae.io import atomic_write_json, atomic_write_text

    atomic_write_json(os.path.join(out_dir, "gpu_check.json"), report)
    atomic_write_text(os.path.join(out_dir, "gpu_check.txt"), summarize(report))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", default=None, help="gsplat wheel to install (omit if gsplat is importable already)")
    p.add_argument("--site", default=None, help="pip --target directory for the wheel (default /tmp/gsplat_site)")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "out", "gpu_check"))
    p.add_argument("--arch", default="9.0", help="TORCH_CUDA_ARCH_LIST for the build (H100/H200: 9.0)")
    p.add_argument("--jobs", type=int, default=16, help="MAX_JOBS for the build")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--sections", nargs="+", default=[s for s, _ in SECTIONS], help="subset of sections to run")
    p.add_argument("--dry-run", action="store_true", help="CPU: exercise everything but the CUDA calls")
    args = p.parse_args(argv)

    import torch

    if args.dry_run:
        os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    os.makedirs(args.out, exist_ok=True)
    report = {"dry_run": args.dry_run, "device": str(device), "args": vars(args),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sections": {}}
    ctx = {"args": args, "device": device}
    for name, fn in SECTIONS:
        if name not in args.sections:
            continue
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            result = fn(ctx)
            sec = {"status": "skipped" if isinstance(result, dict) and "skipped" in result else "ok", "result": result}
        except NotImplementedError as e:
            sec = {"status": "not implemented", "error": str(e)}
        except Exception as e:
            sec = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
        sec["seconds"] = time.perf_counter() - t0
        report["sections"][name] = sec
        write_report(report, args.out)
        print(summarize({**report, "sections": {name: sec}}).split("\n", 1)[1], flush=True)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_report(report, args.out)
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')} and gpu_check.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
