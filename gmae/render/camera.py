"""The camera and the projection to screen space shared by every rendering backend.

Main entry: :func:`project`. Cameras (:class:`Camera`): ``"paper"``, the GMAE authors' camera and the default,
and ``"pinhole"``; ``compat="gsplat-0.1.0"`` moves centres about +1 px in u and v. Also the compositing
constants and gsplat 0.1.0's 3-sigma tile culling (:func:`v010_tile_range`).
Design notes (camera formulas, near plane, 0.1.0 pixel convention): docs/renderer.md#camera-and-projection
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Optional, Union

import torch
from torch import Tensor

if TYPE_CHECKING:  # only annotations here; gmae.render.gaussians imports this module
    from gmae.render.gaussians import Gaussians

# Compositing constants of 3DGS / gsplat 1.5.3 (gsplat/cuda/include/Common.h and the rasterizer kernel).
ALPHA_MIN = 1.0 / 255.0  # a Gaussian with alpha below this is skipped at a pixel
ALPHA_MAX = 0.999  # alpha is clamped to this
T_MIN = 1e-4  # a pixel stops before a Gaussian that would take its transmittance to <= T_MIN
EPS2D = 0.3  # added to the diagonal of every 2-D covariance (anti-aliasing low-pass)
TILE = 16  # tile edge in pixels, for binning
NEAR = 0.01  # near plane: Gaussians with camera depth <= NEAR are culled
# The tile bounding boxes are grown by this relative margin so that float32 rounding at the exact
# alpha = 1/255 contour can never drop a pixel that the per-pixel test would keep.
_BOX_MARGIN = 1e-4

COMPAT_MODES = (None, "gsplat-0.1.0")
# gsplat 0.1.0 divides by the homogeneous w (= 1 for the authors' view matrix) plus this constant.
_V010_W_EPS = 1e-6


def check_compat(compat: Optional[str]) -> Optional[str]:
    """``compat`` if it is a supported mode (None or "gsplat-0.1.0"), else a ValueError."""
    if compat not in COMPAT_MODES:
        raise ValueError(f"compat must be None (gsplat 1.5.3 rules) or 'gsplat-0.1.0', got {compat!r}")
    return compat


@dataclass(frozen=True)
class Camera:
    """Camera model. ``model``: "paper" (the authors' orthographic-centre camera) or "pinhole".

    fx, fy: focal lengths in pixels for the footprint Jacobian (and the pinhole centres); default W/2, H/2.
    cx, cy: principal point of the pinhole (default W/2, H/2); unused by "paper".
    z_offset: camera depth is z + z_offset (default 8). near: Gaussians with depth <= near are culled.
    """

    model: Literal["paper", "pinhole"] = "paper"
    fx: Optional[float] = None
    fy: Optional[float] = None
    cx: Optional[float] = None
    cy: Optional[float] = None
    z_offset: float = 8.0
    near: float = NEAR

    def resolved(self, height: int, width: int) -> "Camera":
        """This camera with its defaults filled in for an image of ``height`` x ``width``."""
        return replace(
            self,
            fx=width / 2.0 if self.fx is None else float(self.fx),
            fy=height / 2.0 if self.fy is None else float(self.fy),
            cx=width / 2.0 if self.cx is None else float(self.cx),
            cy=height / 2.0 if self.cy is None else float(self.cy),
        )


CameraLike = Union[str, Camera]


def as_camera(camera: CameraLike) -> Camera:
    if isinstance(camera, Camera):
        cam = camera
    elif camera in ("paper", "pinhole"):
        cam = Camera(model=camera)
    else:
        raise ValueError(f"camera must be 'paper', 'pinhole' or a Camera, got {camera!r}")
    if cam.model not in ("paper", "pinhole"):
        raise ValueError(f"Camera.model must be 'paper' or 'pinhole', got {cam.model!r}")
    return cam


@dataclass
class Projection:
    """Screen-space Gaussians for an image of H x W (what a rasterizer consumes).

    means2d [B, N, 2] (u, v) pixel coordinates; cov2d [B, N, 3] (xx, xy, yy) including the 0.3 I;
    conics [B, N, 3] (a, b, c), the upper triangle of cov2d^-1 as gsplat stores it, so that
    sigma = 1/2 (a dx^2 + c dy^2) + b dx dy; depths [B, N] camera depths t_z;
    radii [B, N] opacity-aware radius sqrt(2 lambda_max ln(255 o)) outside which alpha < 1/255 (0 when culled);
    extent [B, N, 2] int32 half-widths (x, y) of the axis-aligned box holding every pixel with alpha >= 1/255,
    ceil(sqrt(2 ln(255 o) cov_xx)) etc., 0 when culled (behind the near plane, o < 1/255 or off the image);
    visible [B, N] = extent > 0. Gradients flow to means2d, cov2d, conics and depths; radii/extent carry none.
    """

    means2d: Tensor
    cov2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    extent: Tensor
    visible: Tensor


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] read as (w, x, y, z), normalised here.

    An all-zero quaternion gives the identity with finite (zero) gradients: the norm is clamped away from
    zero and the matrix is quadratic in the normalised quaternion, whose derivative then vanishes.
    """
    n2 = (quats * quats).sum(-1, keepdim=True)
    q = quats * torch.rsqrt(n2.clamp_min(1e-24))
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, -1).reshape(*quats.shape[:-1], 3, 3)


