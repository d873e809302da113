"""What ``gmae eval recon`` measures on its PNGs, and the per-image masks that make it deterministic: per-image
PSNR (all pixels, or the masked patches' pixels) and SSIM on [0, 1], the uint8 quantisation of a reconstruction
(torchvision's save_image rule), patch masks as pixel masks, and masking noise seeded per image."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def psnr_per_image(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image PSNR in dB on [0, 1]: pred, target [B, H, W, C] (uint8 -> /255, or floats in [0, 1]) -> [B].

    ``mask`` [B, H, W] bool restricts the MSE to the selected pixels (all channels). Identical images give inf.
    The suite's PSNR is the mean of these values over images.
    """
    p, t = _unit(pred), _unit(target)
    if p.shape != t.shape or p.ndim != 4:
        raise ValueError(f"pred and target must both be [B, H, W, C], got {p.shape} and {t.shape}")
    sq = (p - t) ** 2
    if mask is None:
        mse = sq.reshape(sq.shape[0], -1).mean(axis=1)
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != p.shape[:3]:
            raise ValueError(f"mask must be [B, H, W] = {p.shape[:3]}, got {m.shape}")
        count = m.reshape(m.shape[0], -1).sum(axis=1) * p.shape[3]
        if (count == 0).any():
            raise ValueError("mask selects no pixel in some image")
        mse = (sq * m[..., None]).reshape(sq.shape[0], -1).sum(axis=1) / count
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / mse)


def ssim_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image SSIM (scikit-image, Gaussian-free 7 x 7 window, data range of [0, 1]): [B, H, W, C] -> [B]."""
    from skimage.metrics import structural_similarity

    p, t = _unit(pred), _unit(target)
    return np.array([structural_similarity(t[i], p[i], channel_axis=-1, data_range=1.0) for i in range(p.shape[0])])


def pixel_mask(mask: torch.Tensor, patch: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """Patch mask [B, L] (1 = masked) -> pixel mask [B, H, W] bool."""
    h, w = grid_hw
    m = mask.reshape(mask.shape[0], h, w).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return m.bool().cpu().numpy()


def masking_noise(indices: Sequence[int], num_patches: int, seed: int) -> torch.Tensor:
    """Per-image uniform noise [B, L] from seed * 1000003 + index: masks depend on the image, not the batch."""
    rows = [torch.rand(num_patches, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
            for i in indices]
    return torch.stack(rows)


def quantize(rgb: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] float -> [B, H, W, 3] uint8: clamp to [0, 1], x 255, round half up (torchvision's save_image)."""
    q = (rgb.detach().float().clamp(0, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    return q.permute(0, 2, 3, 1).cpu().numpy()
