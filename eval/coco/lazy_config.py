"""detectron2 LazyConfig for ViTDet Mask R-CNN: the helpers our config files call, loading with ``key=value``
overrides, and the rule that rescales the schedule to another batch size.

Config files live in ``configs/coco/`` (``mask_rcnn_vitdet_b_100ep.py``, ``..._l_100ep.py``, ``..._tiny.py``)
and follow detectron2's LazyConfig layout: top-level ``model``, ``dataloader``, ``optimizer``,
``lr_multiplier`` and ``train``. Every iteration count is stored in iterations (warmup included) so an override
of ``train.max_iter`` cannot leave a stale warmup fraction behind.

Batch rule (the reference is ViTDet's 64 GPUs x 1 image): with N processes x b images per process the batch is
B = N * b; when B differs from ``train.reference_batch_size`` (64), :func:`scale_to_batch` multiplies the lr by
B / 64 and every iteration count (``train.max_iter``, the lr milestones, the warmup, ``train.eval_period``,
``train.checkpointer.period``) by 64 / B, rounded to the nearest integer. So the same number of images is
seen with the same lr per image. Example: 8 GPUs x 1 image: B = 8, lr 1.25e-5, 1,475,000 iterations, lr drops
at 1,311,112 and 1,420,368, warmup 2,000.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch.nn as nn

from gmae.errors import UnknownKey

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "coco"
# (dotted key, what it counts) of every schedule length scale_to_batch rescales
ITERATION_KEYS = ("train.max_iter", "lr_multiplier.milestones", "lr_multiplier.warmup_iters",
                  "train.eval_period", "train.checkpointer.period")


def layer_norm(eps: float = 1e-6):
    """``nn.LayerNorm`` with a fixed eps, as the ``norm_layer`` class argument of detectron2's ViT."""
    return partial(nn.LayerNorm, eps=eps)


def vit_lr_decay(lr_decay_rate: float, num_layers: int):
    """ViTDet's layer decay: ``name -> lr factor`` (detectron2's get_vit_lr_decay_rate with these arguments).

    Patch embed and pos embed count as layer 0, block i as layer i + 1, everything outside the backbone as
    layer num_layers + 1; the factor is lr_decay_rate ** (num_layers + 1 - layer).
    """
    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

    return partial(get_vit_lr_decay_rate, lr_decay_rate=lr_decay_rate, num_layers=num_layers)


def max_pool_top_block(in_feature: str = "p5"):
    """detectron2's LastLevelMaxPool (one extra level: stride-2 max pool of ``in_feature``) reading another level.

    LastLevelMaxPool hard-codes "p5"; a patch-8 ViT's pyramid ends at p4, so the tiny config reads that.
    """
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    block = LastLevelMaxPool()
    block.in_feature = in_feature
    return block


def warmup_multistep(max_iter: int, milestones: Sequence[int], warmup_iters: int, warmup_factor: float = 0.001,
                     gamma: float = 0.1):
    """Linear warmup from ``warmup_factor`` over ``warmup_iters`` iterations, then x ``gamma`` at each milestone.

    Returns detectron2's WarmupParamScheduler (an lr multiplier over training progress in [0, 1]).
    """
    from detectron2.solver import WarmupParamScheduler
    from fvcore.common.param_scheduler import MultiStepParamScheduler

    milestones = [int(m) for m in milestones]
    if not 0 < max_iter or any(not 0 < m < max_iter for m in milestones) or milestones != sorted(milestones):
        raise ValueError(f"lr milestones {milestones} must increase inside (0, max_iter={max_iter})")
    if not 0 <= warmup_iters <= max_iter:
        raise ValueError(f"warmup_iters={warmup_iters} must lie in [0, max_iter={max_iter}]")
    values = [gamma ** i for i in range(len(milestones) + 1)]
    steps = MultiStepParamScheduler(values=values, milestones=milestones, num_updates=max_iter)
    return WarmupParamScheduler(steps, warmup_factor=warmup_factor, warmup_length=warmup_iters / max_iter)


def resolve_config(path: str | os.PathLike) -> Path:
    """A config file path, or a name under ``configs/coco/`` (``mask_rcnn_vitdet_b_100ep`` or
    ``coco/mask_rcnn_vitdet_b_100ep``, ``.py`` optional)."""
    p = Path(path)
    names = [p, p.with_suffix(".py")]
    for base in (CONFIG_DIR, CONFIG_DIR.parent):
        names += [base / p, (base / p).with_suffix(".py")]
    for c in names:
        if c.is_file():
            return c
    raise FileNotFoundError(f"COCO config not found: {path} (also looked under {CONFIG_DIR})")


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()):
    """LazyConfig file + ``key=value`` overrides (hydra syntax) -> OmegaConf DictConfig.

    A key that the config does not have is refused (detectron2 would silently add it), naming the override.
    """
    from detectron2.config import LazyConfig
    from omegaconf import OmegaConf

    cfg = LazyConfig.load(str(resolve_config(path)))
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected key=value")
        parent, _, leaf = key.strip().rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        in_list = OmegaConf.is_list(node) and leaf.isdigit() and int(leaf) < len(node)
        if not in_list and (node is None or not OmegaConf.is_dict(node) or leaf not in node):
            raise UnknownKey(f"override {item!r}: the config has no key {key.strip()!r}")
    return LazyConfig.apply_overrides(cfg, list(overrides))


def _get(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_missing=True)


def scale_to_batch(cfg, batch: int) -> dict[str, Any]:
    """Set the total batch to ``batch`` and rescale lr and every iteration count (module docstring) in place.

    Returns {"batch", "reference_batch", "factor" (= batch / reference), and each scaled key -> new value}.
    """
    from omegaconf import OmegaConf

    ref = int(cfg.train.reference_batch_size)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    factor = batch / ref
    out: dict[str, Any] = {"batch": batch, "reference_batch": ref, "factor": factor}
    cfg.dataloader.train.total_batch_size = batch
    if batch == ref:
        return out
    cfg.optimizer.lr = float(cfg.optimizer.lr) * factor
    out["optimizer.lr"] = cfg.optimizer.lr
    for key in ITERATION_KEYS:
        value = _get(cfg, key)
        if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
            new = [max(1, round(int(v) / factor)) for v in value]
        else:
            new = max(1, round(int(value) / factor)) if int(value) > 0 else int(value)
        OmegaConf.update(cfg, key, new, merge=False)
        out[key] = new
    return out
