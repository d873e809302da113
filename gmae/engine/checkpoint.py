"""Checkpoints: atomic training state, the encoder key contract shared with MAE, timm and detectron2, and the
one loader every command uses to turn a checkpoint file into a model (:func:`require_file`,
:func:`load_encoder_weights` + :func:`build_vit` for an encoder, :func:`load_pretrained_model` for a whole GMAE/MAE,
:func:`stored_model_name` for its label).

Training checkpoint (``checkpoint.pth``): {"model": full state dict, "optimizer", "scheduler", "scaler",
"step", "epoch", "config", "arch", "rng", "probes", "probe_optimizer", "nonfinite_skipped", "finished"}.

Encoder export (``gmae export``): {"model": encoder state dict with timm / MAE names
(``patch_embed.proj.*``, ``cls_token``, ``pos_embed`` [1, 1 + L, D], ``blocks.{i}.*``, ``norm.*``),
"encoder_arch": {...}}: timm's VisionTransformer loads "model" strictly; detectron2's ViT loads it by suffix.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gmae.io import atomic_torch_save, safe_torch_load
from gmae.models.vit import ENCODER_KEY, ENCODER_PREFIX

_HEADS_BY_DIM = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16}


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop could touch, in weights_only-loadable types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomic (temp file + rename): a run killed mid-save keeps its previous checkpoint."""
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def check_resumable(ckpt: dict[str, Any], path: Path, config: dict[str, Any], sections: Sequence[str],
                    source_sha256: str | None) -> None:
    """Refuse to resume a run trained on another encoder or with other settings in ``sections``."""
    saved_src = ckpt.get("source_sha256")
    if saved_src is not None and source_sha256 is not None and saved_src != source_sha256:
        raise ValueError(f"{path}: cannot resume, it was trained on another encoder checkpoint "
                         f"(sha256 {saved_src[:12]}..., this one {source_sha256[:12]}...); use another --out")
    saved = ckpt.get("config", {})
    for section in sections:
        if saved.get(section) != config.get(section):
            raise ValueError(f"{path}: cannot resume, its {section}.* settings differ from this config "
                             f"(saved {saved.get(section)}); use another --out")


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def encoder_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pick the encoder's tensors out of any of our / MAE's / timm's layouts, with timm names."""
    sd = _strip_prefixes(sd)
    if any(k.startswith(ENCODER_PREFIX) for k in sd):
        sd = {k[len(ENCODER_PREFIX):]: v for k, v in sd.items() if k.startswith(ENCODER_PREFIX)}
    return {k: v for k, v in sd.items() if ENCODER_KEY.match(k)}


