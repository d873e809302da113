"""Export a checkpoint: the encoder in the MAE / timm key contract, or predicted Gaussians as .ply.

  gmae export --checkpoint CKPT --out encoder.pth
      {"model": encoder weights with timm names, "encoder_arch": {...}}; loads strictly into
      timm.create_model("vit_base_patch16_224", num_classes=0) and, by the same names, into detectron2's ViT.
  gmae export --checkpoint CKPT --gaussians IMG [IMG ...] --out DIR
      DIR/<image stem>.ply in the standard 3DGS layout (x y z, normals, f_dc_*, opacity logit, log scales,
      rotation w x y z) and DIR/<image stem>.json with the 14 raw head outputs per Gaussian.
  gmae export --checkpoint CKPT --out mae_full.pth --format mae_full
      an MAE baseline checkpoint in the official MAE layout with its decoder ({"model": ...}, the layout of
      mae_pretrain_vit_base_full.pth; see gmae/models/mae_checkpoint.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from gmae.io import atomic_write, atomic_write_json

SH_C0 = 0.28209479177387814  # zeroth spherical-harmonic basis constant used by 3DGS for f_dc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (checkpoint.pth) or any ViT checkpoint")
    parser.add_argument("--out", required=True, help="output file (encoder) or dir (--gaussians)")
    parser.add_argument("--gaussians", nargs="+", default=None, metavar="IMAGE",
                        help="export the Gaussians predicted for these images (mask ratio 0) instead")
    parser.add_argument("--format", choices=("encoder", "mae_full"), default="encoder",
                        help="encoder: timm/MAE encoder contract (default); mae_full: official MAE layout with "
                             "the decoder (MAE baseline checkpoints only)")


def refuse_overwriting_checkpoint(checkpoint: str | Path, out: str | Path) -> None:
    """An export must never replace its source or any training checkpoint (that would lose the run)."""
    from gmae.errors import InputError
    from gmae.io import same_file

    if same_file(checkpoint, out):
        raise InputError(f"--out {out} is the --checkpoint itself; refusing to replace it with an export")
    if Path(out).is_file():
        try:  # mmap: only the small top-level objects are read
            existing = torch.load(out, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - not a checkpoint we can read: not a training run to protect
            existing = None
        if isinstance(existing, dict) and "optimizer" in existing:
            raise InputError(f"--out {out} is a training checkpoint; refusing to replace it with an export")


def run(args: argparse.Namespace) -> int:
    if not args.gaussians:
        refuse_overwriting_checkpoint(args.checkpoint, args.out)
    if args.gaussians:
        paths = export_gaussians(args.checkpoint, args.gaussians, args.out)
        print(f"wrote {len(paths)} .ply files to {args.out}")
    elif args.format == "mae_full":
        from gmae.models.mae_checkpoint import export_official_mae

        export_official_mae(args.checkpoint, args.out, full=True)
        print(f"wrote the MAE encoder and decoder (official layout) to {args.out}")
    else:
        from gmae.engine.checkpoint import export_encoder

        export_encoder(args.checkpoint, args.out)
        print(f"wrote encoder to {args.out}")
    return 0


def write_ply(path: str | Path, means, scales, quats, colors, opacities) -> Path:
    """Binary little-endian .ply in the 3DGS layout (log scales, logit opacity, f_dc from RGB)."""
    n = means.shape[0]
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
             + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    eps = 1e-7
    op = np.clip(opacities, eps, 1 - eps)
    cols = np.concatenate([
        means, np.zeros((n, 3)), (colors - 0.5) / SH_C0, np.log(op / (1 - op))[:, None],
        np.log(np.maximum(scales, eps)), quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), eps),
    ], axis=1).astype("<f4")
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n"
    header += "".join(f"property float {name}\n" for name in names) + "end_header\n"
    return atomic_write(path, lambda f: (f.write(header.encode("ascii")), f.write(cols.tobytes())))


def export_gaussians(checkpoint: str | Path, images: list[str], out_dir: str | Path) -> list[Path]:
    from gmae.data.images import load_rgb
    from gmae.data.transforms import eval_transform

    for p in images:
        if not Path(p).is_file():
            raise FileNotFoundError(f"image not found: {p}")
    from gmae.engine.checkpoint import load_pretrained_model

    model, cfg = load_pretrained_model(checkpoint, needs="decode_gaussians")
    tf = eval_transform(cfg.data.img_size)
    out_dir = Path(out_dir)
    written = []
    for p in images:
        img = tf(load_rgb(p)).unsqueeze(0)
        with torch.no_grad():
            latent, _, _, ids_keep = model.encoder(img, 0.0)
            raw = model.decoder(latent, ids_keep)[0].float()
            g = model.decode_gaussians(latent, ids_keep)
        stem = Path(p).stem
        arrays = {k: getattr(g, k)[0].numpy().astype(np.float64) for k in
                  ("means", "scales", "quats", "colors", "opacities")}
        written.append(write_ply(out_dir / f"{stem}.ply", **arrays))
        atomic_write_json(out_dir / f"{stem}.json", {
            "image": str(p), "checkpoint": str(checkpoint), "camera": "paper (centres orthographic, depth z + 8)",
            "channels": "0:3 centre, 3:6 scale, 6:9 rotation (Shoemake), 9 unused, 10:13 colour, 13 opacity",
            "raw": raw.tolist()})
    return written
