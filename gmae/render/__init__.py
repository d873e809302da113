"""Differentiable Gaussian splatting for GMAE: one projection, three compositing backends.

    from gmae.render import Gaussians, render
    out = render(Gaussians(means, scales, quats, colors, opacities), height=224, width=224)
    out.rgb [B, H, W, 3], out.alpha [B, H, W] (= 1 - final transmittance),
    out.depth [B, H, W] (= sum_i w_i z_i / max(alpha, 1e-10), z_i the camera depth of Gaussian i)

Design notes (backends, gsplat 0.1.0 compatibility, zero-shot helpers): docs/renderer.md#entry-point
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
from torch import Tensor

from gmae.render.camera import (
    COMPAT_MODES,
    Camera,
    CameraLike,
    Projection,
    camera_depths,
    check_compat,
    depth_order,
    project,
    quat_to_rotmat,
    v010_radius,
    v010_tile_range,
)
from gmae.render.gaussians import Gaussians
from gmae.render.torch_backend import batch_background, render_dense, render_tiles

__all__ = [
    "COMPAT_MODES",
    "Camera",
    "Gaussians",
    "Projection",
    "RenderOutput",
    "batch_background",
    "camera_depths",
    "choose_backend",
    "depth_order",
    "project",
    "quat_to_rotmat",
    "render",
    "render_dense",
    "render_tiles",
    "v010_radius",
    "v010_tile_range",
]

log = logging.getLogger(__name__)
_LOGGED: set[str] = set()

Backend = Literal["auto", "torch", "dense", "gsplat"]


@dataclass
class RenderOutput:
    """rgb [B, H, W, 3], alpha [B, H, W], depth [B, H, W], all float32; ``backend`` that produced them."""

    rgb: Tensor
    alpha: Tensor
    depth: Tensor
    backend: str


def choose_backend(backend: Backend, device: torch.device) -> str:
    """The concrete backend for ``backend`` on ``device``; "auto" picks gsplat only for CUDA with gsplat found."""
    if backend not in ("auto", "torch", "dense", "gsplat"):
        raise ValueError(f"backend must be 'auto', 'torch', 'dense' or 'gsplat', got {backend!r}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        from gmae.render.gsplat_backend import gsplat_importable

        chosen = "gsplat" if gsplat_importable() else "torch"
    else:
        chosen = "torch"
    key = f"{device.type}:{chosen}"
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info("gmae.render: backend='auto' uses %r for %s tensors", chosen, device.type)
    return chosen


def render(
    gaussians: Gaussians,
    height: int,
    width: int,
    background: Optional[Tensor] = None,
    backend: Backend = "auto",
    camera: CameraLike = "paper",
    subset: Union[Tensor, slice, None] = None,
    compat: Optional[str] = None,
) -> RenderOutput:
    """Render a batch of Gaussians [B, N] (each image its own) to B images of ``height`` x ``width``.

    background: [3] or [B, 3] (default white). camera: "paper" (default), "pinhole" or a :class:`Camera`.
    subset: render only ``gaussians.take(subset)`` (a slice or index tensor [K] / [B, K] along N).
    compat: None (default; gsplat 1.5.3's rules, bit-for-bit as before) or "gsplat-0.1.0" (paper camera only):
    centres in gsplat 0.1.0's pixel convention (about +1 px in u and v) for every backend; with
    backend "torch" (also what "auto" picks on CPU) also 0.1.0's 3-sigma tile culling and its backward;
    with "gsplat" 1.5.3's culling and exact backward stay; "dense" raises a ValueError. Output shapes and
    dtypes do not change.
    Always computes in float32 with autocast off (half inputs are cast up).
    """
    check_compat(compat)
    if subset is not None:
        gaussians = gaussians.take(subset)
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height} x {width}")
    g = gaussians.to(torch.float32)
    bg = None if background is None else torch.as_tensor(background).to(g.means.device, torch.float32)
    name = choose_backend(backend, g.means.device)
    with torch.autocast(device_type=g.means.device.type, enabled=False):
        if name == "torch":
            rgb, alpha, depth = render_tiles(g, height, width, bg, camera, compat=compat)
        elif name == "dense":
            rgb, alpha, depth = render_dense(g, height, width, bg, camera, compat=compat)
        else:
            from gmae.render.gsplat_backend import render_gsplat

            rgb, alpha, depth = render_gsplat(g, height, width, bg, camera, compat=compat)
    return RenderOutput(rgb, alpha, depth, name)
