"""End-to-end fine-tuning, the MAE protocol: ``gmae eval finetune --checkpoint CKPT --data DIR [--config FILE]
[--out DIR] [--results DIR] [key=value ...]``.

timm VisionTransformer initialised from the encoder, global average pool of the patch tokens + LayerNorm (fc_norm),
head trunc-normal std 2e-5, drop path 0.1. AdamW (0.9, 0.999), weight decay 0.05 (none on 1-D parameters,
pos_embed, cls_token), layer-wise lr decay 0.65 (timm's param_groups_layer_decay: scale = decay^(L + 1 - layer),
embeddings layer 0, block i layer i + 1, fc_norm / head layer L + 1), lr = blr x batch / 256 (5e-4 x 1024 / 256),
5 warmup epochs then per-iteration half-cycle cosine to 1e-6, 100 epochs. timm's RandAugment rand-m9-mstd0.5-inc1,
RandomErasing 0.25 (pixel), Mixup 0.8 / CutMix 1.0 with label smoothing 0.1 and SoftTargetCrossEntropy; optional
weight EMA. ViT-L: configs/finetune/vit_l16.yaml (50 epochs, blr 1e-3, decay 0.75, drop path 0.2).

Resumes from ``checkpoint.pth`` in the out dir; writes ``config.yaml``, ``metrics.jsonl`` and the ``finetune``
records (top1, top5 of the final weights and best_top1 over the evaluated epochs, as MAE reports; the same for the
EMA weights when enabled) to the results store.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from eval.command import Context, EvalCommand, Outcome
from eval.classification import (ClassifierLoop, ClassifierRunConfig, EvalDataConfig, InputError, ScheduleConfig,
                                 autocast, eval_loader, evaluate_classifier, load_inputs, training_outcome,
                                 validate_common)
from gmae.engine.loop import cosine_schedule


@dataclass
class FinetuneModelConfig:
    drop_path: float = 0.1
    # avg: mean of the patch tokens + fc_norm (MAE); token: the CLS token after the final norm
    global_pool: str = "avg"
    head_init_std: float = 2e-5


@dataclass
class FinetuneAugConfig:
    auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1"
    color_jitter: Optional[float] = None  # timm disables it under RandAugment anyway
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    mixup: float = 0.8
    cutmix: float = 1.0
    cutmix_minmax: Optional[List[float]] = None
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    smoothing: float = 0.1


@dataclass
class FinetuneOptimConfig(ScheduleConfig):
    epochs: int = 100
    warmup_epochs: float = 5.0
    batch_size: int = 1024
    batch_per_device: int = 128
    blr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    layer_decay: float = 0.65
    clip_grad: Optional[float] = None


@dataclass
class EmaConfig:
    enabled: bool = False
    decay: float = 0.9999


@dataclass
class FinetuneConfig:
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    aug: FinetuneAugConfig = field(default_factory=FinetuneAugConfig)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    run: ClassifierRunConfig = field(default_factory=lambda: ClassifierRunConfig(out_dir="runs/finetune"))
    # evaluate (and log to metrics.jsonl) every this many epochs (MAE: every epoch, reporting the best); the
    # records hold the final weights' top1/top5 and best_top1 over every evaluation (null: the final one only)
    eval_every_epochs: Optional[int] = 1


def mixup_active(aug: FinetuneAugConfig) -> bool:
    return aug.mixup > 0 or aug.cutmix > 0 or aug.cutmix_minmax is not None


def validate(cfg: FinetuneConfig) -> None:
    validate_common(cfg)
    if cfg.model.global_pool not in ("avg", "token"):
        raise InputError(f"model.global_pool must be avg or token, got {cfg.model.global_pool!r}")
    if not 0 < cfg.optim.layer_decay <= 1:
        raise InputError(f"optim.layer_decay must lie in (0, 1], got {cfg.optim.layer_decay}")
    if len(cfg.optim.betas) != 2:
        raise InputError(f"optim.betas must have two values, got {cfg.optim.betas}")
    if mixup_active(cfg.aug) and cfg.aug.mixup_mode == "batch" and cfg.optim.batch_per_device % 2:
        raise InputError(f"mixup/cutmix in batch mode needs an even optim.batch_per_device, got "
                         f"{cfg.optim.batch_per_device}")


def train_transform(cfg: FinetuneConfig):
    """timm's ImageNet train transform: RandomResizedCrop (bicubic) + flip, RandAugment, Normalize, RandomErasing."""
    from timm.data import create_transform

    from gmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    a = cfg.aug
    tf = create_transform(input_size=cfg.data.img_size, is_training=True, color_jitter=a.color_jitter,
                          auto_augment=a.auto_augment, interpolation="bicubic", re_prob=a.reprob,
                          re_mode=a.remode, re_count=a.recount, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    _allow_zero_bit_posterize(tf)
    return tf


def _posterize(img, bits_to_keep, **_):
    """timm's posterize, also for 0 bits. RandAugment "inc1" maps magnitude 10 (reached by m9 + mstd 0.5 noise)
    to 0 bits; Pillow < 13 returned a black image for that (mask 0), Pillow >= 13 raises ValueError."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _allow_zero_bit_posterize(tf) -> None:
    """Swap :func:`_posterize` into the posterize ops of the RandAugment inside ``tf`` (these objects only; timm's
    module is left alone)."""
    from timm.data import auto_augment

    for t in getattr(tf, "transforms", []):
        for op in getattr(t, "ops", []):
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = _posterize


def layer_decay_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> List[Dict[str, Any]]:
    """timm's ``param_groups_layer_decay`` on a timm VisionTransformer (MAE / BEiT convention): each group has an
    ``lr_scale`` = layer_decay^(L + 1 - layer) (embeddings 0, block i i + 1, everything after the blocks L + 1) that
    the scheduler multiplies in, and weight decay except on 1-D parameters, pos_embed and cls_token."""
    from timm.optim import param_groups_layer_decay

    return param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay,
                                    no_weight_decay_list=tuple(model.no_weight_decay()))


def build_classifier(state_dict, arch, cfg: FinetuneConfig, num_classes: int, source: str = "checkpoint"):
    """The encoder as a timm classifier: [B, 3, H, W] -> logits [B, num_classes]."""
    from timm.layers import trunc_normal_

    from gmae.engine.checkpoint import build_vit

    m = cfg.model
    model = build_vit(state_dict, arch, cfg.data.img_size, num_classes=num_classes, source=source,
                      drop_path_rate=m.drop_path, global_pool=m.global_pool, fc_norm=m.global_pool == "avg")
    trunc_normal_(model.head.weight, std=m.head_init_std)
    nn.init.zeros_(model.head.bias)
    return model


class FinetuneTrainer(ClassifierLoop):
    """Fine-tunes ``model`` (imgs -> logits) on ``train_set`` with ``train_transform`` (seeded per sample)."""

    protocol = "finetune"
    resume_sections = ("model", "aug", "optim", "ema")

    def __init__(self, cfg: FinetuneConfig, model: nn.Module, train_set: Dataset, val_set: Dataset, num_classes: int,
                 train_transform=None, dist_info=None, source_sha256: Optional[str] = None):
        from timm.data import Mixup
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        super().__init__(cfg, train_set, train_transform, dist_info, source_sha256)
        self.val_set, self.num_classes = val_set, num_classes
        self.model = model.to(self.device)
        self.ddp_model = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        o, a = cfg.optim, cfg.aug
        groups = layer_decay_param_groups(self.model, o.weight_decay, o.layer_decay)
        self.optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=tuple(o.betas))
        self.scheduler = cosine_schedule(self.optimizer, self.total_steps, self.warmup_steps, o.min_lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.run.amp == "fp16")
        self.mixup = None
        if mixup_active(a):
            self.mixup = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, cutmix_minmax=a.cutmix_minmax,
                               prob=a.mixup_prob, switch_prob=a.mixup_switch_prob, mode=a.mixup_mode,
                               label_smoothing=a.smoothing, num_classes=num_classes)
            self.criterion = SoftTargetCrossEntropy()
        elif a.smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(smoothing=a.smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()
        self.ema = None
        if cfg.ema.enabled:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(self.model, decay=cfg.ema.decay)

    def modules_state(self) -> Dict[str, Any]:
        return {"model": self.model.state_dict(), "scaler": self.scaler.state_dict(),
                "ema": self.ema.module.state_dict() if self.ema is not None else None}

    def load_modules_state(self, state: Dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])

    def train_step(self, batches) -> Dict[str, float]:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(self.accum):
            x, y = next(batches)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.mixup is not None:
                x, y = self.mixup(x, y)  # soft targets [B, C]
            last = micro == self.accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.ddp_model.no_sync()
            with sync:
                with autocast(self.cfg.run.amp, self.device):
                    logits = self.ddp_model(x)
                loss = self.criterion(logits.float(), y)
                self.scaler.scale(loss / self.accum).backward()
            total += float(loss.detach()) / self.accum
        if self.cfg.optim.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model, step=self.step)
        return {"loss": self.rank_mean(total)}

    def evaluate(self) -> Dict[str, float]:
        loader = eval_loader(self.val_set, self.cfg.data, self.dist, self.device)
        show = self.dist.is_main and self.cfg.run.progress
        self.model.eval()
        out = evaluate_classifier(self.model, loader, self.device, self.cfg.run.amp, show, "finetune eval")
        if self.ema is not None:
            ema = evaluate_classifier(self.ema.module.eval(), loader, self.device, self.cfg.run.amp, show, "ema eval")
            out.update({f"ema_{k}": v for k, v in ema.items()})
        return out


def evaluate(cfg: FinetuneConfig, ctx: Context) -> Outcome:
    """Fine-tune (or resume), evaluate; records of the final (and EMA) weights on rank 0."""
    from gmae.data.transforms import eval_transform

    inputs = load_inputs(cfg, ctx.checkpoint, None, eval_transform(cfg.data.img_size))
    torch.manual_seed(cfg.run.seed)
    model = build_classifier(inputs.state_dict, inputs.arch, cfg, len(inputs.classes), str(inputs.checkpoint))
    trainer = FinetuneTrainer(cfg, model, inputs.train_set, inputs.val_set, len(inputs.classes),
                              train_transform=train_transform(cfg), dist_info=ctx.dist,
                              source_sha256=inputs.source_sha256)
    summary = trainer.train()
    return training_outcome(ctx, "finetune", cfg, summary, len(inputs.classes),
                            weights=[("final", ""), ("ema", "ema_")], layer_decay=cfg.optim.layer_decay)

command = EvalCommand("finetune", FinetuneConfig, evaluate, validate=validate, saves_config=True,
                      data_help="ImageFolder root with train/ and val/ (sets data.root)",
                      config_help="(finetune/vit_b16, finetune/vit_l16, finetune/tiny)")
