"""Linear probing, the MAE protocol: ``gmae eval linprobe --checkpoint CKPT --data DIR [--config FILE] [--out DIR]
[--results DIR] [key=value ...]``.

Frozen encoder in eval mode; feature = the CLS token after the final LayerNorm (``head.features=cls``) or the GMAE
authors' variant, the mean over all tokens of the last block (``head.features=mean_tokens``); head =
BatchNorm1d(D, affine=False, eps 1e-6) + Linear (trunc-normal std 0.01, zero bias). LARS (timm's Lars: momentum 0.9,
trust 0.001; weights adapted, biases neither adapted nor decayed), lr = blr x batch / 256 (0.1 x 16384 / 256 = 6.4),
weight decay 0, 90 epochs, 10 warmup, per-iteration half-cycle cosine. Train aug MAE's TF-style RandomResizedCrop
(bicubic; ``data.crop``) + flip; eval Resize(size x 256/224, bicubic) + CenterCrop(size). The effective batch is
reached with gradient accumulation on any number of processes (``torchrun --nproc_per_node=N -m gmae eval linprobe``).

A rerun with the same --out resumes from ``checkpoint.pth``; the effective config goes to ``config.yaml``, the
training log (with an evaluation every ``eval_every_epochs``) to ``metrics.jsonl`` and the ``linprobe`` records
(top1 and top5 of the final head, best_top1 over the evaluated epochs as MAE reports, effective lr) to the store.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from gmae.data.transforms import CROPS

from eval.command import Context, EvalCommand, Outcome
from eval.classification import (FEATURES, ClassifierLoop, ClassifierRunConfig, EvalDataConfig, FrozenEncoder,
                                 InputError, ScheduleConfig, autocast, eval_loader, evaluate_classifier, load_inputs,
                                 training_outcome, validate_common)
from gmae.engine.loop import cosine_schedule


@dataclass
class LinprobeHeadConfig:
    features: str = "cls"  # cls (MAE) | mean_tokens (the GMAE authors' online-probe feature)
    init_std: float = 0.01


@dataclass
class LinprobeDataConfig(EvalDataConfig):
    # RandomResizedCrop of the train augmentation: MAE's linear probe uses its TF-style crop
    # (main_linprobe.py imports util/crop.py) at the default scale (0.08, 1); "torchvision" for torchvision's
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    crop: str = "tf"


@dataclass
class LinprobeOptimConfig(ScheduleConfig):
    epochs: int = 90
    warmup_epochs: float = 10.0
    batch_size: int = 16384
    batch_per_device: int = 512
    blr: float = 0.1
    min_lr: float = 0.0
    weight_decay: float = 0.0
    momentum: float = 0.9
    trust_coeff: float = 0.001


@dataclass
class LinprobeConfig:
    head: LinprobeHeadConfig = field(default_factory=LinprobeHeadConfig)
    data: LinprobeDataConfig = field(default_factory=LinprobeDataConfig)
    optim: LinprobeOptimConfig = field(default_factory=LinprobeOptimConfig)
    run: ClassifierRunConfig = field(default_factory=lambda: ClassifierRunConfig(out_dir="runs/linprobe"))
    # evaluate every this many epochs (MAE: every epoch, reporting the best); records hold the final top1/top5
    # and best_top1 over every evaluation (null: the final one only)
    eval_every_epochs: Optional[int] = 1


def validate(cfg: LinprobeConfig) -> None:
    validate_common(cfg)
    if cfg.head.features not in FEATURES:
        raise InputError(f"head.features must be one of {FEATURES}, got {cfg.head.features!r}")
    lo_hi = cfg.data.crop_scale
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1] <= 1:
        raise InputError(f"data.crop_scale must be [lo, hi] within (0, 1], got {lo_hi}")
    if cfg.data.crop not in CROPS:
        raise InputError(f"data.crop must be one of {CROPS}, got {cfg.data.crop!r}")


class LinearProbeHead(nn.Module):
    """features [B, D] -> logits [B, C]: BatchNorm1d(D, affine=False, eps 1e-6) (a parameter-free whitening that
    makes one lr fit every encoder), then Linear with trunc-normal(std) weights and a zero bias."""

    def __init__(self, dim: int, num_classes: int, init_std: float = 0.01):
        super().__init__()
        from timm.layers import trunc_normal_

        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, num_classes)
        trunc_normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(feats))


class ProbedEncoder(nn.Module):
    """imgs -> logits for evaluation: frozen encoder (autocast applies) then the head in float32."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(imgs)
        with torch.autocast(imgs.device.type, enabled=False):
            return self.head(feats.float())


