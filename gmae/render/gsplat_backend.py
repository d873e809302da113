"""gsplat 1.5.3 rasterization of the whole batch in one call (CUDA only).

Main entry: :func:`render_gsplat`. Our projection (:func:`gmae.render.camera.project`) feeds gsplat's low-level
tile intersection and ``rasterize_to_pixels``; gsplat is imported lazily, on first use with CUDA tensors.
Design notes (why our projection, features, gsplat 0.1.0 compatibility): docs/renderer.md#gsplat-backend
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

import torch
from torch import Tensor

from gmae.render.camera import TILE, CameraLike, Projection, check_compat, project, tile_grid
from gmae.render.gaussians import Gaussians
from gmae.render.torch_backend import batch_background, splat_features

GSPLAT_VERSION = "1.5.3"


def gsplat_importable() -> bool:
    """Whether ``import gsplat`` would find a package (checked without importing it)."""
    return importlib.util.find_spec("gsplat") is not None


def load_gsplat() -> ModuleType:
    """Import gsplat (lazily, on first use); a clear error if it is missing."""
    try:
        return importlib.import_module("gsplat")
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"backend='gsplat' needs gsplat=={GSPLAT_VERSION} (pip install gsplat=={GSPLAT_VERSION}); "
            f"use backend='torch' on machines without it"
        ) from e


@dataclass
class GsplatInputs:
    """Arguments for gsplat 1.5.3's low-level calls, in its [B, C=1, ...] unpacked layout.

    means2d [B, 1, N, 2], conics [B, 1, N, 3], features [B, 1, N, 5] (r, g, b, z, 1), opacities [B, 1, N],
    backgrounds [B, 1, 5], radii int32 [B, 1, N, 2] (0 = culled), depths [B, 1, N]; all float32 but radii.
    tile_width, tile_height: tiles per row and column; n_images = B.
    """

    means2d: Tensor
    conics: Tensor
    features: Tensor
    opacities: Tensor
    backgrounds: Tensor
    radii: Tensor
    depths: Tensor
    width: int
    height: int
    tile_width: int
    tile_height: int
    n_images: int


def pack_gsplat_inputs(
    gaussians: Gaussians, proj: Projection, background: Tensor, height: int, width: int
) -> GsplatInputs:
    """Lay out a projected batch for gsplat (no gsplat import here, so it runs and is tested on CPU)."""
    b, n = proj.depths.shape
    feat = splat_features(gaussians, proj)
    bg = torch.cat((background, background.new_zeros(b, 2)), -1)  # depth and alpha channels see no background
    tiles_y, tiles_x = tile_grid(height, width)
    return GsplatInputs(
        means2d=proj.means2d.reshape(b, 1, n, 2),
        conics=proj.conics.reshape(b, 1, n, 3),
        features=feat.reshape(b, 1, n, feat.shape[-1]),
        opacities=gaussians.opacities.reshape(b, 1, n),
        backgrounds=bg.reshape(b, 1, -1),
        radii=proj.extent.reshape(b, 1, n, 2).to(torch.int32),
        depths=proj.depths.reshape(b, 1, n),
        width=width,
        height=height,
        tile_width=tiles_x,
        tile_height=tiles_y,
        n_images=b,
    )


def rasterize_packed(gs: ModuleType, p: GsplatInputs) -> tuple[Tensor, Tensor]:
    """Run gsplat's three low-level calls on packed inputs: features [B, H, W, 5], alphas [B, H, W]."""
    b = p.n_images
    _, isect_ids, flatten_ids = gs.isect_tiles(
        p.means2d.detach(),
        p.radii,
        p.depths.detach(),
        TILE,
        p.tile_width,
        p.tile_height,
        sort=True,
        packed=False,
    )
    offsets = gs.isect_offset_encode(isect_ids, b, p.tile_width, p.tile_height)  # [B, th, tw]
    offsets = offsets.reshape(b, 1, p.tile_height, p.tile_width)
    feats, alphas = gs.rasterize_to_pixels(
        p.means2d,
        p.conics,
        p.features,
        p.opacities,
        p.width,
        p.height,
        TILE,
        offsets,
        flatten_ids,
        backgrounds=p.backgrounds,
        packed=False,
    )
    return feats[:, 0], alphas[:, 0, ..., 0]


def render_gsplat(
    gaussians: Gaussians,
    height: int,
    width: int,
    background: Optional[Tensor] = None,
    camera: CameraLike = "paper",
    gsplat_module: Optional[ModuleType] = None,
    compat: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Render Gaussians [B, N] (float32 CUDA tensors) with gsplat: rgb [B, H, W, 3], alpha, depth [B, H, W].

    ``gsplat_module`` substitutes an object with gsplat's three functions (tests use a CPU stand-in).
    compat: None or "gsplat-0.1.0": the latter moves the centres to gsplat 0.1.0's pixel convention only;
    gsplat 1.5.3's culling and exact backward stay (docs/renderer.md#gsplat-backend).
    """
    check_compat(compat)
    if gsplat_module is None:
        if not gaussians.means.is_cuda:
            raise RuntimeError(
                "backend='gsplat' needs CUDA tensors (gsplat has no CPU kernels); use backend='torch' or 'auto'"
            )
        gsplat_module = load_gsplat()
    if gaussians.means.dtype != torch.float32:
        raise TypeError(f"backend='gsplat' renders float32 only, got {gaussians.means.dtype}")
    proj = project(gaussians, height, width, camera, compat)
    bg = batch_background(background, gaussians.batch_size, gaussians.means.device, gaussians.means.dtype)
    packed = pack_gsplat_inputs(gaussians, proj, bg, height, width)
    feats, _ = rasterize_packed(gsplat_module, packed)
    # gsplat already added T_final * background to the colour channels (and nothing to z and 1).
    alpha = feats[..., 4]
    return feats[..., :3], alpha, feats[..., 3] / alpha.clamp_min(1e-10)
