"""Pretraining, shared by GMAE and the MAE baseline (they differ only in model and loss), on the one step loop
(:mod:`gmae.engine.loop`: data order, schedule, save/resume, logging, stopping).

What pretraining adds: AdamW with MAE's weight-decay groups, gradient accumulation to the effective batch, torchrun
DDP, bf16 autocast on CUDA, gradient-norm clipping, NaN/Inf step skipping, the authors' per-epoch lr option and
their online probes.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay

from gmae.data.transforms import CROPS
from gmae.engine.config import PretrainConfig, validate_loop
from gmae.engine.data_order import SeededSamples
from gmae.engine.distributed import DistInfo, all_reduce_sum, autocast, init_distributed
from gmae.engine.loop import StepLoop, cosine_schedule, last_checkpoint_note
from gmae.errors import RunStopped
from gmae.models import create_model
from gmae.models.gmae import MODEL_COMPAT

LR_INTERVALS = ("step", "epoch")
PROBE_OPTIMIZERS = ("separate", "shared")


def authors_epoch_lr_factor(epoch: int, warmup_epochs: float, epochs: int) -> float:
    """The GMAE authors' per-epoch LambdaLR factor (``lr_interval: epoch``) for 0-based ``epoch``.

    Warmup ``(epoch + 1) / warmup_epochs``; then ``0.5 (1 + cos(pi (epoch + 1 - warmup) / (epochs - warmup)))``,
    which reaches 0 on the last epoch.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return 0.5 * (1.0 + math.cos(math.pi * (epoch + 1 - warmup_epochs) / (epochs - warmup_epochs)))


class NonFiniteLossError(RunStopped):
    """Too many non-finite steps in a row: the run stops, keeping its last good checkpoint."""


class OnlineProbes(nn.Module):
    """The authors' diagnostic: per block, mean over tokens -> BatchNorm1d(affine=False) -> Linear, trained
    on detached features (``run.probe_optimizer``: its own AdamW, or the main one as the authors did)."""

    def __init__(self, dim: int, depth: int, num_classes: int):
        super().__init__()
        self.heads = nn.ModuleList([
            nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))
            for _ in range(depth)
        ])

    def forward(self, block_outputs: list[torch.Tensor], labels: torch.Tensor):
        loss, correct = 0.0, []
        for head, feats in zip(self.heads, block_outputs):
            logits = head(feats.detach().float().mean(dim=1))
            loss = loss + F.cross_entropy(logits, labels)
            correct.append((logits.argmax(-1) == labels).float().sum())
        return loss, torch.stack(correct)


def build_dataset(cfg: PretrainConfig, num_patches: int) -> SeededSamples:
    from gmae.data.imagenet import ImageFolderDataset
    from gmae.data.transforms import pretrain_transform

    root = Path(cfg.data.root)
    split_dir = root / cfg.data.split if (root / cfg.data.split).is_dir() else root
    base = ImageFolderDataset(split_dir, transform=None)
    tf = pretrain_transform(cfg.data.img_size, scale=tuple(cfg.data.crop_scale), crop=cfg.data.crop)
    return SeededSamples(base, tf, cfg.run.seed, num_patches)


