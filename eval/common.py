"""What the classification evaluations (linear probe, fine-tune, kNN) share: config pieces, input checks,
the encoder built from any checkpoint, deterministic data loading, feature extraction, accuracy and records.

Data layout: ``data.root/{train,val}/<class>/<image>`` (ImageNet ImageFolder). The encoder comes from any file
``gmae.engine.checkpoint.load_encoder_weights`` accepts (our training checkpoints, ``gmae export`` files, official
MAE checkpoints, timm state dicts) and is rebuilt as a timm ``VisionTransformer``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from gmae.engine.config import LoopRunConfig, ScheduleConfig, accumulation_steps, validate_loop  # noqa: F401
from gmae.engine.distributed import autocast
from gmae.engine.data_order import sample_seed
from gmae.engine.preempt import StopSignals, ignore_in_worker

FEATURES = ("cls", "mean_tokens")


# Bad input found before any training (a missing or unusable checkpoint, data folders without classes or with
# different classes per split, a config key out of range); one class serves every command.
from gmae.errors import InputError  # noqa: E402,F401


# ----------------------------------------------------------------------------------------------------------
# Config pieces
# ----------------------------------------------------------------------------------------------------------

@dataclass
class EvalDataConfig:
    # ImageFolder root holding ``<train_split>/`` and ``<val_split>/``; "???" = must be given (or --data)
    root: str = "???"
    train_split: str = "train"
    val_split: str = "val"
    img_size: int = 224
    # per-process batch for feature extraction and evaluation (no gradients)
    eval_batch_per_device: int = 256
    num_workers: int = 10
    pin_memory: bool = True


@dataclass
class EvalRunConfig(LoopRunConfig):
    out_dir: str = "runs/eval"
    # label of the result records; default: the model name stored in the checkpoint, else the file name
    model_name: Optional[str] = None


def validate_common(cfg: Any) -> None:
    """Checks shared by the three harnesses, naming the key, before any data or model is touched."""
    try:
        _validate_common(cfg)
    except ValueError as e:
        raise InputError(str(e)) from None


def _validate_common(cfg: Any) -> None:
    validate_loop(cfg)
    if cfg.data.img_size < 1 or cfg.data.eval_batch_per_device < 1:
        raise ValueError("data.img_size and data.eval_batch_per_device must be >= 1")


# ----------------------------------------------------------------------------------------------------------
# Inputs: data folders and the encoder
# ----------------------------------------------------------------------------------------------------------

@dataclass
class EvalInputs:
    checkpoint: Path
    train_set: Dataset  # ImageFolderDataset
    val_set: Dataset
    classes: list
    state_dict: Dict[str, torch.Tensor]  # encoder weights, timm names
    arch: Dict[str, Any]
    source_sha256: str  # of the checkpoint file: a resumed run must continue on the same encoder


def load_inputs(cfg: Any, checkpoint: Path, train_transform=None, val_transform=None) -> EvalInputs:
    """Every input check, cheapest first (data folders and classes, encoder keys), before any model is built;
    all failures raise :class:`InputError` naming the file."""
    from gmae.data.imagenet import image_folders
    from gmae.engine.checkpoint import load_encoder_weights
    from gmae.results import checkpoint_info

    try:
        train, val = image_folders(cfg.data.root, cfg.data.train_split, cfg.data.val_split, train_transform,
                                   val_transform)
        sd, arch = load_encoder_weights(checkpoint)
        patch = int(arch["patch_size"])
        if cfg.data.img_size % patch:
            raise ValueError(f"data.img_size={cfg.data.img_size} is not a multiple of the patch size {patch} of "
                             f"{checkpoint}")
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        raise InputError(str(e).strip("'\"")) from e
    return EvalInputs(checkpoint, train, val, list(train.classes), sd, arch, checkpoint_info(checkpoint)["sha256"])


def pooled_features(vit: nn.Module, imgs: torch.Tensor, features: str = "cls") -> torch.Tensor:
    """imgs [B, 3, H, W] -> features [B, D] of a timm VisionTransformer (no masking).

    ``cls``: the CLS token after the final LayerNorm (MAE's linear-probe feature).
    ``mean_tokens``: the mean over all 1 + L tokens of the last block's output, before the final LayerNorm
    (the GMAE authors' online-probe feature, ``gmae.engine.train.OnlineProbes``, at the last block).
    """
    if features == "cls":
        return vit.forward_features(imgs)[:, 0]
    if features == "mean_tokens":
        captured: list[torch.Tensor] = []
        hook = vit.blocks.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            vit.forward_features(imgs)
        finally:
            hook.remove()
        return captured[0].mean(dim=1)
    raise ValueError(f"features must be one of {FEATURES}, got {features!r}")


class FrozenEncoder(nn.Module):
    """A frozen feature extractor that stays in eval mode (dropout, drop path and norms in inference
    behaviour even when the surrounding model is put in train mode): imgs [B, 3, H, W] -> [B, D]."""

    def __init__(self, vit: nn.Module, features: str = "cls"):
        super().__init__()
        if features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
        self.vit, self.features = vit, features
        self.vit.requires_grad_(False)
        self.vit.eval()

    def train(self, mode: bool = True) -> "FrozenEncoder":
        return super().train(False)

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.vit, imgs, self.features)


# ----------------------------------------------------------------------------------------------------------
# Data order and loaders
# ----------------------------------------------------------------------------------------------------------

class SeededImages(Dataset):
    """(image, label) with ``transform`` run under a per-sample seed set for torch, ``random`` and numpy (timm's
    RandAugment / RandomErasing draw from all three), so an augmentation depends only on (seed, epoch, index):
    a resumed run sees the same images as an uninterrupted one, whatever the number of processes or workers."""

    def __init__(self, dataset: Dataset, transform: Optional[Callable], seed: int):
        self.dataset, self.transform, self.seed = dataset, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        img, label = self.dataset[index]
        if self.transform is None:
            return img, label
        s = sample_seed(self.seed, self.epoch, index, stream=1)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s % (1 << 32))
            try:
                img = self.transform(img)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        return img, label


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... : every sample evaluated exactly once over all ranks (no padding, so
    summed counts are exact)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))


def train_loader(dataset: SeededImages, optim: ScheduleConfig, accum: int, cfg_data: EvalDataConfig, dist_info,
                 seed: int, epoch: int, start_step: int, device: torch.device) -> DataLoader:
    """This rank's micro-batches of one epoch from optimizer step ``start_step`` on (pretraining's
    GlobalBatchSampler: the global batches depend only on the seed and epoch; the last partial one is dropped)."""
    from gmae.engine.data_order import GlobalBatchSampler

    dataset.epoch = epoch
    sampler = GlobalBatchSampler(len(dataset), optim.batch_per_device, accum, dist_info.world_size,
                                 dist_info.rank, seed, epoch, start_step)
    workers = cfg_data.num_workers
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                      pin_memory=cfg_data.pin_memory and device.type == "cuda",
                      worker_init_fn=ignore_in_worker if workers > 0 else None,
                      prefetch_factor=4 if workers > 0 else None)


def eval_loader(dataset: Dataset, cfg_data: EvalDataConfig, dist_info, device: torch.device) -> DataLoader:
    sampler = ShardSampler(len(dataset), dist_info.rank, dist_info.world_size)
    return DataLoader(dataset, batch_size=cfg_data.eval_batch_per_device, sampler=sampler,
                      num_workers=cfg_data.num_workers, pin_memory=cfg_data.pin_memory and device.type == "cuda")


def progress_bar(enabled: bool, **kw):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(dynamic_ncols=True, **kw)


# ----------------------------------------------------------------------------------------------------------
# Distributed helpers, features, accuracy
# ----------------------------------------------------------------------------------------------------------

def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's [n_r, ...] tensor along dim 0 (ranks may hold different n_r)."""
    if not _dist_on() or dist.get_world_size() == 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    padded = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)])


