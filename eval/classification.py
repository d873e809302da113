"""What the classification evaluations (linear probe, fine-tune, kNN) share: config pieces, input checks,
the encoder built from any checkpoint, deterministic data loading, feature extraction, accuracy and records.

Data layout: ``data.root/{train,val}/<class>/<image>`` (ImageNet ImageFolder). The encoder comes from any file
``gmae.engine.checkpoint.load_encoder_weights`` accepts (our training checkpoints, ``gmae export`` files, official
MAE checkpoints, timm state dicts) and is rebuilt as a timm ``VisionTransformer``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler

from eval.command import Outcome
from gmae.engine.config import LoopRunConfig, ScheduleConfig, validate_loop  # noqa: F401
from gmae.engine.distributed import autocast
from gmae.engine.data_order import SeededSamples
from gmae.engine.loop import StepLoop

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
class ClassifierRunConfig(LoopRunConfig):
    """``run:`` of the classification evaluations: the step loop's settings (seed, amp, save / log periods) plus
    the record label (``eval.command.EvalRunConfig`` holds the same ``model_name`` for the other evaluations)."""
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
# Evaluation loader
# ----------------------------------------------------------------------------------------------------------

class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... : every sample evaluated exactly once over all ranks (no padding, so
    summed counts are exact)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.n, self.rank, self.world_size = n, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world_size))


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
# Records
# ----------------------------------------------------------------------------------------------------------

def accuracy_records(ctx, protocol: str, metrics: Dict[str, Any], prefix: str = "", **extra) -> list[dict]:
    """One record per metric: ``top1`` and ``top5`` of the final weights, and ``best_top1`` (the best evaluated
    epoch, as MAE reports; with ``best_epoch`` and ``n_evals``) when ``metrics`` has it. ``prefix`` picks another
    set of weights' entries (``ema_`` reads ``ema_top1``, ``best_ema_top1``, ``best_ema_epoch``)."""
    records = [ctx.record(protocol, metric, metrics[prefix + metric], **extra) for metric in ("top1", "top5")]
    if f"best_{prefix}top1" in metrics:
        records.append(ctx.record(protocol, "best_top1", metrics[f"best_{prefix}top1"],
                                  best_epoch=metrics[f"best_{prefix}epoch"], n_evals=metrics["n_evals"], **extra))
    return records


def training_outcome(ctx, protocol: str, cfg: Any, summary: Dict[str, Any], num_classes: int,
                     weights: Optional[Sequence[tuple[str, str]]] = None, **extra):
    """The records (rank 0) and summary line of a trained classifier (linear probe, fine-tuning), or a line
    saying where ``run.stop_after_steps`` stopped it. ``weights``: (label, summary prefix) pairs, e.g.
    ``[("final", ""), ("ema", "ema_")]``, each recorded with ``weights=label`` when the summary has it."""
    if "stopped_at" in summary:
        return Outcome([], f"{protocol} stopped at step {summary['stopped_at']} (run.stop_after_steps)", summary)
    records = []
    if ctx.dist.is_main:
        common = dict(extra, effective_lr=summary["effective_lr"], epochs=cfg.optim.epochs,
                      batch_size=cfg.optim.batch_size, accum_steps=summary["accum_steps"],
                      world_size=summary["world_size"], num_classes=num_classes, split=cfg.data.val_split)
        for label, prefix in weights or [(None, "")]:
            if f"{prefix}top1" in summary:
                tag = {} if label is None else {"weights": label}
                records += accuracy_records(ctx, protocol, summary, prefix, **tag, **common)
    line = (f"{protocol}: top1 {summary['top1']:.2f}  top5 {summary['top5']:.2f}  (effective lr "
            f"{summary['effective_lr']:.4g}, {summary['step']} steps) -> {cfg.run.out_dir}")
    return Outcome(records, line, summary)


# ----------------------------------------------------------------------------------------------------------
# The linear probe's and fine-tuning's use of the shared step loop
# ----------------------------------------------------------------------------------------------------------

class ClassifierLoop(StepLoop):
    """:class:`gmae.engine.loop.StepLoop` for a classifier trained on ``train_set`` (``train_transform`` run under a
    per-sample seed): it evaluates every ``cfg.eval_every_epochs`` epochs and after the last step, keeps the best
    top-1 and its epoch (saved, so a resumed run reports the same best), and hands the final metrics to the
    summary. Subclasses implement ``train_step``, ``evaluate() -> {"top1", "top5", ...}``, ``modules_state``
    and ``load_modules_state``."""

    def __init__(self, cfg: Any, train_set: Dataset, train_transform: Optional[Callable], dist_info,
                 source_sha256: Optional[str] = None):
        super().__init__(cfg, SeededSamples(train_set, train_transform, cfg.run.seed), dist_info, source_sha256)
        self.best: Dict[str, Dict[str, float]] = {}
        self.n_evals = 0

    @abc.abstractmethod
    def evaluate(self) -> Dict[str, float]:
        """Accuracy of the current weights on the val split: {"top1", "top5", ...} (EMA entries prefixed)."""

    def end_of_epoch(self, epoch: int) -> None:
        every = self.cfg.eval_every_epochs
        if every and (epoch + 1) % every == 0:
            self._evaluate_and_log(epoch)

    def final_metrics(self) -> Dict[str, Any]:
        metrics = self._evaluate_and_log(self.step // self.steps_per_epoch - 1)
        return {**metrics, **self.best_summary()}

    def _evaluate_and_log(self, epoch: int) -> Dict[str, float]:
        metrics = self.evaluate()
        self.n_evals += 1
        for key, value in metrics.items():  # per *top1 metric (final and EMA weights): the best and its epoch
            if key.endswith("top1") and (key not in self.best or value > self.best[key]["value"]):
                self.best[key] = {"value": float(value), "epoch": int(epoch)}
        self.log({"step": self.step, "epoch": epoch, "event": "eval", **metrics})
        return metrics

    def best_summary(self) -> Dict[str, Any]:
        """``best_top1``/``best_epoch`` (and ``best_<prefix>top1``/``best_<prefix>epoch``, e.g. for EMA)."""
        out: Dict[str, Any] = {"n_evals": self.n_evals}
        for key, b in self.best.items():
            prefix = key[: -len("top1")]
            out[f"best_{key}"], out[f"best_{prefix}epoch"] = b["value"], b["epoch"]
        return out

    def state_dict(self, finished: bool = False) -> Dict[str, Any]:
        return {**super().state_dict(finished), "best": self.best, "n_evals": self.n_evals}

    def load_state_dict(self, ckpt: Dict[str, Any]) -> None:
        super().load_state_dict(ckpt)
        self.best, self.n_evals = dict(ckpt.get("best") or {}), int(ckpt.get("n_evals", 0))
