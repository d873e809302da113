"""An exported GMAE / MAE encoder -> detectron2's ViT backbone, loaded through detectron2's checkpointer and
verified: every backbone weight must come from the encoder.

Key contract (``gmae.engine.checkpoint``): the encoder uses timm / MAE names ``patch_embed.proj.*``,
``pos_embed`` [1, 1 + G*G, D], ``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.*``,
``cls_token``, ``norm.*``. detectron2's ViT has the same module names under ``backbone.net.``; it keeps the
pretraining ``pos_embed`` (CLS row included, resampled at run time by ``get_abs_pos``), has no CLS token and
no final norm (those two are dropped), and adds relative-position tables ``attn.rel_pos_{h,w}`` that start at
zero (the only backbone.net weights that may be missing).

detectron2 only warns about shape mismatches and missing keys, so :func:`load_backbone` reads the
checkpointer's report (missing / unexpected keys, incorrect shapes) and raises if any encoder weight was not
loaded or any ViT weight other than the rel-pos tables was left at its initialisation.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch

PREFIX = "backbone.net."
_DROPPED = re.compile(r"^(cls_token|norm\.(weight|bias))$")
_ZERO_INIT = re.compile(r"\.attn\.rel_pos_[hw]$")
logger = logging.getLogger(__name__)


class BackboneLoadError(ValueError):
    """The encoder checkpoint does not fill detectron2's ViT (the message lists the keys)."""


def encoder_to_detectron2(encoder: Mapping[str, torch.Tensor], prefix: str = PREFIX) -> dict[str, torch.Tensor]:
    """Encoder state dict in timm / MAE names -> detectron2 ViT names (``backbone.net.`` + the same name).

    ``cls_token`` and the final ``norm.*`` are dropped (ViTDet uses neither); tensors are shared, not copied.
    """
    return {prefix + k: v for k, v in encoder.items() if not _DROPPED.match(k)}


def check_architecture(arch: Mapping[str, Any], net_cfg: Any, source: str) -> None:
    """Refuse, before any model is built, an encoder whose shape differs from the config's ViT.

    ``net_cfg`` is the config's ``model.backbone.net`` node (or any object with ViT's argument names).
    """
    get = (lambda k, d=None: net_cfg.get(k, d)) if hasattr(net_cfg, "get") else (
        lambda k, d=None: getattr(net_cfg, k, d))
    pairs = [("patch_size", "patch_size"), ("embed_dim", "embed_dim"), ("depth", "depth"),
             ("num_heads", "num_heads"), ("in_chans", "in_chans"), ("mlp_ratio", "mlp_ratio"),
             ("img_size", "pretrain_img_size")]
    defaults = {"in_chans": 3, "mlp_ratio": 4.0, "pretrain_img_size": 224}
    bad = []
    for arch_key, cfg_key in pairs:
        if arch_key not in arch:
            continue
        want = get(cfg_key, defaults.get(cfg_key))
        if want is None or float(arch[arch_key]) != float(want):
            bad.append(f"{arch_key}={arch[arch_key]} but model.backbone.net.{cfg_key}={want}")
    if bad:
        raise BackboneLoadError(f"{source}: the encoder does not match the config's ViT: " + "; ".join(bad)
                                + " (pick the config for this encoder, or override those keys)")


