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
    # any other constructor argument of the registered model
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def constructor_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mask_ratio": self.mask_ratio, "loss_type": self.loss_type}
        if self.num_gaussians is not None:
            out["num_gaussians"] = self.num_gaussians
        if self.max_scale is not None:
            out["max_scale"] = self.max_scale
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
    num_workers: int = 10
    pin_memory: bool = True


@dataclass
class OptimConfig:
    epochs: int = 400
    # effective (global) batch; reached with batch_per_device x processes x accumulation steps
    batch_size: int = 4096
    batch_per_device: int = 64
    blr: float = 1e-4  # lr = blr * batch_size / 256
    lr: Optional[float] = None  # absolute lr; overrides blr when set
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_epochs: float = 5.0
    min_lr: float = 0.0
    clip_grad: Optional[float] = 2.0
    # stop after this many optimizer steps (smoke runs); the schedule still spans ``epochs``
    max_steps: Optional[int] = None

    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else self.blr * self.batch_size / 256


@dataclass
class RunConfig:
    out_dir: str = "runs/pretrain"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # autocast dtype for the transformer on CUDA ("bf16", "fp16" or "none"); rendering is always float32.
    # CPU runs use float32 throughout (CPU bf16 autocast is slow and changes numerics).
    amp: str = "bf16"
    save_every_steps: int = 1000
    log_every_steps: int = 20
    max_consecutive_nonfinite: int = 20
    online_probe: bool = False
    probe_lr: float = 1e-3
    tensorboard: bool = True
    progress: bool = True
    # debugging / preemption drills: stop (as if killed) after this many optimizer steps
    stop_after_steps: Optional[int] = None


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
