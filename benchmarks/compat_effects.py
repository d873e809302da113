"""The deviation ledger's "measured effect" column: each authors'-code item switched on alone, measured.

Two kinds of figure, both on CPU and written to one text file:

* at initialisation, with one set of weights and one batch: what the item changes by itself (raw Gaussian
  parameters for the decoder gather, rendered pixels and gradients for gsplat v0.1.0, the loss for the summed
  "all" loss, the lr of the first epoch for the per-epoch schedule, crop areas for the TF crop);
* after training: the tiny GMAE preset (``pretrain/gmae_tiny``) for ``--steps`` steps on the embedded tiny set,
  once per item, with the same seed, data order and masking; the mean loss of the last 20 steps. A second seed
  of the paper setting gives the run-to-run spread that any single item's difference should be read against.

    OMP_NUM_THREADS=2 python benchmarks/compat_effects.py --steps 300 --out benchmarks/results/compat_effects_cpu.txt
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gmae.config import load_config  # noqa: E402
from gmae.data.tiny import generate_tiny  # noqa: E402
from gmae.engine.config import PretrainConfig  # noqa: E402
from gmae.engine.train import Trainer, authors_epoch_lr_factor  # noqa: E402
from gmae.models.gmae import GMAE  # noqa: E402
from gmae.render import render  # noqa: E402

# item -> overrides of the tiny preset that switch on that item alone (None: measured at init only)
ITEMS = {
    "paper (default)": [],
    "paper, seed 1 (run-to-run spread)": ["run.seed=1"],
    "1 decoder gather + 2/3 gsplat v0.1.0 + 7 summed loss (model.compat=authors)": ["model.compat=authors"],
    "4 per-epoch lr (optim.lr_interval=epoch)": ["optim.lr_interval=epoch"],
    "5 torchvision crop instead of MAE's TF crop (data.crop=torchvision)": ["data.crop=torchvision"],
    "6 probes in the main AdamW and clip (run.probe_optimizer=shared)": ["run.online_probe=true",
                                                                        "run.probe_optimizer=shared"],
    "6' probes with their own AdamW (run.probe_optimizer=separate)": ["run.online_probe=true"],
    "all of 1-7 (gmae_vit_b16_400ep_authors switches)": ["model.compat=authors", "optim.lr_interval=epoch",
                                                         "run.online_probe=true", "run.probe_optimizer=shared"],
}


def init_effects(lines: list[str]) -> None:
    torch.manual_seed(0)
    kw = dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3, decoder_embed_dim=128,
              decoder_depth=2, decoder_num_heads=4, num_gaussians=96)
    paper = GMAE(**kw).eval()
    authors = GMAE(**kw, compat="authors").eval()
    authors.load_state_dict(paper.state_dict())
    imgs = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        latent, _, _, ids_keep = paper.encoder(imgs, 0.75, torch.rand(8, 64))
        a, b = paper.decoder(latent, ids_keep), authors.decoder(latent, ids_keep)
    rel = float((a - b).norm() / a.norm())
    lines.append(f"1 decoder gather: raw Gaussian parameters differ by {100 * rel:.1f} % (relative L2), same weights")

    g = paper.decode_gaussians(latent, ids_keep)
    g = type(g)(*(t.detach().requires_grad_() for t in (g.means, g.scales, g.quats, g.colors, g.opacities)))
    outs = {}
    target = torch.rand(8, 64, 64, 3)
    for compat in (None, "gsplat-0.1.0"):
        rgb = render(g, 64, 64, backend="torch", compat=compat).rgb
        grads = torch.autograd.grad(((rgb - target) ** 2).mean(), [g.means, g.colors, g.opacities])
        outs[compat] = (rgb.detach(), grads)
    d_rgb = (outs[None][0] - outs["gsplat-0.1.0"][0]).abs()
    lines.append(f"2/3 gsplat v0.1.0 rendering at init: |rgb diff| max {float(d_rgb.max()):.3f}, mean "
                 f"{float(d_rgb.mean()):.4f}; relative gradient difference (MSE to a random target) "
                 + ", ".join(f"{n} {float((x - y).norm() / x.norm()):.3f}" for n, x, y in
                             zip(("means", "colours", "opacities"), outs[None][1], outs["gsplat-0.1.0"][1])))

    for loss in ("all",):
        m = GMAE(**kw, loss_type=loss, compat="authors").eval()
        p = GMAE(**kw, loss_type=loss).eval()
        p.load_state_dict(m.state_dict())
        noise = torch.rand(16, 64)
        x = torch.randn(16, 3, 64, 64)
        with torch.no_grad():
            ratio = float(m(x, noise=noise)["loss"] / p(x, noise=noise)["loss"])
        lines.append(f"7 loss 'all' summed over a 16-image forward: {ratio:.1f}x ours (reaches training only "
                     "through the 2.0 gradient clip and AdamW's epsilon)")
    lines.append(f"4 per-epoch lr: epoch 0 at {authors_epoch_lr_factor(0, 5, 400):.2f} x peak for all of it "
                 f"(ours ramps from 0); epoch 5 at {authors_epoch_lr_factor(5, 5, 400):.5f}; epoch 399 at "
                 f"{authors_epoch_lr_factor(399, 5, 400):.1f}")

    from torchvision import transforms as T

    from gmae.data.transforms import TFRandomResizedCrop

    img = Image.new("RGB", (500, 375))
    for name, fn in (("TF (MAE)", TFRandomResizedCrop.get_params), ("torchvision", T.RandomResizedCrop.get_params)):
        torch.manual_seed(0)
        areas = [h * w / (500 * 375) for _, _, h, w in (fn(img, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(20000))]
        lines.append(f"5 crop {name}: mean area fraction {statistics.mean(areas):.3f}, "
                     f"P(area > 0.9) {100 * sum(a > 0.9 for a in areas) / len(areas):.1f} % (500 x 375, 20k draws)")


def train_effects(lines: list[str], steps: int, data: Path, work: Path) -> None:
    lines.append("")
    lines.append(f"tiny preset (pretrain/gmae_tiny: ViT 192 x 4, 96 Gaussians, 64 px, batch 32), {steps} steps, "
                 "mean loss of the last 20 steps (masked-patch MSE in [0, 1] RGB)")
    base = None
    for name, overrides in ITEMS.items():
        out = work / f"run{len(lines)}"
        cfg = load_config(PretrainConfig, "pretrain/gmae_tiny", [
            f"data.root={data}", f"run.out_dir={out}", f"optim.max_steps={steps}", "run.progress=false",
            "run.tensorboard=false", "run.log_every_steps=1", f"run.save_every_steps={10 * steps}", *overrides])
        t0 = time.perf_counter()
        Trainer(cfg).train()
        log = [r for r in map(json.loads, open(out / "metrics.jsonl")) if "event" not in r]
        last = statistics.mean(r["loss"] for r in log[-20:])
        base = last if base is None else base
        lines.append(f"  {name:<78s} {last:.5f}  ({100 * (last - base) / base:+.1f} % vs paper; "
                     f"{time.perf_counter() - t0:.0f} s)")
        print(lines[-1], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="training steps per item (default 300)")
    ap.add_argument("--out", default=None, help="also write the figures to this text file")
    args = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [f"compat_effects: {platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__},"
             f" commit {commit}", ""]
    init_effects(lines)
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "tiny"
        generate_tiny(data, seed=0, size=64)
        train_effects(lines, args.steps, data / "imagenet", Path(tmp))
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