def camera_depths(gaussians: Gaussians, camera: CameraLike = "paper") -> Tensor:
    """Camera depth t_z = z + z_offset of every Gaussian centre, [B, N]."""
    return gaussians.means[..., 2] + as_camera(camera).z_offset


def depth_order(gaussians: Gaussians, camera: CameraLike = "paper") -> Tensor:
    """Indices [B, N] that sort each image's Gaussians nearest first (ties: by index, as compositing does)."""
    return torch.argsort(camera_depths(gaussians, camera).detach(), dim=-1, stable=True)


def project(
    gaussians: Gaussians, height: int, width: int, camera: CameraLike = "paper", compat: Optional[str] = None
) -> Projection:
    """Project Gaussians [B, N] to an image of ``height`` x ``width``; see :class:`Projection`.

    Works in the dtype of ``gaussians`` (the renderers pass float32; tests may pass float64).
    compat: None (default) or "gsplat-0.1.0", which moves the centres to gsplat 0.1.0's pixel convention
    (about +1 px in u and v, see docs/renderer.md#gsplat-010-pixel-convention; paper camera only); radii, extent
    and visible keep their meaning around the moved centres.
    """
    check_compat(compat)
    cam = as_camera(camera).resolved(height, width)
    if compat is not None and cam.model != "paper":
        raise ValueError(f"compat={compat!r} reproduces the authors' paper camera; got camera model {cam.model!r}")
    means, opac = gaussians.means, gaussians.opacities
    tx, ty = means[..., 0], means[..., 1]
    tz = means[..., 2] + cam.z_offset
    in_front = tz > cam.near
    # Culled Gaussians get a harmless depth so that 1/t_z stays finite in values and gradients.
    tz_safe = torch.where(in_front, tz, torch.ones_like(tz))

    # 3-D covariance R S S^T R^T = M M^T with M = R diag(s).
    m = quat_to_rotmat(gaussians.quats) * gaussians.scales.unsqueeze(-2)
    cov3 = m @ m.transpose(-1, -2)

    # Perspective Jacobian of (f_x t_x/t_z, f_y t_y/t_z) at t (the EWA splatting footprint).
    inv_z = 1.0 / tz_safe
    zero = torch.zeros_like(tz)
    jac = torch.stack(
        (
            cam.fx * inv_z, zero, -cam.fx * tx * inv_z * inv_z,
            zero, cam.fy * inv_z, -cam.fy * ty * inv_z * inv_z,
        ),  # fmt: skip
        -1,
    ).reshape(*tz.shape, 2, 3)
    c2 = jac @ cov3 @ jac.transpose(-1, -2)
    cxx = c2[..., 0, 0] + EPS2D
    cxy = 0.5 * (c2[..., 0, 1] + c2[..., 1, 0])
    cyy = c2[..., 1, 1] + EPS2D
    cov2d = torch.stack((cxx, cxy, cyy), -1)
    det = cxx * cyy - cxy * cxy  # >= 0.09 thanks to EPS2D
    conics = torch.stack((cyy / det, -cxy / det, cxx / det), -1)

    if compat == "gsplat-0.1.0":
        # 0.1.0's ndc2pix(x / (1 + 1e-6)) lands on integer-centred pixels; +0.5 converts to ours.
        u = (width / 2.0) * (tx / (1.0 + _V010_W_EPS)) + (width / 2.0 + 1.0)
        v = (height / 2.0) * (ty / (1.0 + _V010_W_EPS)) + (height / 2.0 + 1.0)
    elif cam.model == "paper":
        u = (width / 2.0) * (tx + 1.0)
        v = (height / 2.0) * (ty + 1.0)
    else:
        u = cam.fx * tx * inv_z + cam.cx
        v = cam.fy * ty * inv_z + cam.cy
    means2d = torch.stack((u, v), -1)

    with torch.no_grad():
        # alpha >= 1/255  <=>  o exp(-sigma) >= 1/255  <=>  d^T cov2d^-1 d <= 2 ln(255 o): an ellipse whose
        # bounding box has half-widths sqrt(2 ln(255 o) cov_xx), sqrt(2 ln(255 o) cov_yy).
        log_o = torch.log((255.0 * opac.detach()).clamp_min(1e-30))
        live = in_front & (log_o > 0) & torch.isfinite(u) & torch.isfinite(v)
        two_l = torch.where(live, 2.0 * log_o, torch.zeros_like(log_o))
        mid = 0.5 * (cxx + cyy).detach()
        lam_max = mid + torch.sqrt((mid * mid - det.detach()).clamp_min(0.0))
        radii = torch.sqrt(two_l * lam_max)
        ex = torch.sqrt(two_l * cxx.detach()) * (1.0 + _BOX_MARGIN)
        ey = torch.sqrt(two_l * cyy.detach()) * (1.0 + _BOX_MARGIN)
        ex = torch.ceil(ex.clamp_max(2.0**30))
        ey = torch.ceil(ey.clamp_max(2.0**30))
        ud, vd = u.detach(), v.detach()
        on_image = (ud + ex > 0) & (ud - ex < width) & (vd + ey > 0) & (vd - ey < height)
        visible = live & on_image & (ex > 0) & (ey > 0)
        extent = torch.where(visible.unsqueeze(-1), torch.stack((ex, ey), -1), torch.zeros_like(ex).unsqueeze(-1))
        extent = extent.to(torch.int32)
        radii = torch.where(live, radii, torch.zeros_like(radii))
    return Projection(means2d, cov2d, conics, tz, radii, extent, visible)


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """Number of TILE x TILE tiles (rows, columns) covering the image."""
    return math.ceil(height / TILE), math.ceil(width / TILE)


