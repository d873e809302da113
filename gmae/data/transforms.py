"""ImageNet transforms used by pretraining and evaluation (the MAE / timm recipe) and their inverse."""

from __future__ import annotations

import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pretrain_transform(size: int, scale: tuple[float, float] = (0.08, 1.0)) -> T.Compose:
    """PIL image -> float tensor (3, size, size), normalised: RandomResizedCrop(size, scale, bicubic),
    RandomHorizontalFlip, ToTensor, Normalize(IMAGENET_MEAN, IMAGENET_STD). (MAE pretrains with scale=(0.2, 1).)"""
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale, interpolation=InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(size: int) -> T.Compose:
    """PIL image -> float tensor (3, size, size): Resize(int(size * 256 / 224), bicubic) of the shorter side,
    CenterCrop(size), ToTensor, Normalize (the standard 0.875 crop ratio)."""
    return T.Compose([
        T.Resize(int(size * 256 / 224), interpolation=InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def denormalize(x: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Undo the ImageNet Normalize: x (..., 3, H, W) -> x * std + mean, clamped to [0, 1] unless ``clamp=False``."""
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected a tensor of shape (..., 3, H, W), got {tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    y = x * std + mean
    return y.clamp(0.0, 1.0) if clamp else y
