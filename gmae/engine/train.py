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
from gmae.engine.preempt import StopSignals, ignore_in_worker
from gmae.models import create_model

CHECKPOINT_NAME = "checkpoint.pth"


class NonFiniteLossError(RuntimeError):
    """Too many non-finite steps in a row: the run stops, keeping its last good checkpoint."""


class OnlineProbes(nn.Module):
    """The authors' diagnostic: per block, mean over tokens -> BatchNorm1d(affine=False) -> Linear, trained
    on detached features with its own optimizer (so it never touches the encoder or its gradient clipping)."""

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
    from gmae.data.datasets import ImageFolderDataset
    from gmae.data.transforms import pretrain_transform

    root = Path(cfg.data.root)
    split_dir = root / cfg.data.split if (root / cfg.data.split).is_dir() else root
    base = ImageFolderDataset(split_dir, transform=None)
    tf = pretrain_transform(cfg.data.img_size, scale=tuple(cfg.data.crop_scale))
    return SeededSamples(base, tf, num_patches, cfg.run.seed)


def _autocast(cfg: PretrainConfig, device: torch.device):
    if device.type != "cuda" or cfg.run.amp == "none":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.run.amp]
    return torch.autocast("cuda", dtype=dtype)


def validate(cfg: PretrainConfig) -> None:
    """Cheap checks that name the key, before any model or data is built."""
    validate_loop(cfg)
    if len(cfg.data.crop_scale) != 2 or not 0 < cfg.data.crop_scale[0] <= cfg.data.crop_scale[1] <= 1:
        raise ValueError(f"data.crop_scale must be [lo, hi] within (0, 1], got {cfg.data.crop_scale}")
    if len(cfg.optim.betas) != 2:
        raise ValueError(f"optim.betas must have two values, got {cfg.optim.betas}")
    root = Path(cfg.data.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: folder not found: {root}")


class Trainer:
    def __init__(self, cfg: PretrainConfig, dist_info: DistInfo | None = None):
        validate(cfg)
        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.run.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.run.out_dir)
        self.accum = accumulation_steps(cfg.optim, self.dist.world_size)
        torch.manual_seed(cfg.run.seed + self.dist.rank)

        try:
            self.model = create_model(cfg.model.name, img_size=cfg.data.img_size,
                                      **cfg.model.constructor_overrides()).to(self.device)
        except TypeError as e:
            raise ValueError(f"model {cfg.model.name!r} does not accept these model.* settings: {e}") from None
        enc = self.model.encoder
        self.dataset = build_dataset(cfg, enc.num_patches)
        self.steps_per_epoch = len(self.dataset) // cfg.optim.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"data.root has {len(self.dataset)} images, fewer than one batch "
                             f"(optim.batch_size={cfg.optim.batch_size})")
        self.total_steps = cfg.optim.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.lr = cfg.optim.effective_lr()

        groups = param_groups_weight_decay(self.model, cfg.optim.weight_decay, no_weight_decay_list=())
        self.optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=tuple(cfg.optim.betas))
        self.scheduler = CosineLRScheduler(
            self.optimizer, t_initial=max(1, self.total_steps - self.warmup_steps), lr_min=cfg.optim.min_lr,
            warmup_t=self.warmup_steps, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.run.amp == "fp16")

        self.ddp_model = self.model
        if self.dist.enabled:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        self.probes = self.probe_optimizer = None
        if cfg.run.online_probe:
            num_classes = len(getattr(self.dataset.dataset, "classes", [])) or 1000
            self.probes = OnlineProbes(enc.embed_dim, enc.depth, num_classes).to(self.device)
            self.probe_optimizer = torch.optim.AdamW(self.probes.parameters(), lr=cfg.run.probe_lr,
                                                     weight_decay=0.0)

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
        cfg = self.cfg
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
        barrier()
        resumed = self.maybe_resume() if resume else False
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
                    loss_value, grad_norm, render_s, probe_acc = self._train_step(it, timed)
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
                        if render_s is not None:
                            rec["render_share"] = render_s / max(dt, 1e-9)
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
            "step": self.step, "resumed": resumed, "loss": last_loss,
            "img_per_s": steps_run * cfg.optim.batch_size / elapsed if steps_run else float("nan"),
            "render_share": log_extra.get("render_share"), "nonfinite_skipped": self.nonfinite_skipped,
            "checkpoint": str(self.out_dir / CHECKPOINT_NAME),
        }

    def _train_step(self, it, timed: bool):
        cfg = self.cfg
        self.scheduler.step_update(num_updates=self.step)
        self.optimizer.zero_grad(set_to_none=True)
        if self.probe_optimizer is not None:
            self.probe_optimizer.zero_grad(set_to_none=True)
        total_loss = torch.zeros((), device=self.device)
        render_s = 0.0 if timed and hasattr(self.model, "time_rendering") else None
        if render_s is not None:
            self.model.time_rendering = True
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
            if render_s is not None:
                render_s += self.model.last_render_seconds
            if self.probes is not None:
                p_loss, correct = self.probes(out["block_outputs"], labels)
                (p_loss / self.accum).backward()
                probe_correct = correct if probe_correct is None else probe_correct + correct
                n_seen += labels.numel()
        if render_s is not None:
            self.model.time_rendering = False
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
            params = [p for p in self.model.parameters() if p.grad is not None]
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
        return loss_value, grad_norm, render_s, probe_acc

    def _skip(self, why: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_skipped += 1
        self.consecutive_nonfinite += 1
        warnings.warn(f"{why}: step skipped ({self.consecutive_nonfinite} in a row)")
        if self.consecutive_nonfinite >= self.cfg.run.max_consecutive_nonfinite:
            raise NonFiniteLossError(
                f"{self.consecutive_nonfinite} non-finite steps in a row (run.max_consecutive_nonfinite="
                f"{self.cfg.run.max_consecutive_nonfinite}); stopping. The last good checkpoint is "
                f"{self.out_dir / CHECKPOINT_NAME}. Lower optim.blr or check the data.")