def validate(cfg: PretrainConfig) -> int:
    """Cheap checks that name the key, before any model or data is built; returns the number of patches."""
    validate_loop(cfg)
    if len(cfg.data.crop_scale) != 2 or not 0 < cfg.data.crop_scale[0] <= cfg.data.crop_scale[1] <= 1:
        raise ValueError(f"data.crop_scale must be [lo, hi] within (0, 1], got {cfg.data.crop_scale}")
    if cfg.data.crop not in CROPS:
        raise ValueError(f"data.crop must be one of {CROPS}, got {cfg.data.crop!r}")
    if cfg.model.compat not in MODEL_COMPAT:
        raise ValueError(f"model.compat must be one of {MODEL_COMPAT}, got {cfg.model.compat!r}")
    if cfg.optim.lr_interval not in LR_INTERVALS:
        raise ValueError(f"optim.lr_interval must be one of {LR_INTERVALS}, got {cfg.optim.lr_interval!r}")
    if cfg.optim.lr_interval == "epoch" and cfg.optim.min_lr != 0:
        raise ValueError("optim.min_lr must be 0 with optim.lr_interval=epoch (the authors' schedule ends at 0)")
    if cfg.run.probe_optimizer not in PROBE_OPTIMIZERS:
        raise ValueError(f"run.probe_optimizer must be one of {PROBE_OPTIMIZERS}, got {cfg.run.probe_optimizer!r}")
    if len(cfg.optim.betas) != 2:
        raise ValueError(f"optim.betas must have two values, got {cfg.optim.betas}")
    if cfg.optim.clip_grad is not None and not cfg.optim.clip_grad > 0:
        raise ValueError(f"optim.clip_grad must be > 0 or null, got {cfg.optim.clip_grad}")
    if cfg.run.max_consecutive_nonfinite < 1:
        raise ValueError(f"run.max_consecutive_nonfinite must be >= 1, got {cfg.run.max_consecutive_nonfinite}")
    num_patches = _validate_model(cfg)
    root = Path(cfg.data.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: folder not found: {root}")
    return num_patches


def _validate_model(cfg: PretrainConfig) -> int:
    """The model's shape on the meta device (no memory, no init cost): patch grid and mask-ratio checks."""
    try:
        with torch.device("meta"):
            enc = create_model(cfg.model.name, img_size=cfg.data.img_size,
                               **cfg.model.constructor_overrides()).encoder
    except KeyError as e:
        raise ValueError(f"model.name: {e.args[0]}") from None
    except (TypeError, ValueError) as e:  # an unknown argument, or one the model refuses (mask_ratio=1)
        raise ValueError(f"model {cfg.model.name!r} does not accept these model.* settings: {e}") from None
    if cfg.data.img_size % enc.patch_size:
        raise ValueError(f"data.img_size={cfg.data.img_size} is not a multiple of the patch size {enc.patch_size} "
                         f"of {cfg.model.name}")
    n = enc.num_patches
    visible = int(n * (1 - cfg.model.mask_ratio))  # the encoder's own rule (gmae.models.vit.random_masking)
    if visible < 1:
        raise ValueError(f"model.mask_ratio={cfg.model.mask_ratio} leaves 0 of {n} patches visible: the encoder "
                         "would see only the CLS token")
    if cfg.model.loss_type.startswith("masked") and visible == n:
        raise ValueError(f"model.mask_ratio={cfg.model.mask_ratio} masks none of {n} patches, so "
                         f"model.loss_type={cfg.model.loss_type!r} (loss on masked patches only) would be exactly 0; "
                         "use a ratio > 0 or model.loss_type=all")
    return n


class Trainer(StepLoop):
    """Pretraining on the shared step loop: the model's own loss, AdamW with MAE's weight-decay groups, gradient
    accumulation, gradient-norm clipping, non-finite steps skipped, optional online probes."""

    protocol = "pretrain"
    resume_sections = ("model", "optim")
    stop_on_nonfinite = False  # a non-finite step is skipped (see _skip), up to run.max_consecutive_nonfinite

    def __init__(self, cfg: PretrainConfig, dist_info: DistInfo | None = None):
        num_patches = validate(cfg)
        dist_info = dist_info or init_distributed(cfg.run.device)  # a missing device is named before the data
        # the data set is only a file list: it is counted before the model is built
        super().__init__(cfg, build_dataset(cfg, num_patches), dist_info)
        self.model = create_model(cfg.model.name, img_size=cfg.data.img_size,
                                  **cfg.model.constructor_overrides()).to(self.device).train()
        enc = self.model.encoder

        self.probes = self.probe_optimizer = None
        if cfg.run.online_probe:
            num_classes = len(getattr(self.dataset.dataset, "classes", [])) or 1000
            self.probes = OnlineProbes(enc.embed_dim, enc.depth, num_classes).to(self.device)
        shared_probes = self.probes is not None and cfg.run.probe_optimizer == "shared"

        groups = param_groups_weight_decay(self.model, cfg.optim.weight_decay, no_weight_decay_list=())
        if shared_probes:  # the authors' optimiser holds the probes too, with the same decay rule
            groups += param_groups_weight_decay(self.probes, cfg.optim.weight_decay, no_weight_decay_list=())
        self.optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=tuple(cfg.optim.betas))
        if self.probes is not None and not shared_probes:
            self.probe_optimizer = torch.optim.AdamW(self.probes.parameters(), lr=cfg.run.probe_lr,
                                                     weight_decay=0.0)
        self.scheduler = cosine_schedule(self.optimizer, self.total_steps, self.warmup_steps, cfg.optim.min_lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.run.amp == "fp16")

        self.ddp_model = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.nonfinite_skipped = 0
        self.consecutive_nonfinite = 0

    def progress_label(self) -> str:
        return f"pretrain {self.cfg.model.name}"

    # -- state --------------------------------------------------------------------------------------------------
    def modules_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "scaler": self.scaler.state_dict(),
            "arch": {"model": self.cfg.model.name, "encoder": self.model.encoder.architecture()},
            "probes": self.probes.state_dict() if self.probes is not None else None,
            "probe_optimizer": self.probe_optimizer.state_dict() if self.probe_optimizer is not None else None,
            "nonfinite_skipped": self.nonfinite_skipped,
        }

    def load_modules_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.probes is not None and ckpt.get("probes") is not None:
            self.probes.load_state_dict(ckpt["probes"])
            if self.probe_optimizer is not None:
                self.probe_optimizer.load_state_dict(ckpt["probe_optimizer"])
        self.nonfinite_skipped = int(ckpt.get("nonfinite_skipped", 0))

    def final_metrics(self) -> dict[str, Any]:
        return {"nonfinite_skipped": self.nonfinite_skipped}

    # -- one step -----------------------------------------------------------------------------------------------
    def set_lr(self) -> None:
        if self.cfg.optim.lr_interval == "step":
            self.scheduler.step_update(num_updates=self.step)
            return
        o = self.cfg.optim
        lr = self.lr * authors_epoch_lr_factor(self.step // self.steps_per_epoch, o.warmup_epochs, o.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, batches) -> dict[str, Any]:
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        if self.probe_optimizer is not None:
            self.probe_optimizer.zero_grad(set_to_none=True)
        total_loss = torch.zeros((), device=self.device)
        probe_correct = None
        n_seen = 0
        for micro in range(self.accum):
            imgs, labels, noise, _ = next(batches)
            imgs = imgs.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            noise = noise.to(self.device, non_blocking=True)
            last = micro == self.accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.ddp_model.no_sync()
            with sync:
                with autocast(cfg.run.amp, self.device):
                    out = self.ddp_model(imgs, noise=noise, return_block_outputs=self.probes is not None)
                loss = out["loss"]
                self.scaler.scale(loss / self.accum).backward()
            total_loss += loss.detach() / self.accum
            if self.probes is not None:
                p_loss, correct = self.probes(out["block_outputs"], labels)
                (p_loss / self.accum).backward()
                probe_correct = correct if probe_correct is None else probe_correct + correct
                n_seen += labels.numel()
        if self.probes is not None and self.dist.enabled:
            # the probes sit outside DDP: average their gradients so every rank keeps the same probes
            for p in self.probes.parameters():
                if p.grad is not None:
                    all_reduce_sum(p.grad).div_(self.dist.world_size)
        if self.probe_optimizer is not None:
            self.probe_optimizer.step()
        # every rank must agree on skipping a step
        flag = torch.tensor([0.0 if torch.isfinite(total_loss) else 1.0], device=self.device)
        all_reduce_sum(flag)
        loss_value = self.rank_mean(total_loss)
        grad_norm = float("nan")
        if flag.item() == 0:
            self.scaler.unscale_(self.optimizer)
            # with shared probes the clip sees the probes' gradients too, as in the authors' code
            params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
            if cfg.optim.clip_grad is not None:
                gn = torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad)
            else:
                gn = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))
            grad_norm = float(gn)
            if math.isfinite(grad_norm):
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.consecutive_nonfinite = 0
            else:
                self._skip(f"non-finite gradient norm at step {self.step}")
                self.scaler.update()
        else:
            self._skip(f"non-finite loss at step {self.step}")
        out = {"loss": loss_value, "grad_norm": grad_norm, "nonfinite_skipped": self.nonfinite_skipped}
        if probe_correct is not None and n_seen:
            out.update({f"probe_acc_block{i}": float(a) for i, a in enumerate((probe_correct / n_seen).tolist())})
        return out

    def _skip(self, why: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_skipped += 1
        self.consecutive_nonfinite += 1
        warnings.warn(f"{why}: step skipped ({self.consecutive_nonfinite} in a row)")
        if self.consecutive_nonfinite >= self.cfg.run.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"{self.consecutive_nonfinite} non-finite steps in a row (run.max_consecutive_nonfinite="
                f"{self.cfg.run.max_consecutive_nonfinite}); stopping. {last_checkpoint_note(self.out_dir)} "
                "Lower optim.blr or check the data.")