@torch.no_grad()
def extract_features(encoder: nn.Module, loader: DataLoader, device: torch.device, amp: str = "none",
                     progress: bool = False, desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Run a (frozen, eval-mode) encoder over a loader on every rank and gather the results.

    Returns features [N, D] float32 and labels [N] int64 on ``device``, N = all samples over all ranks
    (order: rank-major; kNN and the linear probe do not depend on it).
    """
    encoder.eval()
    feats, labels = [], []
    bar = progress_bar(progress, total=len(loader), desc=desc, unit="batch")
    for imgs, y in loader:
        with autocast(amp, device):
            f = encoder(imgs.to(device, non_blocking=True))
        feats.append(f.float())
        labels.append(torch.as_tensor(y).to(device))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    dim = feats[0].shape[1] if feats else 0
    f = torch.cat(feats) if feats else torch.zeros(0, dim, device=device)
    y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=device)
    return gather_rows(f), gather_rows(y)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> torch.Tensor:
    """scores [B, C], labels [B] -> number of samples whose label is among the top-k scores, per k [len(ks)]
    (k is capped at C)."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hit = top == labels.view(-1, 1)
    return torch.stack([hit[:, :min(k, kmax)].any(dim=1).sum() for k in ks]).float()


@torch.no_grad()
def evaluate_classifier(model: Callable[[torch.Tensor], torch.Tensor], loader: DataLoader, device: torch.device,
                        amp: str = "none", progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Top-1 / top-5 accuracy in percent (and loss) of ``model`` (imgs -> logits) over all ranks' shards."""
    sums = torch.zeros(4, device=device)  # correct@1, correct@5, loss sum, n
    bar = progress_bar(progress, total=len(loader), desc=desc, unit="batch")
    for imgs, y in loader:
        imgs, y = imgs.to(device, non_blocking=True), torch.as_tensor(y).to(device)
        with autocast(amp, device):
            logits = model(imgs)
        logits = logits.float()
        sums[:2] += topk_correct(logits, y)
        sums[2] += nn.functional.cross_entropy(logits, y, reduction="sum")
        sums[3] += y.numel()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if _dist_on():
        dist.all_reduce(sums)
    n = max(float(sums[3]), 1.0)
    return {"top1": 100.0 * float(sums[0]) / n, "top5": 100.0 * float(sums[1]) / n,
            "loss": float(sums[2]) / n, "n": int(sums[3])}


# ----------------------------------------------------------------------------------------------------------
# Schedules, metrics, records
# ----------------------------------------------------------------------------------------------------------

def cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float):
    """Per-iteration linear warmup from 0 then half-cycle cosine to ``min_lr`` (MAE's lr_sched), as timm's
    CosineLRScheduler (which also applies each group's ``lr_scale``, i.e. layer decay); call
    ``step_update(num_updates=step)`` before every optimizer step."""
    from timm.scheduler import CosineLRScheduler

    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


def append_metrics(out_dir: Path, record: Dict[str, Any]) -> None:
    """One JSON line per logged step in ``out_dir/metrics.jsonl`` (same file and format as pretraining)."""
    with open(Path(out_dir) / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def accuracy_records(ctx, protocol: str, metrics: Dict[str, Any], **extra) -> list[dict]:
    """One record per metric: ``top1`` and ``top5`` of the final weights, and ``best_top1`` (the best evaluated
    epoch, as MAE reports; with ``best_epoch`` and ``n_evals``) when ``metrics`` has it."""
    records = [ctx.record(protocol, metric, metrics[metric], **extra) for metric in ("top1", "top5")]
    if "best_top1" in metrics:
        records.append(ctx.record(protocol, "best_top1", metrics["best_top1"], best_epoch=metrics["best_epoch"],
                                  n_evals=metrics["n_evals"], **extra))
    return records


# ----------------------------------------------------------------------------------------------------------
# The resumable step loop shared by the linear probe and fine-tuning
# ----------------------------------------------------------------------------------------------------------

CHECKPOINT_NAME = "checkpoint.pth"


class StepTrainer(metaclass=abc.ABCMeta):
    """Epochs of optimizer steps over a seeded, resumable data order (pretraining's pattern): atomic
    ``out_dir/checkpoint.pth`` every ``run.save_every_steps`` and at the end, exact resume from any step, a
    JSONL metrics log and a tqdm bar on rank 0.

    Subclasses set ``self.optimizer`` / ``self.scheduler`` and implement ``train_step(it) -> loss``,
    ``evaluate() -> {"top1", "top5", ...}``, ``modules_state()`` and ``load_modules_state(state)``.
    """

    protocol = "?"
    resume_sections: tuple = ("optim",)

    def __init__(self, cfg: Any, train_set: Dataset, train_transform: Optional[Callable], dist_info,
                 source_sha256: Optional[str] = None):
        from gmae.engine.distributed import init_distributed

        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.run.device)
        self.device = self.dist.device
        self.out_dir = Path(cfg.run.out_dir)
        self.source_sha256 = source_sha256
        try:
            self.accum = accumulation_steps(cfg.optim, self.dist.world_size)
        except ValueError as e:
            raise InputError(str(e)) from None
        self.data = SeededImages(train_set, train_transform, cfg.run.seed)
        self.steps_per_epoch = len(self.data) // cfg.optim.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"the train split has {len(self.data)} images, fewer than one batch "
                             f"(optim.batch_size={cfg.optim.batch_size})")
        self.total_steps = cfg.optim.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.lr = cfg.optim.effective_lr()
        self.step = 0
        self.optimizer = self.scheduler = None
        self.best: Dict[str, Dict[str, float]] = {}
        self.n_evals = 0

    # -- to implement ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, it) -> float:
        raise NotImplementedError

    @abc.abstractmethod
    def evaluate(self) -> Dict[str, float]:
        raise NotImplementedError

    @abc.abstractmethod
    def modules_state(self) -> Dict[str, Any]:
        raise NotImplementedError

    def end_of_epoch(self, epoch: int) -> None:
        """Called after the last step of every epoch: evaluates every ``cfg.eval_every_epochs`` epochs (MAE
        evaluates every epoch and reports the best), logging the result and keeping the best top-1."""
        every = getattr(self.cfg, "eval_every_epochs", None)
        if every and (epoch + 1) % every == 0:
            metrics = self.evaluate()
            self.note_eval(metrics, epoch)
            self.log({"step": self.step, "epoch": epoch, "event": "eval", **metrics})

    def note_eval(self, metrics: Dict[str, float], epoch: int) -> None:
        """Keep, per ``*top1`` metric, the best value and its epoch (saved with the checkpoint for resume)."""
        self.n_evals += 1
        for key, value in metrics.items():
            if key.endswith("top1") and (key not in self.best or value > self.best[key]["value"]):
                self.best[key] = {"value": float(value), "epoch": int(epoch)}

    def best_summary(self) -> Dict[str, Any]:
        """``best_top1``/``best_epoch`` (and ``best_<prefix>top1``/``best_<prefix>epoch``, e.g. for EMA)."""
        out: Dict[str, Any] = {"n_evals": self.n_evals}
        for key, b in self.best.items():
            prefix = key[: -len("top1")]
            out[f"best_{key}"], out[f"best_{prefix}epoch"] = b["value"], b["epoch"]
        return out

    @abc.abstractmethod
    def load_modules_state(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self, finished: bool = False) -> Dict[str, Any]:
        from gmae.config import config_to_dict
        from gmae.engine.checkpoint import rng_state

        return {**self.modules_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "epoch": self.step // self.steps_per_epoch, "config": config_to_dict(self.cfg),
                "protocol": self.protocol, "source_sha256": self.source_sha256, "rng": rng_state(),
                "world_size": self.dist.world_size, "finished": finished,
                "best": self.best, "n_evals": self.n_evals}

    def save(self, finished: bool = False) -> None:
        from gmae.engine.checkpoint import save_checkpoint
        from gmae.engine.distributed import barrier

        if self.dist.is_main:
            save_checkpoint(self.state_dict(finished), self.out_dir / CHECKPOINT_NAME)
        barrier()

    def maybe_resume(self) -> bool:
        from gmae.config import config_to_dict
        from gmae.engine.checkpoint import check_resumable, load_checkpoint, set_rng_state

        path = self.out_dir / CHECKPOINT_NAME
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        if ckpt.get("protocol") != self.protocol:
            raise InputError(f"{path}: cannot resume, it is a {ckpt.get('protocol')!r} run, not {self.protocol!r}; "
                             "use another --out")
        try:
            check_resumable(ckpt, path, config_to_dict(self.cfg), self.resume_sections, self.source_sha256)
        except ValueError as e:
            raise InputError(str(e)) from None
        self.load_modules_state(ckpt)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        self.best = dict(ckpt.get("best") or {})
        self.n_evals = int(ckpt.get("n_evals", 0))
        set_rng_state(ckpt["rng"])
        return True

    # -- loop --------------------------------------------------------------------------------------------------
    def log(self, record: Dict[str, Any]) -> None:
        if self.dist.is_main:
            append_metrics(self.out_dir, record)

    def train(self, resume: bool = True) -> Dict[str, Any]:
        """Train (or resume) to the end of the schedule, then evaluate. Returns metrics and the run summary;
        ``{"stopped_at": step}`` when ``run.stop_after_steps`` cut the run short. The run folder is locked
        meanwhile (released however training ends)."""
        from gmae.io import run_dir_lock

        with run_dir_lock(self.out_dir, self.protocol, enabled=self.dist.is_main):
            return self._train(resume)

    def _train(self, resume: bool) -> Dict[str, Any]:
        from gmae.config import save_config
        from gmae.engine.distributed import all_reduce_sum, barrier

        cfg = self.cfg
        barrier()
        # a refused resume must leave the run's config.yaml as it was: check first, then write
        resumed = self.maybe_resume() if resume else False
        if self.dist.is_main:
            save_config(cfg, self.out_dir / "config.yaml")
        end_step = self.total_steps if cfg.optim.max_steps is None else min(self.total_steps, cfg.optim.max_steps)
        global_batch = cfg.optim.batch_size
        self.log({"step": self.step, "event": "resume" if resumed else "start", "effective_lr": self.lr,
                  "batch_size": global_batch, "accum_steps": self.accum, "world_size": self.dist.world_size,
                  "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps})
        if self.dist.is_main and cfg.run.progress:
            print(f"{self.protocol}: effective lr {self.lr:.4g} (batch {global_batch} = {cfg.optim.batch_per_device}"
                  f" x {self.dist.world_size} processes x {self.accum} accumulation steps), "
                  f"{self.total_steps} steps" + (f", resuming at step {self.step}" if resumed else ""))
        bar = progress_bar(self.dist.is_main and cfg.run.progress, total=end_step, initial=self.step,
                           desc=self.protocol, unit="step")
        window = []
        stop = StopSignals.install()
        try:
            while self.step < end_step:
                epoch = self.step // self.steps_per_epoch
                loader = train_loader(self.data, cfg.optim, self.accum, cfg.data, self.dist, cfg.run.seed, epoch,
                                      self.step % self.steps_per_epoch, self.device)
                it = iter(loader)
                while self.step < end_step and self.step // self.steps_per_epoch == epoch:
                    self.scheduler.step_update(num_updates=self.step)
                    loss = self.train_step(it)
                    loss = float(all_reduce_sum(torch.tensor([loss], device=self.device)).item()) / self.dist.world_size
                    if not np.isfinite(loss):
                        from gmae.engine.train import last_checkpoint_note
                        from gmae.errors import RunStopped

                        raise RunStopped(f"{self.protocol}: non-finite loss at step {self.step}. "
                                         f"{last_checkpoint_note(self.out_dir)}")
                    self.step += 1
                    window.append(loss)
                    lr = max(g["lr"] for g in self.optimizer.param_groups)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}")
                    if self.step % cfg.run.log_every_steps == 0 or self.step == end_step:
                        self.log({"step": self.step, "epoch": epoch, "loss": sum(window) / len(window), "lr": lr})
                        window = []
                    if self.step % cfg.run.save_every_steps == 0 and self.step < end_step:
                        self.save()
                    if self.step < end_step and stop.requested(self.device):
                        if self.step % cfg.run.save_every_steps:  # else saved just above
                            self.save()
                        stop.exit(self.protocol, self.step, self.out_dir / CHECKPOINT_NAME, self.dist.is_main)
                    if cfg.run.stop_after_steps is not None and self.step >= cfg.run.stop_after_steps:
                        return {"stopped_at": self.step}
                del it, loader
                if self.step % self.steps_per_epoch == 0 and self.step < end_step:
                    self.end_of_epoch(epoch)
            self.save(finished=True)
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
        metrics = self.evaluate()
        self.note_eval(metrics, self.step // self.steps_per_epoch - 1)
        self.log({"step": self.step, "event": "eval", **metrics})
        return {**metrics, **self.best_summary(), "step": self.step, "resumed": resumed, "effective_lr": self.lr,
                "accum_steps": self.accum, "world_size": self.dist.world_size,
                "checkpoint": str(self.out_dir / CHECKPOINT_NAME)}
