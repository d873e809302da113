"""Read and write the official MAE checkpoint layouts (github.com/facebookresearch/mae).

Released files hold {"model": state dict} with the repository's names:
  encoder-only (``mae_pretrain_vit_base.pth``): ``cls_token``, ``pos_embed`` [1, 1 + L, D],
      ``patch_embed.proj.{weight,bias}``, ``blocks.{i}.*``, ``norm.{weight,bias}`` (timm's names)
  full (``mae_pretrain_vit_base_full.pth``): the above plus ``mask_token``, ``decoder_pos_embed``,
      ``decoder_embed.*``, ``decoder_blocks.{i}.*``, ``decoder_norm.*``, ``decoder_pred.*``

Our :class:`gmae.models.mae.MAE` keeps the same names under ``encoder.`` and ``decoder.``, so the conversion is
a prefix map both ways. The files do not say whether the model was trained with ``norm_pix_loss`` (the
released ``_full`` weights were: build the model with ``loss_type="masked_norm"`` to reconstruct with them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from gmae.io import atomic_torch_save, safe_torch_load
from gmae.models.vit import ENCODER_KEY as _ENCODER_KEY
from gmae.models.vit import ENCODER_PREFIX

DECODER_PREFIX = "decoder."
# MAE's decoder names (the encoder's are the timm / MAE contract of gmae.models.vit)
_DECODER_KEY = re.compile(r"^(mask_token|decoder_pos_embed|decoder_embed\..*|decoder_blocks\.\d+\..*"
                          r"|decoder_norm\.(weight|bias)|decoder_pred\.(weight|bias))$")


def _load_dict(path: str | os.PathLike) -> dict:
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def _strip_wrappers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP's ``module.`` and torch.compile's ``_orig_mod.`` prefixes when every key has them."""
    sd = dict(sd)
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def to_official_mae(state_dict: Mapping[str, torch.Tensor], full: bool = True) -> dict[str, torch.Tensor]:
    """Our MAE state dict (``encoder.*``, ``decoder.*``) -> the official layout's "model" dict.

    ``full=False`` gives the encoder-only layout (any of our models, GMAE too); ``full=True`` adds MAE's
    decoder and refuses state dicts whose decoder is not MAE's (e.g. GMAE's Gaussian decoder).
    """
    sd = _strip_wrappers(state_dict)
    out: dict[str, torch.Tensor] = {}
    foreign: list[str] = []
    for k, v in sd.items():
        if k.startswith(ENCODER_PREFIX) and _ENCODER_KEY.match(k[len(ENCODER_PREFIX):]):
            out[k[len(ENCODER_PREFIX):]] = v
        elif k.startswith(DECODER_PREFIX) and _DECODER_KEY.match(k[len(DECODER_PREFIX):]):
            if full:
                out[k[len(DECODER_PREFIX):]] = v
        elif full or k.startswith(ENCODER_PREFIX):
            foreign.append(k)
    if not any(_ENCODER_KEY.match(k) for k in out):
        raise ValueError("state dict has no 'encoder.*' ViT weights; is this a gmae/MAE model state dict?")
    if foreign:
        raise ValueError(f"keys with no place in the official MAE layout: {sorted(foreign)[:8]}"
                         + (" (not an MAE decoder: export with full=False for the encoder only)" if full else ""))
    if full and not any(_DECODER_KEY.match(k) for k in out):
        raise ValueError("full=True but the state dict has no MAE decoder ('decoder.decoder_embed.*', ...)")
    return out


def from_official_mae(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official layout's "model" dict (encoder-only or full) -> our names (``encoder.*``, ``decoder.*``).

    Raises on keys that belong to neither part (a fine-tuned classifier's ``head``/``fc_norm``, say).
    """
    sd = _strip_wrappers(state_dict)
    out, unknown = {}, []
    for k, v in sd.items():
        if _ENCODER_KEY.match(k):
            out[ENCODER_PREFIX + k] = v
        elif _DECODER_KEY.match(k):
            out[DECODER_PREFIX + k] = v
        else:
            unknown.append(k)
    if unknown:
        raise ValueError(f"not an MAE pretraining state dict: unexpected keys {sorted(unknown)[:8]}")
    return out


def load_official_mae(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> dict:
    """Load released MAE weights (a file path, or its "model" dict) into our :class:`~gmae.models.mae.MAE`.

    Encoder-only files fill the encoder and leave the decoder at its initialisation; full files fill both.
    Every key must fit by name and shape: missing encoder keys, a partial decoder, unexpected keys or shape
    mismatches raise ValueError naming the source. Returns {"layout": "encoder" | "full",
    "decoder_initialised": bool}.
    """
    name = str(source) if isinstance(source, (str, os.PathLike)) else "state dict"
    if isinstance(source, (str, os.PathLike)):
        ckpt = _load_dict(source)
        sd = ckpt.get("model", ckpt)
        if not isinstance(sd, Mapping):
            raise ValueError(f"{name}: 'model' is not a state dict")
    else:
        sd = source
    sd = _strip_wrappers(sd)
    try:
        # our own layout loads too (a gmae MAE checkpoint's "model")
        ours = sd if any(k.startswith((ENCODER_PREFIX, DECODER_PREFIX)) for k in sd) else from_official_mae(sd)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    own = model.state_dict()
    unexpected = sorted(k for k in ours if k not in own)
    if unexpected:
        raise ValueError(f"{name}: keys the model does not have: {unexpected[:8]}")
    enc_missing = sorted(k for k in own if k.startswith(ENCODER_PREFIX) and k not in ours)
    dec_keys = [k for k in own if k.startswith(DECODER_PREFIX)]
    dec_given = [k for k in dec_keys if k in ours]
    if enc_missing:
        raise ValueError(f"{name}: encoder weights missing: {enc_missing[:8]}")
    if dec_given and len(dec_given) != len(dec_keys):
        missing = sorted(set(dec_keys) - set(dec_given))
        raise ValueError(f"{name}: partial decoder, missing {missing[:8]}")
    bad = [f"{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in ours.items()
           if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{name}: shapes do not match the model (other image/patch size or width?): {bad[:4]}")
    model.load_state_dict(ours, strict=False)
    full = bool(dec_given)
    return {"layout": "full" if full else "encoder", "decoder_initialised": not full}


def export_official_mae(checkpoint: str | os.PathLike, out: str | os.PathLike, full: bool = True) -> Path:
    """Write a gmae training checkpoint of an MAE as an official MAE file: {"model": official names}."""
    ckpt = _load_dict(checkpoint)
    sd = ckpt.get("model")
    if not isinstance(sd, Mapping):
        raise ValueError(f"{checkpoint}: no 'model' state dict (is this a gmae training checkpoint?)")
    try:
        official = to_official_mae(sd, full=full)
    except ValueError as e:
        raise ValueError(f"{checkpoint}: {e}") from None
    official = {k: v.detach().float().contiguous().clone() for k, v in official.items()}
    return atomic_torch_save({"model": official}, out)
