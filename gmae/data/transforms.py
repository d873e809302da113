"""ImageNet transforms used by pretraining and evaluation (the MAE / timm recipe) and their inverse."""

from __future__ import annotations

import math

import torch
from torchvision import transforms as T
from torchvision.transforms import functional as F
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


CROPS = ("tf", "torchvision")


class TFRandomResizedCrop(T.RandomResizedCrop):
    """MAE's TF/TPU-style RandomResizedCrop (``util/crop.py`` in facebookresearch/mae, after BYOL's TF code).

    One draw, no rejection loop: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), w and h rounded
    and then clipped to the image, the corner uniform over the positions left. torchvision's version instead
    retries up to 10 times for a crop that fits and falls back to a centre crop, which skews it towards
    smaller crops (mean area fraction 0.435 vs 0.518 here on a 500 x 375 image at scale (0.08, 1)).
    Random numbers come from torch's generator, in the same order as MAE's.
    """

    @staticmethod
    def get_params(img, scale, ratio):  # noqa: D102 (torchvision's signature)
        width, height = F.get_image_size(img)
        target_area = height * width * torch.empty(1).uniform_(scale[0], scale[1]).item()
        log_lo, log_hi = torch.log(torch.tensor(ratio))
        aspect = torch.exp(torch.empty(1).uniform_(log_lo, log_hi)).item()
        w = min(int(round(math.sqrt(target_area * aspect))), width)
        h = min(int(round(math.sqrt(target_area / aspect))), height)
        i = torch.randint(0, height - h + 1, size=(1,)).item()
        j = torch.randint(0, width - w + 1, size=(1,)).item()
        return i, j, h, w


def random_resized_crop(size: int, scale: tuple[float, float], crop: str = "tf") -> T.RandomResizedCrop:
    """Bicubic RandomResizedCrop to ``size``: ``crop="tf"`` (MAE's, default) or ``"torchvision"``."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    cls = TFRandomResizedCrop if crop == "tf" else T.RandomResizedCrop
    return cls(size, scale=scale, interpolation=InterpolationMode.BICUBIC)


def pretrain_transform(size: int, scale: tuple[float, float] = (0.08, 1.0), crop: str = "tf") -> T.Compose:
    """PIL image -> float tensor (3, size, size), normalised: RandomResizedCrop(size, scale, bicubic; MAE's
    TF-style one by default, see :class:`TFRandomResizedCrop`), RandomHorizontalFlip, ToTensor,
    Normalize(IMAGENET_MEAN, IMAGENET_STD). (MAE pretrains with scale=(0.2, 1); its linear probe uses the same
    transform with scale (0.08, 1).)"""
    return T.Compose([
        random_resized_crop(size, scale, crop),
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
