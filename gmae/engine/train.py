"""The one pretraining loop, shared by GMAE and the MAE baseline (they differ only in model and loss).

AdamW with MAE's weight-decay groups, per-iteration linear warmup + half-cycle cosine (timm's scheduler),
gradient accumulation to the effective batch, torchrun DDP, bf16 autocast on CUDA, gradient-norm clipping,
NaN/Inf step skipping, atomic checkpoints with exact resume, JSONL + TensorBoard metrics, online probes.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader

from gmae.config import config_to_dict, save_config
from gmae.engine.checkpoint import check_resumable, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from gmae.engine.config import PretrainConfig, accumulation_steps, validate_loop
from gmae.engine.data_order import GlobalBatchSampler, SeededSamples
from gmae.engine.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from gmae.data.transforms import CROPS
from gmae.engine.preempt import StopSignals, ignore_in_worker
from gmae.errors import RunStopped
from gmae.io import run_dir_lock
from gmae.models import create_model
from gmae.models.gmae import MODEL_COMPAT

CHECKPOINT_NAME = "checkpoint.pth"
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


def last_checkpoint_note(out_dir: Path) -> str:
    """Where a stopped run can resume from: only a checkpoint that exists is named."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if path.is_file():
        return f"The last good checkpoint is {path}."
    return f"No checkpoint was written yet in {out_dir} (run.save_every_steps)."


def build_dataset(cfg: PretrainConfig, num_patches: int) -> SeededSamples:
    from gmae.data.imagenet import ImageFolderDataset
    from gmae.data.transforms import pretrain_transform

    root = Path(cfg.data.root)
    split_dir = root / cfg.data.split if (root / cfg.data.split).is_dir() else root
    base = ImageFolderDataset(split_dir, transform=None)
    tf = pretrain_transform(cfg.data.img_size, scale=tuple(cfg.data.crop_scale), crop=cfg.data.crop)
    return SeededSamples(base, tf, num_patches, cfg.run.seed)


def _autocast(cfg: PretrainConfig, device: torch.device):
    if device.type != "cuda" or cfg.run.amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.run.amp]
    return torch.autocast("cuda", dtype=dtype)


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


