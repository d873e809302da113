"""GMAE vs MAE: cost of one training step (forward + backward + optimizer), measured side by side.

Both models are built from their pretraining configs (the same registry, optimizer groups, gradient clipping
and autocast as ``gmae.engine.train``), fed the same random ImageNet-normalised batches and masking noise,
and stepped alternately (GMAE, MAE, MAE, GMAE, ...) so drift in clock or temperature hits both alike.
After warm-up steps, the median of many steps is reported. Data loading is excluded: both read the same data.

A second, shorter pass times GMAE's renderer from outside the model (:class:`RenderTimer`: the renderer's
forward and backward; it synchronises the device, so it is kept out of the main timing) and gives the
rendering share of GMAE's step. Paper: GMAE costs 1.5 % more than MAE (ViT-B, A100s, fp32, gsplat).

    OMP_NUM_THREADS=1 python benchmarks/step_cost.py --preset tiny --device cpu \
        --out benchmarks/results/step_cost_cpu.txt
    python benchmarks/step_cost.py --preset vit_b --device cuda --batch 64 128 256 \
        --out benchmarks/results/step_cost_cuda.txt
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gmae.config import load_config  # noqa: E402
from gmae.engine.config import PretrainConfig  # noqa: E402
from gmae.models import create_model  # noqa: E402

PRESETS = {
    # name: (GMAE config, MAE config, default batch sizes)
    "tiny": ("configs/pretrain/gmae_tiny.yaml", "configs/pretrain/mae_tiny.yaml", [32]),
    "vit_b": ("configs/pretrain/gmae_vit_b16_400ep.yaml", "configs/pretrain/mae_vit_b16_400ep.yaml", [64, 128, 256]),
}


class Stepper:
    """One model + its optimizer, stepping exactly as the engine does (minus data loading and DDP)."""

    def __init__(self, cfg: PretrainConfig, device: torch.device):
        from timm.optim import param_groups_weight_decay

        self.cfg, self.device = cfg, device
        self.name = cfg.model.name
        self.model = create_model(cfg.model.name, img_size=cfg.data.img_size,
                                  **cfg.model.constructor_overrides()).to(device).train()
        groups = param_groups_weight_decay(self.model, cfg.optim.weight_decay, no_weight_decay_list=())
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.effective_lr(), betas=tuple(cfg.optim.betas))
        self.amp = None
        if device.type == "cuda" and cfg.run.amp != "none":
            self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.run.amp]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def _autocast(self):
        return torch.autocast("cuda", dtype=self.amp) if self.amp is not None else contextlib.nullcontext()

    def step(self, imgs: torch.Tensor, noise: torch.Tensor) -> float:
        """One optimizer step; returns its wall time in seconds (device synchronised at both ends)."""
        _sync(self.device)
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.model(imgs, noise=noise)
        self.scaler.scale(out["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.optim.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.clip_grad)
        else:  # the engine logs the gradient norm either way
            torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        _sync(self.device)
        return time.perf_counter() - t0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RenderTimer:
    """Seconds a GMAE spends in its renderer, forward and backward, measured around ``model.render``.

    While active, the model's ``render`` is replaced by a timed call (device synchronised at both ends); when
    the image needs a gradient, backward is timed from the gradient reaching the image to the gradient reaching
    the Gaussian centres (the renderer is the first thing backward runs through). ``seconds`` accumulates
    until reset.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model, device
        self.seconds = 0.0

    def __enter__(self) -> "RenderTimer":
        render = self.model.render

        def timed_render(gaussians, height: int, width: int) -> torch.Tensor:
            _sync(self.device)
            t0 = time.perf_counter()
            rgb = render(gaussians, height, width)
            _sync(self.device)
            self.seconds += time.perf_counter() - t0
            if rgb.requires_grad and gaussians.means.requires_grad:
                self._time_backward(rgb, gaussians.means)
            return rgb

        self.model.render = timed_render  # an instance attribute shadows the class's method
        return self

    def __exit__(self, *exc) -> None:
        del self.model.render

    def _time_backward(self, rgb: torch.Tensor, means: torch.Tensor) -> None:
        mark: dict[str, float] = {}

        def started(grad):
            mark["t0"] = time.perf_counter()

        def finished(grad):
            if "t0" in mark:
                _sync(self.device)
                self.seconds += time.perf_counter() - mark.pop("t0")

        rgb.register_hook(started)
        means.register_hook(finished)


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def measure(preset: str, batch: int, device: torch.device, steps: int, warmup: int, render_steps: int,
            seed: int = 0) -> dict:
    """Alternating GMAE / MAE steps at one batch size -> medians, quartiles, ratio and rendering share."""
    gmae_cfg, mae_cfg = (load_config(PretrainConfig, ROOT / p, ["data.root=unused"]) for p in PRESETS[preset][:2])
    torch.manual_seed(seed)
    runners = [Stepper(gmae_cfg, device), Stepper(mae_cfg, device)]
    gmae, mae = runners
    size, n_patches = gmae_cfg.data.img_size, gmae.model.encoder.num_patches
    g = torch.Generator(device="cpu").manual_seed(seed)
    batches = [(torch.randn(batch, 3, size, size, generator=g), torch.rand(batch, n_patches, generator=g))
               for _ in range(4)]
    batches = [(x.to(device), n.to(device)) for x, n in batches]
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    mem: dict[str, float] = {}
    for i in range(warmup + steps):
        imgs, noise = batches[i % len(batches)]
        order = runners if i % 2 == 0 else runners[::-1]
        for r in order:
            track = device.type == "cuda" and i == warmup
            if track:  # the step's own peak, above what both models and their optimizers keep resident
                resident = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            dt = r.step(imgs, noise)
            if i >= warmup:
                times[r.name].append(dt)
            if track:
                mem[r.name] = (torch.cuda.max_memory_allocated(device) - resident) / 2**30
    # rendering share: GMAE alone with its renderer timed (the timer synchronises the device)
    share, timed = [], []
    with RenderTimer(gmae.model, device) as timer:
        for i in range(render_steps):
            imgs, noise = batches[i % len(batches)]
            timer.seconds = 0.0
            dt = gmae.step(imgs, noise)
            timed.append(dt)
            share.append(timer.seconds / dt)
    g_q, m_q = _quartiles(times[gmae.name]), _quartiles(times[mae.name])
    from gmae.render import choose_backend

    visible = int(n_patches * (1 - gmae.model.mask_ratio))
    tokens = {gmae.name: 1 + visible + gmae.model.num_gaussians, mae.name: 1 + n_patches}
    return {"batch": batch, "gmae": gmae.name, "mae": mae.name, "gmae_q": g_q, "mae_q": m_q,
            "ratio": g_q[1] / m_q[1], "render_share": statistics.median(share) if share else float("nan"),
            "render_s": statistics.median([s * t for s, t in zip(share, timed)]) if share else float("nan"),
            "mem_gib": mem, "steps": steps, "warmup": warmup, "render_steps": render_steps,
            "backend": choose_backend(gmae.model.render_backend, device), "amp": str(gmae.amp or "float32"),
            "decoder_tokens": tokens}


