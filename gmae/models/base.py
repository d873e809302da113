"""What GMAE and the MAE baseline share: the masked encoder, the patch-wise loss and the reconstruction API.

A subclass adds a decoder and says how it turns encoder tokens into an RGB prediction: GMAE renders
Gaussians, MAE regresses pixels. Everything the engine and the evaluations call lives here.
"""

from __future__ import annotations

import abc

import torch
import torch.nn as nn

from gmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize  # noqa: F401 (re-exported)
from gmae.models.vit import MaskedViTEncoder

LOSS_TYPES = ("masked", "all", "masked_norm")


def imagenet_denormalize(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] ImageNet-normalised -> RGB (unclamped: the loss target keeps the exact inverse)."""
    return denormalize(x, clamp=False)


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's norm-pix target: per patch (x - mean) / sqrt(var + eps), unbiased variance."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=True)
    return (patches - mean) / (var + eps) ** 0.5


def patch_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, loss_type: str) -> torch.Tensor:
    """Per-patch MSE averaged over masked patches ("masked", "masked_norm") or all patches ("all").

    pred, target: [B, L, P] patches (target already normalised for "masked_norm"); mask: [B, L], 1 = masked.
    """
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    if loss_type == "all":
        return per_patch.mean()
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


class MaskedAutoencoder(nn.Module, metaclass=abc.ABCMeta):
    """Encoder + masking shared by GMAE and MAE. Subclasses implement :meth:`predict` and :meth:`loss_target`."""

    def __init__(self, encoder: MaskedViTEncoder, mask_ratio: float = 0.75, loss_type: str = "masked"):
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.loss_type = loss_type
        self.patch_size = encoder.patch_size

    # -- subclass hooks -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, latent, ids_restore, ids_keep, imgs) -> dict:
        """Return at least {"patches": [B, L, p*p*3]} in the space of :meth:`loss_target`."""
        raise NotImplementedError

    @abc.abstractmethod
    def loss_target(self, imgs: torch.Tensor) -> torch.Tensor:
        """Patchified target [B, L, p*p*3] before any norm-pix normalisation."""
        raise NotImplementedError

    @abc.abstractmethod
    def to_rgb01(self, out: dict, imgs: torch.Tensor) -> torch.Tensor:
        """The prediction as [B, 3, H, W] RGB in [0, 1]."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------------------
    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None,
                return_block_outputs: bool = False) -> dict:
        """imgs: [B, 3, H, W] ImageNet-normalised. Returns {"loss", "mask", "patches", ...}."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        enc = self.encoder(imgs, ratio, noise, return_block_outputs=return_block_outputs)
        latent, mask, ids_restore, ids_keep = enc[:4]
        out = self.predict(latent, ids_restore, ids_keep, imgs)
        target = self.loss_target(imgs)
        if self.loss_type == "masked_norm":
            target = normalize_patches(target)
        out["loss"] = patch_mse(out["patches"].float(), target.float(), mask, self.loss_type)
        out["mask"] = mask
        out["latent"] = latent
        if return_block_outputs:
            out["block_outputs"] = enc[4]
        return out

    @torch.no_grad()
    def reconstruct(self, imgs: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None,
                    paste_visible: bool = False) -> dict:
        """Images + mask ratio -> {"rgb": [B, 3, H, W] in [0, 1], "mask": [B, L], ...} (shared by GMAE and MAE).

        With ``paste_visible`` the visible input patches replace the prediction there.
        """
        out = self.forward(imgs, mask_ratio, noise)
        rgb = self.to_rgb01(out, imgs).clamp(0, 1)
        if paste_visible:
            p = self.patch_size
            b, _, h, w = imgs.shape
            m = out["mask"].reshape(b, 1, h // p, w // p)
            m = m.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)
            rgb = rgb * m + imagenet_denormalize(imgs).clamp(0, 1) * (1 - m)
        out["rgb"] = rgb
        return out