class Trainer:
    def __init__(self, cfg: PretrainConfig, dist_info: DistInfo | None = None):
        num_patches = validate(cfg)
        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.run.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.run.out_dir)
        self.accum = accumulation_steps(cfg.optim, self.dist.world_size)
        torch.manual_seed(cfg.run.seed + self.dist.rank)

        # the data set is only a file list: count it before the model is built
        self.dataset = build_dataset(cfg, num_patches)
        self.steps_per_epoch = len(self.dataset) // cfg.optim.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"data.root has {len(self.dataset)} images, fewer than one batch "
                             f"(optim.batch_size={cfg.optim.batch_size})")
        self.model = create_model(cfg.model.name, img_size=cfg.data.img_size,
                                  **cfg.model.constructor_overrides()).to(self.device)
        enc = self.model.encoder
        self.total_steps = cfg.optim.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.lr = cfg.optim.effective_lr()

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
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=max(1, self.total_steps - self.warmup_steps), lr_min=cfg.optim.min_lr,
            warmup_t=self.warmup_steps, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.run.amp == "fp16")

        self.ddp_model = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)


        self.step = 0
        self.nonfinite_skipped = 0
        self.consecutive_nonfinite = 0
        self.writer = None

    # -- state --------------------------------------------------------------------------------------------------
    def state_dict(self, finished: bool = False) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "config": config_to_dict(self.cfg),
            "arch": {"model": self.cfg.model.name, "encoder": self.model.encoder.architecture()},
            "rng": rng_state(),
            "probes": self.probes.state_dict() if self.probes is not None else None,
            "probe_optimizer": self.probe_optimizer.state_dict() if self.probe_optimizer is not None else None,
            "nonfinite_skipped": self.nonfinite_skipped,
            "world_size": self.dist.world_size,
            "finished": finished,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.probes is not None and ckpt.get("probes") is not None:
            self.probes.load_state_dict(ckpt["probes"])
            if self.probe_optimizer is not None:
                self.probe_optimizer.load_state_dict(ckpt["probe_optimizer"])
        self.step = int(ckpt["step"])
        self.nonfinite_skipped = int(ckpt.get("nonfinite_skipped", 0))
        set_rng_state(ckpt["rng"])

    def save(self, finished: bool = False) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(finished), self.out_dir / CHECKPOINT_NAME)
        barrier()

    def maybe_resume(self) -> bool:
        path = self.out_dir / CHECKPOINT_NAME
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        check_resumable(ckpt, path, config_to_dict(self.cfg), ("model", "optim"), None)
        self.load_state_dict(ckpt)
        return True

    # -- loop ---------------------------------------------------------------------------------------------------
    def _loader(self, epoch: int, start_step: int) -> DataLoader:
        self.dataset.epoch = epoch
        sampler = GlobalBatchSampler(len(self.dataset), self.cfg.optim.batch_per_device, self.accum,
                                     self.dist.world_size, self.dist.rank, self.cfg.run.seed, epoch, start_step)
        workers = self.cfg.data.num_workers
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=workers,
                          pin_memory=self.cfg.data.pin_memory and self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.cfg.run.seed),
                          worker_init_fn=ignore_in_worker if workers > 0 else None,
                          persistent_workers=False, prefetch_factor=4 if workers > 0 else None)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.writer.add_scalar(f"pretrain/{k}", v, record["step"])

    def train(self, resume: bool = True) -> dict[str, Any]:
        """Train (or resume) holding the run-folder lock, released however training ends."""
        with run_dir_lock(self.out_dir, "pretraining", enabled=self.dist.is_main):
            return self._train(resume)

    def _train(self, resume: bool) -> dict[str, Any]:
        cfg = self.cfg
        barrier()
        # a refused resume must leave the run's config.yaml as it was: check first, then write
        resumed = self.maybe_resume() if resume else False
        if self.dist.is_main:
            save_config(cfg, self.out_dir / "config.yaml")
        end_step = self.total_steps if cfg.optim.max_steps is None else min(self.total_steps, cfg.optim.max_steps)
        if self.dist.is_main and cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                warnings.warn("tensorboard not installed; metrics go to metrics.jsonl only")
        bar = None
        if self.dist.is_main and cfg.run.progress:
            from tqdm import tqdm

            bar = tqdm(total=end_step, initial=self.step, desc=f"pretrain {cfg.model.name}", unit="step",
                       dynamic_ncols=True)
        start_time = time.perf_counter()
        start_step = self.step
        window = {"loss": 0.0, "n": 0, "images": 0, "time": 0.0}
        last_loss = float("nan")
        log_extra: dict[str, float] = {}
        self.model.train()
        stop = StopSignals.install()
        try:
            while self.step < end_step:
                epoch = self.step // self.steps_per_epoch
                loader = self._loader(epoch, self.step % self.steps_per_epoch)
                it = iter(loader)
                while self.step < end_step and self.step // self.steps_per_epoch == epoch:
                    timed = (self.step + 1) % cfg.run.log_every_steps == 0 or self.step + 1 == end_step
                    t0 = time.perf_counter()
                    loss_value, grad_norm, probe_acc = self._train_step(it)
                    dt = time.perf_counter() - t0
                    self.step += 1
                    if math.isfinite(loss_value):
                        window["loss"] += loss_value
                        window["n"] += 1
                        last_loss = loss_value
                    window["images"] += cfg.optim.batch_size
                    window["time"] += dt
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
                    if timed:
                        rec = {"step": self.step, "epoch": epoch,
                               "loss": window["loss"] / max(1, window["n"]),
                               "lr": self.optimizer.param_groups[0]["lr"],
                               "grad_norm": grad_norm, "img_per_s": window["images"] / max(window["time"], 1e-9),
                               "nonfinite_skipped": self.nonfinite_skipped}
                        if probe_acc is not None:
                            rec.update({f"probe_acc_block{i}": float(a) for i, a in enumerate(probe_acc)})
                        self._log(rec)
                        log_extra = rec
                        window = {"loss": 0.0, "n": 0, "images": 0, "time": 0.0}
                    if self.step % cfg.run.save_every_steps == 0 and self.step < end_step:
                        self.save()
                    if self.step < end_step and stop.requested(self.device):
                        if self.step % cfg.run.save_every_steps:  # else saved just above
                            self.save()
                        stop.exit("pretrain", self.step, self.out_dir / CHECKPOINT_NAME, self.dist.is_main)
                    if cfg.run.stop_after_steps is not None and self.step >= cfg.run.stop_after_steps:
                        return {"stopped_at": self.step}
                del it, loader
            self.save(finished=True)
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
        elapsed = time.perf_counter() - start_time
        steps_run = self.step - start_step
        return {
            "step": self.step, "resumed": resumed, "loss": last_loss, "steps_run": steps_run,
            "img_per_s": steps_run * cfg.optim.batch_size / elapsed if steps_run else float("nan"),
            "nonfinite_skipped": self.nonfinite_skipped,
            "checkpoint": str(self.out_dir / CHECKPOINT_NAME),
        }

    def _set_lr(self) -> None:
        if self.cfg.optim.lr_interval == "step":
            self.scheduler.step_update(num_updates=self.step)
            return
        o = self.cfg.optim
        lr = self.lr * authors_epoch_lr_factor(self.step // self.steps_per_epoch, o.warmup_epochs, o.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _train_step(self, it):
        cfg = self.cfg
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        if self.probe_optimizer is not None:
            self.probe_optimizer.zero_grad(set_to_none=True)
        total_loss = torch.zeros((), device=self.device)
        probe_correct = None
        n_seen = 0
        for micro in range(self.accum):
            imgs, labels, noise, _ = next(it)
            imgs = imgs.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            noise = noise.to(self.device, non_blocking=True)
            last = micro == self.accum - 1
            sync = contextlib.nullcontext() if (last or not self.dist.enabled) else self.ddp_model.no_sync()
            with sync:
                with _autocast(cfg, self.device):
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
        loss_sum = all_reduce_sum(total_loss.clone().reshape(1))
        loss_value = float(loss_sum.item()) / self.dist.world_size
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
        probe_acc = None
        if probe_correct is not None and n_seen:
            probe_acc = (probe_correct / n_seen).tolist()
        return loss_value, grad_norm, probe_acc

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