def infer_encoder_arch(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture from tensor shapes (heads from the usual width -> heads table when not stored)."""
    for key in ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight"):
        if key not in sd:
            raise KeyError(f"encoder state dict lacks {key!r}; is this a ViT checkpoint?")
    dim, chans, patch, _ = sd["patch_embed.proj.weight"].shape
    n_tokens = sd["pos_embed"].shape[1]
    has_cls = "cls_token" in sd
    grid = int(math.isqrt(n_tokens - int(has_cls)))
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    mlp_ratio = sd["blocks.0.mlp.fc1.weight"].shape[0] / dim
    if dim not in _HEADS_BY_DIM:
        raise ValueError(f"cannot infer the number of heads for width {dim}; store 'encoder_arch' in the file")
    return dict(img_size=grid * patch, patch_size=patch, in_chans=chans, embed_dim=dim, depth=depth,
                num_heads=_HEADS_BY_DIM[dim], mlp_ratio=mlp_ratio)


def load_encoder_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Any checkpoint with a ViT encoder (ours, our export, official MAE, a timm state dict) ->
    (encoder state dict in timm names, architecture dict). Raises naming the file if no encoder is found."""
    ckpt = load_checkpoint(path)
    sd = ckpt.get("model", ckpt)
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: 'model' is not a state dict")
    enc = encoder_state_dict(sd)
    if not enc:
        raise ValueError(f"{path}: no ViT encoder weights found (looked for patch_embed/pos_embed/blocks keys)")
    arch = ckpt.get("encoder_arch") or (ckpt.get("arch") or {}).get("encoder")
    try:
        arch = dict(arch) if arch else infer_encoder_arch(enc)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return enc, arch


def export_encoder(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the encoder of ``checkpoint`` in the MAE / timm key contract ({"model": ..., "encoder_arch": ...})."""
    enc, arch = load_encoder_weights(checkpoint)
    enc = {k: v.detach().float().contiguous().clone() for k, v in enc.items()}
    return atomic_torch_save({"model": enc, "encoder_arch": arch}, out)


def build_timm_vit(arch: dict[str, Any], num_classes: int = 0, **kw):
    """A timm VisionTransformer with the encoder's architecture (qkv bias, LayerNorm eps 1e-6)."""
    from functools import partial

    import torch.nn as nn
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=arch["img_size"], patch_size=arch["patch_size"], in_chans=arch["in_chans"],
                             embed_dim=arch["embed_dim"], depth=arch["depth"], num_heads=arch["num_heads"],
                             mlp_ratio=arch["mlp_ratio"], qkv_bias=True, num_classes=num_classes,
                             norm_layer=partial(nn.LayerNorm, eps=1e-6), **kw)


# ----------------------------------------------------------------------------------------------------------
# checkpoint file -> model
# ----------------------------------------------------------------------------------------------------------

def require_file(path: str | os.PathLike | None, what: str = "checkpoint") -> Path:
    """The one "does the input file exist" check, before any work: raises InputError naming ``what``."""
    from gmae.errors import InputError

    if path is None:
        raise InputError(f"no {what} given")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    return p


def stored_model_name(path: str | os.PathLike) -> str:
    """The model name a checkpoint records (our training checkpoints), else the file name without suffix."""
    try:  # mmap: only the small metadata objects are read
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a label is best effort; the weights were loaded already
        ckpt = None
    if isinstance(ckpt, dict):
        arch = ckpt.get("arch")
        if isinstance(arch, dict) and isinstance(arch.get("model"), str):
            return arch["model"]
        model_cfg = (ckpt.get("config") or {}).get("model") if isinstance(ckpt.get("config"), dict) else None
        if isinstance(model_cfg, dict) and isinstance(model_cfg.get("name"), str):
            return model_cfg["name"]
    return Path(path).stem


def build_vit(state_dict: dict[str, torch.Tensor], arch: dict[str, Any], img_size: int, *, num_classes: int = 0,
              source: str = "checkpoint", **vit_kwargs):
    """A timm VisionTransformer with the encoder's architecture at ``img_size``, loaded from ``state_dict``.

    The position embedding [1, 1 + L, D] is resampled (bicubic, CLS row kept) when the grid differs.
    Only the new classifier parts (``head.*``, ``fc_norm.*``) may be missing, and only the final ``norm.*`` may
    be left over (MAE drops it when fine-tuning with global pooling + fc_norm); anything else raises.
    """
    import torch.nn as nn
    from timm.layers import resample_abs_pos_embed

    patch = int(arch["patch_size"])
    if img_size % patch:
        raise ValueError(f"data.img_size={img_size} is not a multiple of the patch size {patch} of {source}")
    vit = build_timm_vit({**arch, "img_size": img_size}, num_classes=num_classes, **vit_kwargs)
    sd = dict(state_dict)
    if "pos_embed" in sd and sd["pos_embed"].shape != vit.pos_embed.shape:
        grid = img_size // patch
        sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"].float(), [grid, grid], num_prefix_tokens=1)
    missing, unexpected = vit.load_state_dict(sd, strict=False)
    allowed_missing = {k for k in vit.state_dict() if k.startswith(("head.", "fc_norm."))}
    allowed_unexpected = {"norm.weight", "norm.bias"} if isinstance(vit.norm, nn.Identity) else set()
    bad_missing = sorted(set(missing) - allowed_missing)
    bad_unexpected = sorted(set(unexpected) - allowed_unexpected)
    if bad_missing or bad_unexpected:
        raise ValueError(f"{source}: encoder weights do not fit a ViT with arch {arch}: missing {bad_missing[:6]}, "
                         f"unexpected {bad_unexpected[:6]}")
    return vit


def load_pretrained_model(checkpoint: str | os.PathLike, needs: str | None = None):
    """(model, PretrainConfig) of a GMAE/MAE training checkpoint, rebuilt from its stored config, in eval mode.

    ``needs`` names a method the caller will use (``"reconstruct"``, ``"predict_gaussians"``): a model without it
    is refused by name (e.g. an MAE checkpoint given to a zero-shot read-out). Raises InputError naming the file.
    """
    from gmae.config import config_from_dict
    from gmae.engine.config import PretrainConfig
    from gmae.errors import InputError
    from gmae.models import create_model

    path = require_file(checkpoint)
    try:
        ckpt = load_checkpoint(path)
        if "config" not in ckpt or "model" not in ckpt:
            raise ValueError("not a gmae training checkpoint (no 'config'/'model')")
        cfg = config_from_dict(PretrainConfig, ckpt["config"], source=str(path))
        model = create_model(cfg.model.name, img_size=cfg.data.img_size, **cfg.model.constructor_overrides())
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        if missing or unexpected:
            raise ValueError(f"weights do not fit {cfg.model.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    except (ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().strip("'\"").splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(first if first.startswith(str(path)) else f"{path}: {first}") from e
    if needs is not None and not hasattr(model, needs):
        raise InputError(f"{path}: model {cfg.model.name!r} has no {needs}() (needs a "
                         f"{'GMAE' if needs == 'predict_gaussians' else 'GMAE or MAE'} checkpoint)")
    model.eval()
    return model, cfg