def load_backbone(model: torch.nn.Module, encoder: Mapping[str, torch.Tensor], source: str = "checkpoint",
                  prefix: str = PREFIX) -> dict[str, Any]:
    """Load ``encoder`` (timm / MAE names) into ``model``'s ViT with detectron2's DetectionCheckpointer.

    Raises :class:`BackboneLoadError` naming the keys if the checkpointer reports a shape mismatch or an
    unexpected key, if a ViT weight other than ``attn.rel_pos_{h,w}`` stayed missing, or if a loaded tensor
    differs from the encoder's. Returns {"loaded": n, "zero_init": [rel-pos keys], "dropped": [encoder keys
    ViTDet does not use]}.
    """
    from detectron2.checkpoint import DetectionCheckpointer

    converted = encoder_to_detectron2(encoder, prefix)
    dropped = sorted(k for k in encoder if _DROPPED.match(k))
    net_keys = [k for k in model.state_dict() if k.startswith(prefix)]
    if not net_keys:
        raise BackboneLoadError(f"the detection model has no parameters under {prefix!r}; is it a ViTDet model?")
    checkpointer = DetectionCheckpointer(model)
    report = checkpointer._load_model({"model": dict(converted), "matching_heuristics": False})
    problems = []
    if report.incorrect_shapes:
        problems.append("shape mismatch (checkpoint vs model): " + ", ".join(
            f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in report.incorrect_shapes[:8]))
    if report.unexpected_keys:
        problems.append("not in the model: " + ", ".join(report.unexpected_keys[:8]))
    missing_net = [k for k in report.missing_keys if k.startswith(prefix)]
    not_loaded = [k for k in missing_net if not _ZERO_INIT.search(k)]
    if not_loaded:
        problems.append(f"{len(not_loaded)} backbone weights not in the checkpoint: "
                        + ", ".join(k[len(prefix):] for k in not_loaded[:8]))
    if problems:
        raise BackboneLoadError(f"{source}: refusing to train, the encoder did not load into detectron2's ViT: "
                                + "; ".join(problems))
    state = model.state_dict()
    differ = [k for k, v in converted.items() if not torch.equal(state[k].cpu(), v.to(state[k].dtype).cpu())]
    if differ:
        raise BackboneLoadError(f"{source}: loaded tensors differ from the encoder's: {differ[:8]}")
    zero_init = sorted(k for k in missing_net if _ZERO_INIT.search(k))
    logger.info("backbone: %d tensors loaded from %s; %d rel-pos tables start at zero; unused: %s",
                len(converted), source, len(zero_init), dropped)
    return {"loaded": len(converted), "zero_init": zero_init, "dropped": dropped}


# the only names detectron2's PeriodicCheckpointer gives our runs' checkpoints (model_0000099.pth, model_final.pth)
_RESUME_NAME = re.compile(r"^model_(\d+|final)\.pth$")
LAST_CHECKPOINT = "last_checkpoint"


def resume_file(out_dir: str | Path) -> Path | None:
    """The checkpoint ``out_dir/last_checkpoint`` names, or None when there is none.

    detectron2 follows that text file to any path and unpickles ``*.pkl`` files, so a crafted run folder could
    run code: only our own checkpoint names, as regular files directly inside ``out_dir``, are accepted.
    """
    from gmae.errors import InputError

    out_dir = Path(out_dir)
    marker = out_dir / LAST_CHECKPOINT
    if not marker.is_file():
        return None
    name = marker.read_text(errors="replace").strip()
    if not _RESUME_NAME.match(name):
        raise InputError(f"{marker}: refusing to resume from {name!r}: only model_<iteration>.pth or "
                         f"model_final.pth inside {out_dir} are resumed")
    path = out_dir / name
    if path.is_symlink() or not path.is_file():
        raise InputError(f"{marker}: names {path}, which is not a regular file in {out_dir}")
    from gmae.io import safe_torch_load

    safe_torch_load(path, mmap=True)  # a file that is no plain weights is refused now, not after the model is built
    return path


def safe_checkpointer(model: torch.nn.Module, save_dir: str | Path, **checkpointables):
    """detectron2's DetectionCheckpointer that loads only :func:`resume_file`-style names inside ``save_dir``,
    with ``torch.load(weights_only=True)`` (never ``pickle.load``)."""
    from detectron2.checkpoint import DetectionCheckpointer

    from gmae.errors import InputError
    from gmae.io import safe_torch_load

    class _SafeCheckpointer(DetectionCheckpointer):
        def _load_file(self, filename):
            p = Path(filename)
            if p.parent.resolve() != Path(self.save_dir).resolve() or not _RESUME_NAME.match(p.name) \
                    or p.is_symlink():
                raise InputError(f"refusing to load {p}: only model_<iteration>.pth or model_final.pth inside "
                                 f"{self.save_dir} are resumed")
            loaded = safe_torch_load(p)
            if not isinstance(loaded, dict) or "model" not in loaded:
                raise InputError(f"{p}: not a detectron2 training checkpoint (no 'model')")
            return loaded

    return _SafeCheckpointer(model, str(save_dir), **checkpointables)