def _header(args, device: torch.device) -> list[str]:
    lines = ["GMAE vs MAE training-step cost (forward + backward + AdamW step; data loading excluded)",
             f"command: python benchmarks/step_cost.py {' '.join(sys.argv[1:])}",
             f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}"]
    if device.type == "cuda":
        lines.append(f"device: {torch.cuda.get_device_name(device)}")
    else:
        lines.append(f"device: cpu, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
                     f"load average at start {os.getloadavg()[0]:.2f} (other jobs add noise)")
    lines.append(f"preset {args.preset}: {PRESETS[args.preset][0]} vs {PRESETS[args.preset][1]}")
    return lines


def _rows(r: dict, device: torch.device) -> list[str]:
    def ms(q):
        return f"{q[1] * 1e3:9.1f} ms (IQR {q[0] * 1e3:.1f}-{q[2] * 1e3:.1f})"

    out = [f"batch {r['batch']}  ({r['steps']} alternating steps after {r['warmup']} warm-up, medians; "
           f"autocast {r['amp']}; renderer '{r['backend']}')",
           f"  {r['gmae']:<24}{ms(r['gmae_q'])}",
           f"  {r['mae']:<24}{ms(r['mae_q'])}",
           f"  ratio GMAE / MAE        {r['ratio']:.3f}  (GMAE costs {100 * (r['ratio'] - 1):+.1f} %; paper +1.5 %)",
           f"  GMAE rendering share    {100 * r['render_share']:.1f} % of its step "
           f"({r['render_s'] * 1e3:.1f} ms, renderer forward + backward, median of {r['render_steps']} timed steps)"]
    t = r["decoder_tokens"]
    out.append(f"  decoder sequence        {r['gmae']} {t[r['gmae']]} tokens (CLS + visible + Gaussians), "
               f"{r['mae']} {t[r['mae']]} (CLS + all patches)")
    if r["mem_gib"]:
        out.append("  step peak memory        " + ", ".join(f"{k} {v:.2f} GiB" for k, v in r["mem_gib"].items()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default: the preset's)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--render-steps", type=int, default=10, help="extra GMAE steps with the renderer timed")
    ap.add_argument("--out", default=None, help="also write the report to this file")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device available")
    if args.steps < 2 or args.warmup < 0:
        ap.error("--steps must be >= 2 and --warmup >= 0")
    device = torch.device(args.device)
    lines = _header(args, device)
    print("\n".join(lines), flush=True)
    for batch in args.batch or PRESETS[args.preset][2]:
        rows = _rows(measure(args.preset, batch, device, args.steps, args.warmup, args.render_steps), device)
        print("\n".join(rows), flush=True)
        lines += rows
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.out:
        from gmae.io import atomic_write_text

        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
