"""Checkpoints: atomic training state, and the encoder key contract shared with MAE, timm and detectron2.

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
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gmae.io import atomic_torch_save, safe_torch_load

ENCODER_PREFIX = "encoder."
# keys that belong to the encoder in the timm / MAE contract
_ENCODER_KEY = re.compile(r"^(cls_token|pos_embed|patch_embed\..*|blocks\.\d+\..*|norm\.(weight|bias))$")
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
    return {k: v for k, v in sd.items() if _ENCODER_KEY.match(k)}


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