def v010_radius(cov2d: Tensor) -> Tensor:
    """gsplat 0.1.0's culling radius of 2-D covariances [..., 3] (xx, xy, yy, with the 0.3 I), [...]:
    ceil(3 sqrt(b + sqrt(max(0.1, b^2 - det)))) with b the mean of the diagonal (a 3-sigma radius whose
    eigenvalue gap is floored, so it is at least 3 sqrt(b + 0.32)); no opacity term."""
    cov2d = cov2d.detach()
    b = 0.5 * (cov2d[..., 0] + cov2d[..., 2])
    det = cov2d[..., 0] * cov2d[..., 2] - cov2d[..., 1] * cov2d[..., 1]
    lam = b + torch.sqrt((b * b - det).clamp_min(0.1))
    return torch.ceil(3.0 * torch.sqrt(lam))


def v010_tile_range(proj: Projection, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Tile ranges [lo, hi) [B, N, 2] (x, y; integer-valued, in the dtype of means2d) that gsplat 0.1.0 bins
    each Gaussian of a ``compat="gsplat-0.1.0"`` projection into; empty (lo == hi) where the box misses the image.

    0.1.0 works in its own integer-centred pixel coordinates c' = c - 0.5: lo = clamp(int((c' - r)/16)),
    hi = clamp(int((c' + r)/16 + 1)) to [0, tiles] with C truncation (after clamping the same as floor),
    r = :func:`v010_radius`. A pixel outside these tiles never sees the Gaussian, even where
    alpha >= 1/255: the 3-sigma box can only be narrower than the opacity-aware one when o > exp(4.5)/255 ~ 0.35.
    The near-plane cut is not applied here (``proj.visible`` carries it; the tiled renderer uses both).
    """
    tiles_y, tiles_x = tile_grid(height, width)
    c = proj.means2d.detach() - 0.5
    r = v010_radius(proj.cov2d).unsqueeze(-1)
    top = c.new_tensor([tiles_x, tiles_y])
    lo = torch.minimum(torch.trunc((c - r) / TILE).clamp_min(0.0), top)
    hi = torch.minimum(torch.trunc((c + r) / TILE + 1.0).clamp_min(0.0), top)
    hi = torch.where(torch.isfinite(c).all(-1, keepdim=True), hi, lo)  # non-finite centres bin nowhere
    return lo, hi