def lars_optimizer(head: nn.Module, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                   trust_coeff: float = 0.001):
    """timm's Lars set up as MAE's LARS: matrices get the trust ratio trust * ||w|| / ||g|| (timm adapts only when
    a group has weight decay or ``always_adapt``, so their group sets ``always_adapt``) and the weight decay;
    1-D parameters (biases) get plain SGD with momentum. With weight decay 0 (the protocol) the update equals MAE's
    up to timm's eps 1e-8 in the denominator; with decay timm divides by ||g|| + wd ||w|| where MAE uses
    ||g + wd w||."""
    from timm.optim import Lars

    matrices = [p for p in head.parameters() if p.requires_grad and p.ndim > 1]
    vectors = [p for p in head.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": matrices, "weight_decay": weight_decay, "always_adapt": True},
              {"params": vectors, "weight_decay": 0.0, "always_adapt": False}]
    return Lars([g for g in groups if g["params"]], lr=lr, momentum=momentum, trust_coeff=trust_coeff)


class LinprobeTrainer(ClassifierLoop):
    """Trains a :class:`LinearProbeHead` on ``encoder(images)`` (``encoder``: a frozen module, imgs -> [B, D]).

    ``train_set`` / ``val_set`` yield (input, label); ``train_transform`` (the random crop) runs under a
    per-sample seed; ``val_set`` carries its own deterministic transform. Any frozen ``encoder`` works, e.g.
    ``nn.Identity()`` over precomputed feature vectors.
    """

    protocol = "linprobe"
    resume_sections = ("head", "optim")

    def __init__(self, cfg: LinprobeConfig, encoder: nn.Module, train_set: Dataset, val_set: Dataset,
                 num_classes: int, feature_dim: int, train_transform=None, dist_info=None,
                 source_sha256: Optional[str] = None):
        super().__init__(cfg, train_set, train_transform, dist_info, source_sha256)
        self.val_set = val_set
        self.num_classes = num_classes
        self.encoder = encoder.to(self.device).eval()
        torch.manual_seed(cfg.run.seed)
        self.head = LinearProbeHead(feature_dim, num_classes, cfg.head.init_std).to(self.device)
        self.ddp_head = self.head
        if self.dist.enabled:
            self.ddp_head = nn.parallel.DistributedDataParallel(
                self.head, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        o = cfg.optim
        self.optimizer = lars_optimizer(self.head, self.lr, o.weight_decay, o.momentum, o.trust_coeff)
        self.scheduler = cosine_schedule(self.optimizer, self.total_steps, self.warmup_steps, o.min_lr)

    def modules_state(self) -> Dict[str, Any]:
        return {"head": self.head.state_dict()}

    def load_modules_state(self, state: Dict[str, Any]) -> None:
        self.head.load_state_dict(state["head"])

    def train_step(self, batches) -> Dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        self.head.train()
        total = 0.0
        for micro in range(self.accum):
            x, y = next(batches)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with autocast(self.cfg.run.amp, self.device):
                feats = self.encoder(x)
            last = micro == self.accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.ddp_head.no_sync()
            with sync:
                loss = F.cross_entropy(self.ddp_head(feats.float().detach()), y)
                (loss / self.accum).backward()
            total += float(loss.detach()) / self.accum
        self.optimizer.step()
        return {"loss": self.rank_mean(total)}

    def evaluate(self) -> Dict[str, float]:
        self.head.eval()
        loader = eval_loader(self.val_set, self.cfg.data, self.dist, self.device)
        return evaluate_classifier(ProbedEncoder(self.encoder, self.head), loader, self.device, self.cfg.run.amp,
                                   progress=self.dist.is_main and self.cfg.run.progress, desc="linprobe eval")


def evaluate(cfg: LinprobeConfig, ctx: Context) -> Outcome:
    """Train (or resume) the probe on the frozen encoder, evaluate; records on rank 0. The summary has ``top1``,
    ``top5`` (percent), ``best_top1``, ``effective_lr``, ... or ``stopped_at`` (run.stop_after_steps)."""
    from gmae.data.transforms import eval_transform, pretrain_transform
    from gmae.engine.checkpoint import build_vit

    size = cfg.data.img_size
    inputs = load_inputs(cfg, ctx.checkpoint, None, eval_transform(size))
    vit = build_vit(inputs.state_dict, inputs.arch, size, source=str(inputs.checkpoint))
    trainer = LinprobeTrainer(cfg, FrozenEncoder(vit, cfg.head.features), inputs.train_set, inputs.val_set,
                              num_classes=len(inputs.classes), feature_dim=int(inputs.arch["embed_dim"]),
                              train_transform=pretrain_transform(size, scale=tuple(cfg.data.crop_scale),
                                                                crop=cfg.data.crop),
                              dist_info=ctx.dist, source_sha256=inputs.source_sha256)
    summary = trainer.train()
    return training_outcome(ctx, "linprobe", cfg, summary, len(inputs.classes), features=cfg.head.features)

command = EvalCommand("linprobe", LinprobeConfig, evaluate, validate=validate, saves_config=True,
                      data_help="ImageFolder root with train/ and val/ (sets data.root)",
                      config_help="(linprobe/vit_b16, linprobe/vit_l16, linprobe/tiny)")
