"""The pretraining config schema, shared by GMAE and the MAE baseline. Defaults are the paper's ViT-B recipe
(../shared/spec/gmae-method.md, "Pretraining recipe"); YAML files under configs/pretrain/ override them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class ModelConfig:
    name: str = "gmae_vit_base_patch16"
    mask_ratio: float = 0.75
    # "masked" (paper default), "all" patches, or "masked_norm" (MAE's norm-pix target)
    loss_type: str = "masked"
    # GMAE only: number of Gaussians k and maximum scale c; None keeps the model's default (256, 1.0)
    num_gaussians: Optional[int] = None
    max_scale: Optional[float] = None
    # "paper" (default): the method as the paper describes it; "authors": GMAE as the authors' code computes it
    # (decoder position gather, gsplat v0.1.0 rendering, summed "all" loss; see the README's deviation ledger)
    compat: str = "paper"
    # any other constructor argument of the registered model
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def constructor_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mask_ratio": self.mask_ratio, "loss_type": self.loss_type}
        if self.num_gaussians is not None:
            out["num_gaussians"] = self.num_gaussians
        if self.max_scale is not None:
            out["max_scale"] = self.max_scale
        if self.compat != "paper":  # only GMAE has an authors' mode; MAE then refuses the key by name
            out["compat"] = self.compat
        out.update(self.kwargs)
        return out


@dataclass
class DataConfig:
    # ImageFolder root holding ``train/`` (ImageNet layout); "???" = must be given
    root: str = "???"
    split: str = "train"
    img_size: int = 224
    # RandomResizedCrop scale: GMAE (0.08, 1.0); MAE uses (0.2, 1.0)
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    # "tf": MAE's TF/TPU-style RandomResizedCrop (one draw, clipped to the image; MAE and the GMAE authors
    # pretrain with it); "torchvision": torchvision's (up to 10 rejection draws, then a centre crop)
    crop: str = "tf"
    num_workers: int = 10
    pin_memory: bool = True


@dataclass
class ScheduleConfig:
    """Batch, lr scaling and the per-iteration linear warmup + half-cycle cosine schedule, shared by the
    pretraining loop and the linear-probe / fine-tuning loops (each sets its protocol's defaults)."""
    epochs: int = 90
    warmup_epochs: float = 10.0
    # effective (global) batch; reached with batch_per_device x processes x accumulation steps
    batch_size: int = 1024
    batch_per_device: int = 128
    blr: float = 1e-3  # lr = blr * batch_size / 256
    lr: Optional[float] = None  # absolute lr; overrides blr when set
    min_lr: float = 0.0
    # stop after this many optimizer steps (smoke runs); the schedule still spans ``epochs``
    max_steps: Optional[int] = None

    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else self.blr * self.batch_size / 256


def accumulation_steps(optim: ScheduleConfig, world_size: int) -> int:
    """Gradient-accumulation steps that keep optim.batch_size on ``world_size`` processes (must divide exactly)."""
    per_step = optim.batch_per_device * world_size
    if optim.batch_size % per_step:
        raise ValueError(f"optim.batch_size={optim.batch_size} is not a multiple of optim.batch_per_device"
                         f"={optim.batch_per_device} x {world_size} processes")
    return optim.batch_size // per_step


@dataclass
class OptimConfig(ScheduleConfig):
    # the paper's ViT-B pretraining recipe
    epochs: int = 400
    warmup_epochs: float = 5.0
    batch_size: int = 4096
    batch_per_device: int = 64
    blr: float = 1e-4  # lr = blr * batch_size / 256 = 1.6e-3
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    clip_grad: Optional[float] = 2.0
    # "step": linear warmup + half-cycle cosine updated every iteration (MAE's; default);
    # "epoch": the authors' LambdaLR stepped once per epoch: (e + 1) / warmup in warmup, then
    # 0.5 (1 + cos(pi (e + 1 - warmup) / (epochs - warmup))), so epoch 0 runs at lr / warmup and the last at 0
    lr_interval: str = "step"


@dataclass
class LoopRunConfig:
    """Run settings shared by every training loop (pretraining, linear probe, fine-tuning)."""
    out_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # autocast dtype on CUDA ("bf16", "fp16" or "none"); CPU runs are float32 throughout
    # (CPU bf16 autocast is slow and changes numerics)
    amp: str = "bf16"
    progress: bool = True
    save_every_steps: int = 500
    log_every_steps: int = 20
    # debugging / preemption drills: stop (as if killed) after this many optimizer steps
    stop_after_steps: Optional[int] = None


def validate_loop(cfg) -> None:
    """Checks of run.* and optim.* shared by every loop, naming the key, before anything is built."""
    if cfg.run.amp not in ("bf16", "fp16", "none"):
        raise ValueError(f"run.amp must be bf16, fp16 or none, got {cfg.run.amp!r}")
    if cfg.run.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"run.device must be auto, cpu or cuda, got {cfg.run.device!r}")
    for key in ("save_every_steps", "log_every_steps"):
        if getattr(cfg.run, key) < 1:
            raise ValueError(f"run.{key} must be >= 1, got {getattr(cfg.run, key)}")
    optim = getattr(cfg, "optim", None)
    if optim is not None:
        if optim.epochs < 1 or optim.batch_size < 1 or optim.batch_per_device < 1:
            raise ValueError("optim.epochs, optim.batch_size and optim.batch_per_device must be >= 1")
        if not 0 <= optim.warmup_epochs <= optim.epochs:
            raise ValueError(f"optim.warmup_epochs={optim.warmup_epochs} must lie in [0, optim.epochs]")
        if not optim.blr > 0:
            raise ValueError(f"optim.blr must be > 0, got {optim.blr}")
        if optim.lr is not None and not optim.lr > 0:
            raise ValueError(f"optim.lr must be > 0 (or null to use optim.blr), got {optim.lr}")
        if not optim.min_lr >= 0:
            raise ValueError(f"optim.min_lr must be >= 0, got {optim.min_lr}")
        if getattr(optim, "weight_decay", 0) < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {optim.weight_decay}")
        if optim.max_steps is not None and optim.max_steps < 1:
            raise ValueError(f"optim.max_steps must be >= 1 or null, got {optim.max_steps}")


@dataclass
class RunConfig(LoopRunConfig):
    out_dir: str = "runs/pretrain"
    save_every_steps: int = 1000
    max_consecutive_nonfinite: int = 20
    online_probe: bool = False
    # "separate": the probes get their own AdamW (lr run.probe_lr, no weight decay) outside the gradient clip,
    # so they cannot touch the encoder's update; "shared": the authors' setup, the probes' parameters sit in
    # the main AdamW (same lr schedule and weight-decay groups) and inside the same global gradient-norm clip
    probe_optimizer: str = "separate"
    probe_lr: float = 1e-3
    tensorboard: bool = True


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
