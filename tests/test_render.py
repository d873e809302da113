"""Tests for gmae.render: the backends against a float64 per-pixel sequential reference written here.

The reference follows the definition literally (scipy's rotation, explicit Jacobian, numpy inverse, one
Gaussian after another per pixel with the skip and stop rules); it shares no code with gmae.render.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from gmae.render import Camera, Gaussians, choose_backend, depth_order, project, render
from gmae.render import gsplat_backend
import gmae.render as gmae_render
from gmae.render.torch_backend import render_dense, render_tiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("means", "scales", "quats", "colors", "opacities")


# ------------------------------------------------------------------------------------------------
# Reference
# ------------------------------------------------------------------------------------------------


def ref_render_image(means, scales, quats, colors, opac, h, w, bg, camera=None):
    """One image in float64, numpy, sequentially over depth-sorted Gaussians; returns rgb, alpha, depth, stats."""
    means, scales, quats, colors, opac, bg = (np.asarray(a, dtype=np.float64) for a in
                                              (means, scales, quats, colors, opac, bg))
    camera = camera or {"model": "paper"}
    fx = camera.get("fx", w / 2.0)
    fy = camera.get("fy", h / 2.0)
    cx = camera.get("cx", w / 2.0)
    cy = camera.get("cy", h / 2.0)
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    t_vis = np.ones((h, w))
    rgb = np.zeros((h, w, 3))
    dsum = np.zeros((h, w))
    done = np.zeros((h, w), dtype=bool)
    stats = {"stopped_pixels": 0, "skipped_small": 0, "clamped": 0}
    tz_all = means[:, 2] + 8.0
    for i in np.argsort(tz_all, kind="stable"):
        tx, ty, tz = means[i, 0], means[i, 1], tz_all[i]
        if tz <= 0.01:
            continue  # behind the near plane
        q = quats[i]
        rot = np.eye(3) if not np.any(q) else Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
        cov3 = rot @ np.diag(scales[i] ** 2) @ rot.T
        jac = np.array([[fx / tz, 0.0, -fx * tx / tz**2], [0.0, fy / tz, -fy * ty / tz**2]])
        cov2 = jac @ cov3 @ jac.T + 0.3 * np.eye(2)
        inv = np.linalg.inv(cov2)
        if camera["model"] == "paper":
            u, v = w / 2.0 * (tx + 1.0), h / 2.0 * (ty + 1.0)
        else:
            u, v = fx * tx / tz + cx, fy * ty / tz + cy
        dx, dy = jj - u, ii - v
        sigma = 0.5 * (inv[0, 0] * dx * dx + 2 * inv[0, 1] * dx * dy + inv[1, 1] * dy * dy)
        raw = opac[i] * np.exp(-sigma)
        alpha = np.minimum(0.999, raw)
        skip = (sigma < 0) | (alpha < 1.0 / 255.0) | done
        next_t = t_vis * (1.0 - alpha)
        stop = ~skip & (next_t <= 1e-4)
        done |= stop
        use = ~skip & ~stop
        rgb += (use * alpha * t_vis)[..., None] * colors[i]
        dsum += use * alpha * t_vis * tz
        t_vis = np.where(use, next_t, t_vis)
        stats["stopped_pixels"] += int(stop.sum())
        stats["skipped_small"] += int(((alpha < 1.0 / 255.0) & ~done).sum())
        stats["clamped"] += int((use & (raw > 0.999)).sum())
    alpha_acc = 1.0 - t_vis
    return rgb + t_vis[..., None] * bg, alpha_acc, dsum / np.maximum(alpha_acc, 1e-10), stats


def ref_render(g: Gaussians, h, w, bg, camera=None):
    outs = [ref_render_image(*(getattr(g, f)[b].detach().double().numpy() for f in FIELDS), h, w, bg, camera)
            for b in range(g.batch_size)]
    stats = {k: sum(o[3][k] for o in outs) for k in outs[0][3]}
    return tuple(np.stack([o[k] for o in outs]) for k in range(3)) + (stats,)


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------


def make_case(seed, b, n, *, xy=1.2, log_scale=(-7.0, 3.0), opac=None, quat_mag=True, dtype=torch.float32):
    """Random Gaussians: centres partly off-image, log-uniform scales, unnormalised quaternions."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(b, n, 3, generator=gen, dtype=torch.float64) * 2 - 1
    means[..., :2] *= xy
    lo, hi = log_scale
    scales = torch.exp(lo + (hi - lo) * torch.rand(b, n, 3, generator=gen, dtype=torch.float64))
    quats = torch.randn(b, n, 4, generator=gen, dtype=torch.float64)
    if quat_mag:
        quats = quats * torch.exp(torch.randn(b, n, 1, generator=gen, dtype=torch.float64))
    colors = torch.rand(b, n, 3, generator=gen, dtype=torch.float64)
    if opac is None:
        opac = torch.rand(b, n, generator=gen, dtype=torch.float64)
        # Opacities near and above the 0.999 clamp, and below the 1/255 cut.
        opac[:, 0::5] = 1.0
        opac[:, 3::8] = 0.9995
        opac[:, 1::7] = 0.995
        opac[:, 2::9] = 0.003
    else:
        lo_o, hi_o = opac
        opac = lo_o + (hi_o - lo_o) * torch.rand(b, n, generator=gen, dtype=torch.float64)
    return Gaussians(means, scales, quats, colors, opac).to(dtype)


CASES = {
    # non-square, tiny to huge scales, opacity extremes, partly off-image, 2 x 3 tiles
    "mixed": dict(seed=1, b=2, n=14, h=20, w=33, bg=[1.0, 1.0, 1.0]),
    # many nearly opaque layers: the T <= 1e-4 stop rule fires
    "opaque_stack": dict(seed=2, b=1, n=40, h=37, w=29, bg=[0.2, 0.5, 0.9],
                         kw=dict(opac=(0.95, 0.9999), log_scale=(0.0, 2.0), xy=0.6)),
    # image smaller than one tile
    "tiny_image": dict(seed=3, b=2, n=6, h=7, w=11, bg=[0.0, 0.0, 0.0]),
}


def _compare(out, ref, atol=1e-5):
    for name, a, r in zip(("rgb", "alpha", "depth"), out, ref):
        a = a.detach().double().numpy()
        err = np.abs(a - r).max()
        assert err <= atol, f"{name}: max abs error {err:.3g} > {atol}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_backends_match_sequential_reference(case):
    c = CASES[case]
    g = make_case(c["seed"], c["b"], c["n"], **c.get("kw", {}))
    bg = torch.tensor(c["bg"])
    *ref, stats = ref_render(g, c["h"], c["w"], np.array(c["bg"]))
    out = render(g, c["h"], c["w"], background=bg, backend="torch")
    assert out.backend == "torch" and out.rgb.dtype == torch.float32
    shape = (c["b"], c["h"], c["w"])
    assert out.rgb.shape == shape + (3,) and out.alpha.shape == out.depth.shape == shape
    _compare((out.rgb, out.alpha, out.depth), ref)
    dense = render(g, c["h"], c["w"], background=bg, backend="dense")
    _compare((dense.rgb, dense.alpha, dense.depth), ref)
    # The cases exercise the rules they are meant to.
    assert stats["skipped_small"] > 0
    if case == "opaque_stack":
        assert stats["stopped_pixels"] > 100
    if case == "mixed":
        assert stats["clamped"] > 0


def test_pinhole_camera_and_near_plane_match_reference():
    g = make_case(4, 1, 12, xy=2.0, log_scale=(-3.0, 0.5))
    g.means.data[0, 3, 2] = -8.5  # behind the camera: culled
    g.means.data[0, 3, :2] = 0.0
    cam = {"model": "pinhole", "fx": 40.0, "fy": 30.0, "cx": 12.0, "cy": 10.0}
    *ref, _ = ref_render(g, 22, 26, np.ones(3), cam)
    out = render(g, 22, 26, camera=Camera("pinhole", fx=40.0, fy=30.0, cx=12.0, cy=10.0), backend="torch")
    _compare((out.rgb, out.alpha, out.depth), ref)
    assert project(g, 22, 26, "pinhole").extent[0, 3].eq(0).all()


def test_float64_path_matches_reference_tightly():
    g = make_case(1, 2, 14, dtype=torch.float64)
    *ref, _ = ref_render(g, 20, 33, np.ones(3))
    _compare(render_tiles(g, 20, 33), ref, atol=1e-10)


def test_chunking_and_batching_do_not_change_the_result():
    g = make_case(5, 3, 25, log_scale=(-2.0, 0.5))
    full = render_tiles(g, 40, 48)
    small = render_tiles(g, 40, 48, chunk_elems=1)  # one (image, tile) pair per chunk
    for a, b in zip(full, small):
        assert torch.equal(a, b)
    # Every image has its own Gaussians: the batch equals a loop over images.
    for i in range(3):
        single = render_tiles(Gaussians(*(getattr(g, f)[i:i + 1] for f in FIELDS)), 40, 48)
        for a, b in zip(full, single):
            torch.testing.assert_close(a[i:i + 1], b, atol=1e-6, rtol=0)
    assert not torch.allclose(full[0][0], full[0][1])


@pytest.mark.parametrize("kind", ["mixed", "opaque_stack"])
def test_tiled_gradients_match_dense_autograd(kind):
    if kind == "mixed":
        g = make_case(6, 2, 20, log_scale=(-3.0, 0.7))
    else:
        g = make_case(2, 1, 40, opac=(0.95, 0.9999), log_scale=(0.0, 2.0), xy=0.6)
    fields = FIELDS
    leaves = [getattr(g, f).clone().requires_grad_() for f in fields]
    bg = torch.tensor([0.3, 0.6, 0.9], requires_grad=True)
    weights = None
    grads = []
    for fn in (render_tiles, render_dense):
        out = fn(Gaussians(*leaves), 24, 35, bg)
        if weights is None:
            gen = torch.Generator().manual_seed(0)
            weights = [torch.randn(o.shape, generator=gen) for o in out]
        loss = sum((o * wt).sum() for o, wt in zip(out, weights))
        grads.append(torch.autograd.grad(loss, leaves + [bg]))
    for name, a, b in zip(fields + ("background",), *grads):
        assert torch.isfinite(a).all()
        scale = b.abs().max().item()
        assert (a - b).abs().max().item() <= 1e-4 * max(scale, 1.0), name


def _margins(g: Gaussians, h, w):
    """Smallest distance of any pixel/Gaussian pair from the skip threshold, in sigma units."""
    p = project(g, h, w)
    jj, ii = torch.meshgrid(torch.arange(w, dtype=torch.float64) + 0.5,
                            torch.arange(h, dtype=torch.float64) + 0.5, indexing="xy")
    dx = p.means2d[..., 0, None, None] - jj
    dy = p.means2d[..., 1, None, None] - ii
    a, b, c = (p.conics[..., k, None, None] for k in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    return (sigma - torch.log(255 * g.opacities)[..., None, None]).abs().min().item()


def test_gradcheck_tiled_backward_float64():
    # Tiny cases kept away from the thresholds: alpha never near 1/255 at a pixel centre, opacities below
    # the clamp, few layers so T never approaches 1e-4.
    for seed in range(50):
        g = make_case(100 + seed, 2, 3, xy=0.9, log_scale=(-1.5, -0.5), opac=(0.2, 0.8), dtype=torch.float64)
        if _margins(g, 18, 20) > 1e-3:
            break
    else:
        pytest.fail("no seed kept away from the alpha threshold")
    fields = FIELDS
    leaves = [getattr(g, f).clone().requires_grad_() for f in fields]
    bg = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64, requires_grad=True)

    def fn(*args):
        return render_tiles(Gaussians(*args[:5]), 18, 20, args[5])

    assert torch.autograd.gradcheck(fn, (*leaves, bg), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)
    # Full Jacobian on one small image.
    small = [t[:1, :2].detach().clone().requires_grad_() for t in leaves]
    assert torch.autograd.gradcheck(lambda *a: render_tiles(Gaussians(*a), 9, 18), small, eps=1e-6,
                                    atol=1e-6, rtol=1e-4)


def test_all_transparent_renders_background():
    g = make_case(7, 2, 10)
    g.opacities.data.fill_(0.5 / 255)  # below the 1/255 cut everywhere
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.7, 0.8, 0.9]])
    for backend in ("torch", "dense"):
        out = render(g, 16, 21, background=bg, backend=backend)
        assert torch.equal(out.rgb, bg[:, None, None, :].expand(2, 16, 21, 3))
        assert torch.equal(out.alpha, torch.zeros(2, 16, 21))
        assert torch.equal(out.depth, torch.zeros(2, 16, 21))
    g2 = make_case(7, 1, 0)  # no Gaussians at all
    out = render(g2, 5, 6, background=torch.tensor([0.25, 0.5, 1.0]))
    assert torch.equal(out.rgb, torch.tensor([0.25, 0.5, 1.0]).expand(1, 5, 6, 3))


def test_zero_quaternions_give_finite_values_and_gradients():
    g = make_case(8, 2, 6, log_scale=(-2.0, 0.0))
    quats = torch.zeros(2, 6, 4, requires_grad=True)
    leaves = [g.means.clone().requires_grad_(), g.scales.clone().requires_grad_(), quats]
    for backend in ("torch", "dense"):
        out = render(Gaussians(leaves[0], leaves[1], quats, g.colors, g.opacities), 20, 20, backend=backend)
        assert all(torch.isfinite(t).all() for t in (out.rgb, out.alpha, out.depth))
        grads = torch.autograd.grad(out.rgb.sum() + out.depth.sum(), leaves)
        assert all(torch.isfinite(t).all() for t in grads)
    # An all-zero quaternion reads as the identity rotation.
    ident = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(2, 6, 4)
    a = render(Gaussians(g.means, g.scales, torch.zeros(2, 6, 4), g.colors, g.opacities), 20, 20)
    b = render(Gaussians(g.means, g.scales, ident, g.colors, g.opacities), 20, 20)
    assert torch.equal(a.rgb, b.rgb)


@pytest.mark.parametrize("camera", ["paper", "pinhole"])
def test_single_gaussian_centroid_is_the_camera_centre(camera):
    h, w = 40, 64
    x, y, z = 0.3, -0.4, 0.2
    if camera == "pinhole":
        x, y = 4.0, -3.0  # the default pinhole sees about (-8, 8) at depth 8
    # std about 2 px: the sampled centroid is then within 0.01 px of the true centre, while a half-pixel
    # convention error would move it by 0.5 px.
    g = Gaussians(torch.tensor([[[x, y, z]]]), torch.full((1, 1, 3), 0.5), torch.tensor([[[1.0, 0, 0, 0]]]),
                  torch.ones(1, 1, 3), torch.tensor([[0.9]]))
    out = render(g, h, w, camera=camera, backend="torch")
    a = out.alpha[0].double()
    jj, ii = torch.meshgrid(torch.arange(w, dtype=torch.float64) + 0.5,
                            torch.arange(h, dtype=torch.float64) + 0.5, indexing="xy")
    cu, cv = (a * jj).sum() / a.sum(), (a * ii).sum() / a.sum()
    if camera == "paper":
        want = (w / 2 * (x + 1), h / 2 * (y + 1))
    else:
        want = (w / 2 * x / (z + 8) + w / 2, h / 2 * y / (z + 8) + h / 2)
    assert abs(cu.item() - want[0]) < 0.02 and abs(cv.item() - want[1]) < 0.02
    assert out.depth[0][a > 0].sub(z + 8).abs().max() < 1e-5


def test_projection_box_holds_every_visible_pixel():
    g = make_case(9, 2, 30, log_scale=(-4.0, 1.0))
    p = project(g, 30, 40)
    jj, ii = torch.meshgrid(torch.arange(40) + 0.5, torch.arange(30) + 0.5, indexing="xy")
    dx = p.means2d[..., 0, None, None] - jj
    dy = p.means2d[..., 1, None, None] - ii
    a, b, c = (p.conics[..., k, None, None] for k in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp(g.opacities[..., None, None] * torch.exp(-sigma), max=0.999)
    seen = alpha >= 1 / 255
    ex = p.extent[..., 0, None, None].float()
    ey = p.extent[..., 1, None, None].float()
    inside = (dx.abs() <= ex) & (dy.abs() <= ey)
    assert seen.any() and not (seen & ~inside).any()
    # the radius bounds the box (lambda_max >= each diagonal entry of cov2d)
    assert (p.extent.float().amax(-1) <= torch.ceil(p.radii * (1 + 1e-4)) + 1e-3).all()
    assert p.extent.dtype == torch.int32 and (p.extent[~p.visible] == 0).all()
    assert (p.cov2d[..., 0] >= 0.3 - 1e-6).all() and p.depths.shape == (2, 30)


def test_depth_order_and_subsets():
    g = make_case(10, 2, 12, log_scale=(-2.0, 0.5))
    order = depth_order(g)
    assert torch.equal(order, torch.argsort(g.means[..., 2], dim=-1, stable=True))
    k = 5
    out = render(g, 20, 24, subset=order[:, :k], backend="torch")
    for b in range(2):
        idx = order[b, :k].numpy()
        ref = ref_render_image(g.means[b, idx], g.scales[b, idx], g.quats[b, idx], g.colors[b, idx],
                               g.opacities[b, idx], 20, 24, np.ones(3))
        _compare((out.rgb[b], out.alpha[b], out.depth[b]), ref[:3])
    mid = render(g.depth_slice(3, 9), 20, 24)
    mid2 = render(g, 20, 24, subset=order[:, 3:9])
    assert torch.equal(mid.rgb, mid2.rgb)
    # a 1-D index list selects the same Gaussians in every image
    one = render(g, 20, 24, subset=torch.tensor([0, 2]))
    two = render(g.take(slice(0, 3, 2)), 20, 24)
    assert torch.equal(one.rgb, two.rgb)


def test_render_is_float32_under_autocast_and_rejects_bad_shapes():
    g = make_case(11, 1, 8).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = render(g, 16, 16)
    assert out.rgb.dtype == out.alpha.dtype == out.depth.dtype == torch.float32
    with pytest.raises(ValueError, match="opacities"):
        Gaussians(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 3),
                  torch.zeros(1, 3))
    with pytest.raises(ValueError, match="backend"):
        render(make_case(0, 1, 2), 8, 8, backend="opengl")


# ------------------------------------------------------------------------------------------------
# gsplat backend (CPU: everything around the kernels; CUDA: parity)
# ------------------------------------------------------------------------------------------------


class FakeGsplat:
    """gsplat 1.5.3's isect_tiles / isect_offset_encode / rasterize_to_pixels re-implemented on CPU from the
    semantics of its CUDA kernels (IntersectTile.cu, RasterizeToPixels3DGSFwd.cu), forward only, with the
    argument checks of its Python wrappers. Lets the backend's packing and unpacking run without a GPU."""

    calls: list

    def __init__(self):
        self.calls = []

    def isect_tiles(self, means2d, radii, depths, tile_size, tile_width, tile_height, sort=True, packed=False):
        self.calls.append("isect_tiles")
        assert not packed and sort
        dims = means2d.shape[:-2]
        n = means2d.shape[-2]
        assert radii.shape == dims + (n, 2) and depths.shape == dims + (n,)
        assert radii.dtype == torch.int32 and means2d.dtype == depths.dtype == torch.float32
        assert not means2d.requires_grad
        i_count = math.prod(dims)
        tile_bits = int(math.floor(math.log2(tile_width * tile_height))) + 1
        m = means2d.reshape(-1, 2).numpy()
        r = radii.reshape(-1, 2).numpy()
        dbits = depths.reshape(-1).numpy().astype(np.float32).view(np.uint32)
        ids, flat = [], []
        for idx in range(i_count * n):
            rx, ry = float(r[idx, 0]), float(r[idx, 1])
            if rx <= 0 or ry <= 0:
                continue
            tx, ty = m[idx, 0] / tile_size, m[idx, 1] / tile_size
            x0 = min(max(0, math.floor(tx - rx / tile_size)), tile_width)
            x1 = min(max(0, math.ceil(tx + rx / tile_size)), tile_width)
            y0 = min(max(0, math.floor(ty - ry / tile_size)), tile_height)
            y1 = min(max(0, math.ceil(ty + ry / tile_size)), tile_height)
            for ti in range(y0, y1):
                for tj in range(x0, x1):
                    img = idx // n
                    ids.append((img << (32 + tile_bits)) | ((ti * tile_width + tj) << 32) | int(dbits[idx]))
                    flat.append(idx)
        ids = np.array(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return None, torch.from_numpy(ids[order]), torch.from_numpy(np.array(flat, dtype=np.int32)[order])

    def isect_offset_encode(self, isect_ids, n_images, tile_width, tile_height):
        self.calls.append("isect_offset_encode")
        n_tiles = tile_width * tile_height
        tile_bits = int(math.floor(math.log2(n_tiles))) + 1
        key = isect_ids >> 32
        flat_tile = (key >> tile_bits) * n_tiles + (key & ((1 << tile_bits) - 1))
        offsets = torch.searchsorted(flat_tile, torch.arange(n_images * n_tiles))
        return offsets.to(torch.int32).reshape(n_images, tile_height, tile_width)

    def rasterize_to_pixels(self, means2d, conics, colors, opacities, image_width, image_height, tile_size,
                            isect_offsets, flatten_ids, backgrounds=None, masks=None, packed=False,
                            absgrad=False):
        self.calls.append("rasterize_to_pixels")
        assert not packed and masks is None
        dims = means2d.shape[:-2]
        n, ch = means2d.shape[-2], colors.shape[-1]
        assert conics.shape == dims + (n, 3) and colors.shape == dims + (n, ch) and opacities.shape == dims + (n,)
        assert backgrounds.shape == dims + (ch,) and ch in (1, 2, 3, 4, 5, 8, 9, 16)
        th, tw = isect_offsets.shape[-2:]
        assert isect_offsets.shape == dims + (th, tw)
        i_count = math.prod(dims)
        f32 = np.float32
        m = means2d.detach().reshape(-1, 2).numpy()
        con = conics.detach().reshape(-1, 3).numpy()
        col = colors.detach().reshape(-1, ch).numpy()
        op = opacities.detach().reshape(-1).numpy()
        bgs = backgrounds.reshape(i_count, ch).numpy()
        offs = isect_offsets.reshape(i_count * th * tw).numpy()
        fl = flatten_ids.numpy()
        out = np.zeros((i_count, image_height, image_width, ch), dtype=f32)
        out_a = np.zeros((i_count, image_height, image_width, 1), dtype=f32)
        for img in range(i_count):
            for t in range(th * tw):
                gid = img * th * tw + t
                start, end = offs[gid], (offs[gid + 1] if gid + 1 < len(offs) else len(fl))
                ti, tj = divmod(t, tw)
                for i in range(ti * tile_size, min((ti + 1) * tile_size, image_height)):
                    for j in range(tj * tile_size, min((tj + 1) * tile_size, image_width)):
                        px, py = f32(j + 0.5), f32(i + 0.5)
                        tr, acc = f32(1.0), np.zeros(ch, dtype=f32)
                        for g in fl[start:end]:
                            ddx, ddy = m[g, 0] - px, m[g, 1] - py
                            sig = f32(0.5) * (con[g, 0] * ddx * ddx + con[g, 2] * ddy * ddy) + con[g, 1] * ddx * ddy
                            al = min(f32(0.999), op[g] * np.exp(-sig))
                            if sig < 0 or al < f32(1.0) / f32(255.0):
                                continue
                            nt = tr * (f32(1.0) - al)
                            if nt <= f32(1e-4):
                                break
                            acc += col[g] * (al * tr)
                            tr = nt
                        out[img, i, j] = acc + tr * bgs[img]
                        out_a[img, i, j, 0] = 1.0 - tr
        return (torch.from_numpy(out).reshape(dims + (image_height, image_width, ch)),
                torch.from_numpy(out_a).reshape(dims + (image_height, image_width, 1)))


def test_gsplat_inputs_are_packed_in_its_batch_layout():
    g = make_case(12, 3, 9)
    p = project(g, 20, 40)
    bg = torch.tensor([[0.1, 0.2, 0.3]]).expand(3, 3)
    packed = gsplat_backend.pack_gsplat_inputs(g, p, bg, 20, 40)
    assert packed.means2d.shape == (3, 1, 9, 2) and packed.conics.shape == (3, 1, 9, 3)
    assert packed.features.shape == (3, 1, 9, 5) and packed.opacities.shape == (3, 1, 9)
    assert packed.radii.shape == (3, 1, 9, 2) and packed.radii.dtype == torch.int32
    assert packed.backgrounds.shape == (3, 1, 5) and (packed.tile_height, packed.tile_width) == (2, 3)
    assert torch.equal(packed.features[:, 0, :, :3], g.colors)
    assert torch.equal(packed.features[:, 0, :, 3], g.means[..., 2] + 8)
    assert torch.equal(packed.features[:, 0, :, 4], torch.ones(3, 9))
    assert torch.equal(packed.backgrounds[:, 0], torch.tensor([0.1, 0.2, 0.3, 0.0, 0.0]).expand(3, 5))
    assert torch.equal(packed.radii[:, 0], p.extent)
    assert packed.n_images == 3


def test_gsplat_backend_end_to_end_with_cpu_stand_in():
    # Different Gaussians per image, non-square, several tiles, background per image.
    g = make_case(13, 3, 12, log_scale=(-3.0, 0.5))
    bg = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.5, 0.0], [0.2, 0.1, 0.9]])
    fake = FakeGsplat()
    rgb, alpha, depth = gsplat_backend.render_gsplat(g, 21, 35, bg, gsplat_module=fake)
    assert fake.calls == ["isect_tiles", "isect_offset_encode", "rasterize_to_pixels"]
    ref = render(g, 21, 35, background=bg, backend="torch")
    torch.testing.assert_close(rgb, ref.rgb, atol=2e-6, rtol=0)
    torch.testing.assert_close(alpha, ref.alpha, atol=2e-6, rtol=0)
    torch.testing.assert_close(depth, ref.depth, atol=1e-5, rtol=0)


def test_auto_backend_choice_and_gsplat_guard(monkeypatch):
    assert choose_backend("auto", torch.device("cpu")) == "torch"
    monkeypatch.setattr(gsplat_backend, "gsplat_importable", lambda: False)
    assert choose_backend("auto", torch.device("cuda")) == "torch"
    monkeypatch.setattr(gsplat_backend, "gsplat_importable", lambda: True)
    assert choose_backend("auto", torch.device("cuda")) == "gsplat"
    with pytest.raises(RuntimeError, match="CUDA"):
        render(make_case(0, 1, 3), 8, 8, backend="gsplat")


def test_cpu_run_never_imports_gsplat():
    code = (
        "import sys, torch\n"
        "from gmae.render import Gaussians, render\n"
        "g = Gaussians(torch.rand(2, 5, 3), torch.rand(2, 5, 3), torch.randn(2, 5, 4), torch.rand(2, 5, 3),"
        " torch.rand(2, 5))\n"
        "out = render(g, 12, 10, backend='auto')\n"
        "assert out.backend == 'torch', out.backend\n"
        "try:\n"
        "    render(g, 12, 10, backend='gsplat')\n"
        "except RuntimeError:\n"
        "    pass\n"
        "assert 'gsplat' not in sys.modules, 'gsplat was imported'\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCH_CUDA_ARCH_LIST"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gsplat_matches_torch_backend_on_cuda():
    pytest.importorskip("gsplat")
    g = make_case(14, 4, 64, log_scale=(-3.0, 0.3)).to("cuda")
    results = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    weights = [torch.randn(shape, generator=gen, device="cuda") for shape in ((4, 48, 80, 3), (4, 48, 80), (4, 48, 80))]
    mask = None
    for backend in ("torch", "gsplat"):
        leaves = [getattr(g, f).clone().requires_grad_() for f in FIELDS]
        out = render(Gaussians(*leaves), 48, 80, background=torch.tensor([1.0, 1.0, 1.0]), backend=backend)
        assert out.backend == backend
        if mask is None:
            # Depth is ill-conditioned where alpha is tiny (1/alpha); weight it only where coverage is solid.
            mask = (out.alpha.detach() > 0.2).float()
        loss = ((out.rgb * weights[0]).sum() + (out.alpha * weights[1]).sum()
                + (out.depth * weights[2] * mask).sum())
        results.append(((out.rgb, out.alpha, out.depth), torch.autograd.grad(loss, leaves)))
    (vals_t, grads_t), (vals_g, grads_g) = results
    # fast-math exp in the kernel can flip a pixel across the alpha = 1/255 cut (a change <= 1/255 in
    # colour); anything systematic would show up in the mean and in the fraction of differing pixels.
    for a, b in zip(vals_g[:2], vals_t[:2]):
        d = (a - b).abs()
        assert d.max().item() < 1e-2 and d.mean().item() < 1e-5 and (d > 1e-4).float().mean().item() < 1e-3
    dd = (vals_g[2] - vals_t[2]).abs()
    assert (dd > 1e-3).float().mean().item() < 1e-3
    for a, b in zip(grads_g, grads_t):
        assert torch.isfinite(a).all()
        assert (a - b).norm().item() <= 1e-2 * b.norm().item()


# ------------------------------------------------------------------------------------------------
# compat="gsplat-0.1.0": against a float64 per-pixel transcription of gsplat 0.1.0's kernels
# ------------------------------------------------------------------------------------------------
#
# Transcribed from the behaviour of gsplat v0.1.0 (helpers.cuh ndc2pix / project_pix / compute_cov2d_bounds /
# get_tile_bbox, forward.cu rasterize_forward, backward.cu rasterize_backward_kernel) as plain Python, one
# pixel and one Gaussian at a time; shares no code with gmae.render.

V010 = "gsplat-0.1.0"


def ref_v010_screen(means, scales, quats, h, w):
    """Per Gaussian, float64: centre in 0.1.0's own pixel coordinates (pixel (i, j) sampled at (j, i)),
    conic (a, b, c), camera depth, 3-sigma radius and tile box [min, max) as 0.1.0 bins it."""
    means, scales, quats = (np.asarray(a, dtype=np.float64) for a in (means, scales, quats))
    tiles_x, tiles_y = (w + 15) // 16, (h + 15) // 16
    out = []
    for i in range(means.shape[0]):
        x, y, z = means[i]
        tz = z + 8.0  # viewmat: identity rotation, translation (0, 0, 8)
        q = quats[i]
        rot = Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()
        cov3 = rot @ np.diag(scales[i] ** 2) @ rot.T
        fx, fy = w / 2.0, h / 2.0
        jac = np.array([[fx / tz, 0.0, -fx * x / tz**2], [0.0, fy / tz, -fy * y / tz**2]])
        cov2 = jac @ cov3 @ jac.T + 0.3 * np.eye(2)
        det = cov2[0, 0] * cov2[1, 1] - cov2[0, 1] ** 2
        conic = (cov2[1, 1] / det, -cov2[0, 1] / det, cov2[0, 0] / det)
        # project_pix with projmat = viewmat: p_hom.w = 1, then ndc2pix(v, W, c) = 0.5 W v + 0.5 + c, c = W/2.
        rw = 1.0 / (1.0 + 1e-6)
        cx, cy = 0.5 * w * x * rw + 0.5 + w / 2.0, 0.5 * h * y * rw + 0.5 + h / 2.0
        bb = 0.5 * (cov2[0, 0] + cov2[1, 1])
        lam = bb + math.sqrt(max(0.1, bb * bb - det))
        rad = math.ceil(3.0 * math.sqrt(lam))
        def clamp(t, top):
            return min(max(0, t), top)

        box = [clamp(math.trunc(cx / 16 - rad / 16), tiles_x), clamp(math.trunc(cx / 16 + rad / 16 + 1), tiles_x),
               clamp(math.trunc(cy / 16 - rad / 16), tiles_y), clamp(math.trunc(cy / 16 + rad / 16 + 1), tiles_y)]
        out.append(dict(xy=(cx, cy), conic=conic, depth=tz, radius=rad, box=box, front=tz > 0.01))
    return out


def ref_v010_raster(screen, feats, opac, bg, h, w, v_out=None, bwd_clamp=0.99, exact=False):
    """0.1.0's forward (features [N, C], background [C]) and, given dL/dF per pixel [h, w, C], its backward.

    Returns F [h, w, C] (with T_final bg added), T_final [h, w], per-Gaussian grads v_xy [N, 2], v_conic [N, 3]
    (w.r.t. our conic parameters (a, b, c): 0.1.0 stores half of the b entry, the gradient of each of the two
    symmetric matrix entries, and its cov2d vjp adds both back), v_depth [N] (through the z feature, channel 3
    when C = 5), v_feat [N, C], v_opac [N], and counters. ``exact=True`` (with bwd_clamp = 0.999) instead
    gives the exact derivative of the forward: no gradient through alphas clamped at 0.999.
    """
    n, ch = feats.shape
    order = sorted(range(n), key=lambda k: (screen[k]["depth"], k))
    out = np.zeros((h, w, ch))
    t_fin = np.ones((h, w))
    g = dict(xy=np.zeros((n, 2)), conic=np.zeros((n, 3)), feat=np.zeros((n, ch)), opac=np.zeros(n))
    stats = dict(over_099=0, over_0999=0, culled_visible=0, stopped=0)
    for i in range(h):
        for j in range(w):
            tj, ti = j // 16, i // 16
            binned = [k for k in order if screen[k]["front"] and screen[k]["box"][0] <= tj < screen[k]["box"][1]
                      and screen[k]["box"][2] <= ti < screen[k]["box"][3]]
            tr, acc, used = 1.0, np.zeros(ch), []
            for k in order:  # only counting: alpha >= 1/255 here, yet not binned to this tile
                if k not in binned and screen[k]["front"]:
                    (a, b, c), (cx, cy) = screen[k]["conic"], screen[k]["xy"]
                    dx, dy = cx - j, cy - i
                    if opac[k] * math.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy)) >= 1 / 255:
                        stats["culled_visible"] += 1
            for k in binned:
                (a, b, c), (cx, cy) = screen[k]["conic"], screen[k]["xy"]
                dx, dy = cx - j, cy - i
                sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sig < 0:
                    continue
                al = min(0.999, opac[k] * math.exp(-sig))
                if al < 1 / 255:
                    continue
                nt = tr * (1 - al)
                if nt <= 1e-4:
                    stats["stopped"] += 1
                    break
                acc += feats[k] * al * tr
                tr = nt
                used.append((k, dx, dy, sig))
                stats["over_099"] += opac[k] * math.exp(-sig) > 0.99
                stats["over_0999"] += opac[k] * math.exp(-sig) > 0.999
            out[i, j] = acc + tr * bg
            t_fin[i, j] = tr
            if v_out is None:
                continue
            vo = v_out[i, j]
            tb, buf = tr, np.zeros(ch)
            for k, dx, dy, sig in reversed(used):  # back to front from the last composited Gaussian
                (a, b, c) = screen[k]["conic"]
                vis = math.exp(-sig)
                ab = min(bwd_clamp, opac[k] * vis)
                tb = tb / (1 - ab)
                fac = ab * tb
                g["feat"][k] += fac * vo
                v_al = (feats[k] @ vo) * tb - (buf @ vo) / (1 - ab) - tr * (bg @ vo) / (1 - ab)
                buf += feats[k] * fac
                if exact and opac[k] * vis >= 0.999:
                    continue  # d alpha / d(o, sigma) = 0 on the clamp
                g["opac"][k] += vis * v_al
                v_sig = -opac[k] * vis * v_al
                g["conic"][k] += (0.5 * v_sig * dx * dx, v_sig * dx * dy, 0.5 * v_sig * dy * dy)
                g["xy"][k] += (v_sig * (a * dx + b * dy), v_sig * (b * dx + c * dy))
    return out, t_fin, g, stats


def make_v010_case():
    """Two 32 x 48 images of 20 Gaussians: opacities at/near 1 (o vis > 0.99), wide opaque ones that 0.1.0's
    3-sigma tiles cut, centres near and past the border."""
    g = make_case(21, 2, 20, xy=1.1, log_scale=(-1.0, 1.3), quat_mag=False, dtype=torch.float64)
    g.opacities[:, 0::4] = 1.0
    g.opacities[:, 1::6] = 0.996
    g.means[:, 5, :2] = torch.tensor([0.98, -0.97], dtype=torch.float64)  # at the bottom-right corner region
    g.means[:, 6, :2] = torch.tensor([-1.02, 0.2], dtype=torch.float64)  # centre just off the left edge
    # Wide and opaque, axis-aligned, centre 5 px left of the image: pixel std 12 px in x, so r = 37 and its tiles
    # end at x = 32 while alpha >= 1/255 reaches 33.3 px past the centre (columns 32-33 are culled).
    g.means[:, 7] = torch.tensor([-1.25, 0.1, 0.0], dtype=torch.float64)
    g.scales[:, 7] = torch.tensor([4.0, 3.0, 0.3], dtype=torch.float64)
    g.quats[:, 7] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    g.opacities[:, 7] = 0.97
    # an opaque pair one behind the other: T drops below 1e-4 and compositing stops
    g.means[:, 9] = g.means[:, 0] + torch.tensor([0.02, 0.03, 0.1], dtype=torch.float64)
    g.scales[:, 9] = g.scales[:, 0]
    g.opacities[:, 9] = 1.0
    return g


def _v010_reference(g, h, w, bg, weights, bwd_clamp=0.99, exact=False):
    """Reference F, T_final and parameter gradients of L = sum(w_rgb rgb) + sum(w_a alpha) + sum(w_d m depth)."""
    w_rgb, w_a, w_d = weights
    res = []
    for b in range(g.batch_size):
        scr = ref_v010_screen(g.means[b], g.scales[b], g.quats[b], h, w)
        feats = np.concatenate((g.colors[b].double().numpy(), np.array([[s["depth"], 1.0] for s in scr])), 1)
        bg5 = np.concatenate((bg, [0.0, 0.0]))
        fwd, _, _, _ = ref_v010_raster(scr, feats, g.opacities[b].double().numpy(), bg5, h, w)
        alpha, dnum = fwd[..., 4], fwd[..., 3]
        mask = alpha > 0.2  # depth = F3 / F4 is ill-conditioned where coverage is thin
        wd = w_d[b] * mask
        safe = np.where(mask, alpha, 1.0)
        v_out = np.concatenate((w_rgb[b], (wd / safe)[..., None], (w_a[b] - wd * dnum / safe**2)[..., None]), -1)
        fwd, t_fin, grads, stats = ref_v010_raster(scr, feats, g.opacities[b].double().numpy(), bg5, h, w, v_out,
                                                   bwd_clamp, exact)
        res.append(dict(scr=scr, fwd=fwd, mask=mask, grads=grads, stats=stats))
    return res


def _chain_reference(g, h, w, res):
    """Per-Gaussian screen-space reference gradients chained to (means, scales, quats) through project(compat)."""
    leaves = [t.detach().double().clone().requires_grad_() for t in (g.means, g.scales, g.quats)]
    p = project(Gaussians(*leaves, g.colors.double(), g.opacities.double()), h, w, compat=V010)
    v_xy = torch.from_numpy(np.stack([r["grads"]["xy"] for r in res]))
    v_conic = torch.from_numpy(np.stack([r["grads"]["conic"] for r in res]))
    v_depth = torch.from_numpy(np.stack([r["grads"]["feat"][:, 3] for r in res]))
    total = (p.means2d * v_xy).sum() + (p.conics * v_conic).sum() + (p.depths * v_depth).sum()
    gm, gs, gq = torch.autograd.grad(total, leaves)
    colors = torch.from_numpy(np.stack([r["grads"]["feat"][:, :3] for r in res]))
    opac = torch.from_numpy(np.stack([r["grads"]["opac"] for r in res]))
    return dict(means=gm, scales=gs, quats=gq, colors=colors, opacities=opac)


def _rel_err(a, b):
    return (a.double() - b.double()).abs().max().item() / max(b.abs().max().item(), 1e-12)


def _render_grads(g, h, w, bg, weights, mask, compat):
    leaves = [getattr(g, f).float().clone().requires_grad_() for f in FIELDS]
    out = render(Gaussians(*leaves), h, w, background=bg, backend="torch", compat=compat)
    w_rgb, w_a, w_d = (torch.from_numpy(x).float() for x in weights)
    loss = (out.rgb * w_rgb).sum() + (out.alpha * w_a).sum() + (out.depth * w_d * mask).sum()
    return out, dict(zip(FIELDS, torch.autograd.grad(loss, leaves)))


def test_v010_centres_and_tile_boxes_match_transcription():
    h, w = 32, 48
    g = make_v010_case()
    p = project(g, h, w, compat=V010)
    lo, hi = gmae_render.v010_tile_range(p, h, w)
    for b in range(2):
        for k, s in enumerate(ref_v010_screen(g.means[b], g.scales[b], g.quats[b], h, w)):
            # ours is continuous (pixel (i, j) centred at (j + 0.5, i + 0.5)): 0.1.0's coordinate + 0.5
            assert abs(p.means2d[b, k, 0].item() - 0.5 - s["xy"][0]) < 1e-9
            assert abs(p.means2d[b, k, 1].item() - 0.5 - s["xy"][1]) < 1e-9
            assert gmae_render.v010_radius(p.cov2d)[b, k].item() == s["radius"]
            assert [lo[b, k, 0], hi[b, k, 0], lo[b, k, 1], hi[b, k, 1]] == s["box"]
    # About +1 px in u and v against the default convention (the 1e-6 of 0.1.0's w is ~1e-5 px here).
    d = p.means2d - project(g, h, w).means2d
    assert (d - 1.0).abs().max().item() < 1e-4


def test_v010_forward_and_backward_match_transcription():
    h, w = 32, 48
    g = make_v010_case()
    bg = np.array([0.2, 0.5, 0.9])
    gen = np.random.default_rng(0)
    weights = (gen.standard_normal((2, h, w, 3)), gen.standard_normal((2, h, w)), gen.standard_normal((2, h, w)))
    res = _v010_reference(g, h, w, bg, weights)
    stats = {k: sum(r["stats"][k] for r in res) for k in res[0]["stats"]}
    # The case exercises every rule that differs: 0.99 < o vis (backward re-clamp), o vis > 0.999 (forward
    # clamp, unmasked in 0.1.0's backward), alpha >= 1/255 dropped by the 3-sigma tiles, the T stop.
    assert stats["over_099"] >= 5 and stats["over_0999"] >= 1 and stats["culled_visible"] > 20, stats
    assert stats["stopped"] > 0, stats
    mask = torch.from_numpy(np.stack([r["mask"] for r in res])).float()
    out, got = _render_grads(g, h, w, torch.tensor(bg, dtype=torch.float32), weights, mask, V010)

    # (a) forward
    fwd = np.stack([r["fwd"] for r in res])
    ref_rgb, ref_alpha = fwd[..., :3], fwd[..., 4]
    assert np.abs(out.rgb.detach().double().numpy() - ref_rgb).max() < 1e-5
    assert np.abs(out.alpha.detach().double().numpy() - ref_alpha).max() < 1e-5
    ref_depth = fwd[..., 3] / np.maximum(ref_alpha, 1e-10)
    assert np.abs((out.depth.detach().double().numpy() - ref_depth) * (ref_alpha > 1e-3)).max() < 1e-4

    # (b) gradients through the quirky backward, chained to the parameters through project(compat)
    want = _chain_reference(g, h, w, res)
    errs = {f: _rel_err(got[f], want[f]) for f in FIELDS}
    assert max(errs.values()) < 2e-5, errs  # observed ~1e-6 (float32 against float64)

    # (c) the case separates 0.1.0's backward from the exact derivative of the same forward, and from the
    # default renderer's backward, by far more than the tolerance above.
    exact = _chain_reference(g, h, w, _v010_reference(g, h, w, bg, weights, bwd_clamp=0.999, exact=True))
    for f in FIELDS:
        assert _rel_err(exact[f], want[f]) > 5e-3, f  # observed 0.016 (quats) to 0.1 (colours)
    assert _rel_err(got["opacities"], exact["opacities"]) > 5e-3
    _, default = _render_grads(g, h, w, torch.tensor(bg, dtype=torch.float32), weights, mask, None)
    for f in ("means", "opacities", "colors"):
        assert _rel_err(default[f], want[f]) > 1e-2, f


def test_v010_chunking_barely_changes_forward_and_backward():
    g = make_v010_case().to(torch.float32)
    res = []
    for chunk in (None, 1):
        leaves = [getattr(g, f).clone().requires_grad_() for f in FIELDS]
        out = render_tiles(Gaussians(*leaves), 32, 48, chunk_elems=chunk, compat=V010)
        loss = sum((o * torch.linspace(-1, 1, o.numel()).reshape(o.shape)).sum() for o in out[:2])
        res.append((out, torch.autograd.grad(loss, leaves)))
    # Sums over differently padded lists may round differently; nothing more.
    for a, b in zip(res[0][0] + res[0][1], res[1][0] + res[1][1]):
        assert (a - b).abs().max().item() <= 1e-6 * max(b.abs().max().item(), 1.0)


def test_v010_centroid_moves_one_pixel():
    # (d) A small Gaussian with o = 0.3 (< exp(4.5)/255, so the 3-sigma tiles cut nothing): its rendered
    # alpha centroid moves by +1 px in u and v, not 0 or 0.5.
    h, w = 40, 64
    g = Gaussians(torch.tensor([[[0.3, -0.4, 0.2]]]), torch.full((1, 1, 3), 0.5),
                  torch.tensor([[[1.0, 0, 0, 0]]]), torch.ones(1, 1, 3), torch.tensor([[0.3]]))
    jj, ii = torch.meshgrid(torch.arange(w, dtype=torch.float64) + 0.5,
                            torch.arange(h, dtype=torch.float64) + 0.5, indexing="xy")
    cents = []
    for compat in (None, V010):
        a = render(g, h, w, backend="torch", compat=compat).alpha[0].double()
        cents.append(((a * jj).sum() / a.sum(), (a * ii).sum() / a.sum()))
    du, dv = (cents[1][k] - cents[0][k] for k in range(2))
    assert abs(du.item() - 1.0) < 0.02 and abs(dv.item() - 1.0) < 0.02


def test_v010_three_sigma_tiles_drop_a_pixel_the_opacity_box_keeps():
    # (e) One opaque isotropic Gaussian, std 10 px: the 3-sigma radius is r = ceil(3 sqrt(100.3 + sqrt(0.1)))
    # = 31, and alpha >= 1/255 reaches sqrt(2 ln 255) * 10 = 33.3 px. With 0.1.0's centre at x' = 0.9 the box
    # ends at tile floor((0.9 + 31) / 16) + 1 = 2, so the pixel column j = 32 (31.1 px away, alpha = 0.008)
    # is in tile 2 and never sees it; the default box (33.3 px) keeps it.
    h, w = 16, 64
    s = math.sqrt(100.0) / (w / 2 / 8.0)  # pixel std = (f / t_z) s
    sy = math.sqrt(100.0) / (h / 2 / 8.0)
    x = (0.9 + 0.5 - 1.0 - w / 2) / (w / 2) * (1 + 1e-6)  # u = x' + 0.5 in our convention
    f64 = dict(dtype=torch.float64)
    g = Gaussians(torch.tensor([[[x, 0.0, 0.0]]], **f64), torch.tensor([[[s, sy, 1e-3]]], **f64),
                  torch.tensor([[[1.0, 0, 0, 0]]], **f64), torch.zeros(1, 1, 3, **f64), torch.tensor([[1.0]], **f64))
    p = project(g, h, w, compat=V010)
    # the opacity-aware box of the same (moved) Gaussian reaches 33 px right of it: into tile 2
    assert p.extent[0, 0, 0].item() >= 33 and math.ceil((p.means2d[0, 0, 0].item() + 33) / 16) >= 3
    assert gmae_render.v010_radius(p.cov2d).item() == 31
    lo, hi = gmae_render.v010_tile_range(p, h, w)
    assert (lo[0, 0, 0].item(), hi[0, 0, 0].item()) == (0, 2)
    compat = render(g, h, w, backend="torch", compat=V010).alpha[0]
    default = render(g, h, w, backend="torch").alpha[0]
    a_32 = math.exp(-0.5 * 31.1**2 / 100.3)
    assert compat[8, 31].item() > 0.5 * a_32 and torch.all(compat[:, 32:] == 0)
    assert default[8, 32].item() > 1 / 255  # the default, ~1 px to the left, still covers column 32
    # and compat's column 32 is dark only because of the tiles: its alpha there would pass the 1/255 test
    assert a_32 > 1 / 255


def test_v010_radius_and_tile_box_edge_cases():
    # Hand-made screen-space Gaussians (isotropic, cov2d = (s, 0, s)), 64 x 64 image, 4 x 4 tiles.
    #  s = 106.6: b^2 - det = 0 is floored to 0.1, so r = ceil(3 sqrt(106.6 + 0.316)) = ceil(31.02) = 32
    #             (without the floor it would be ceil(30.97) = 31).
    #  s = 100.3: r = ceil(3 sqrt(100.616)) = 31; with 0.1.0's centre at (1, 40) the right edge c' + r = 32
    #             is a tile boundary, and int(32/16 + 1) = 3 takes tile 2 in (a ceil would stop at 2);
    #             the left edge int((1 - 31)/16) = int(-1.875) = -1 is clamped to 0;
    #             in y: int((40 - 31)/16) = 0, int((40 + 31)/16 + 1) = 5 clamped to 4.
    from gmae.render.camera import Projection
    cov = torch.tensor([[[106.6, 0.0, 106.6], [100.3, 0.0, 100.3]]], dtype=torch.float64)
    means2d = torch.tensor([[[30.5, 30.5], [1.5, 40.5]]], dtype=torch.float64)  # ours = 0.1.0's + 0.5
    z = torch.zeros(1, 2, dtype=torch.float64)
    p = Projection(means2d, cov, cov, z + 8, z, torch.zeros(1, 2, 2, dtype=torch.int32), z > -1)
    assert gmae_render.v010_radius(cov).tolist() == [[32.0, 31.0]]
    lo, hi = gmae_render.v010_tile_range(p, 64, 64)
    assert lo[0, 1].tolist() == [0.0, 0.0] and hi[0, 1].tolist() == [3.0, 4.0]
    # 30 - 32 = -2 -> int(-0.125) = 0; int(62 / 16 + 1) = 4
    assert lo[0, 0].tolist() == [0.0, 0.0] and hi[0, 0].tolist() == [4.0, 4.0]


def test_v010_gsplat_backend_packs_shifted_centres():
    # (f) The gsplat backend with compat lands Gaussians at 0.1.0's centres (1.5.3's culling kept). With
    # opacities below exp(4.5)/255 the 3-sigma tiles cut nothing, so it equals the torch backend's compat.
    g = make_case(13, 3, 12, log_scale=(-3.0, 0.5), opac=(0.05, 0.34))
    bg = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.5, 0.0], [0.2, 0.1, 0.9]])
    fake = FakeGsplat()
    seen = {}
    real_pack = gsplat_backend.pack_gsplat_inputs

    def spy(gs, proj, *a):
        seen["means2d"] = proj.means2d
        return real_pack(gs, proj, *a)

    gsplat_backend.pack_gsplat_inputs = spy
    try:
        rgb, alpha, depth = gsplat_backend.render_gsplat(g, 21, 35, bg, gsplat_module=fake, compat=V010)
    finally:
        gsplat_backend.pack_gsplat_inputs = real_pack
    assert torch.equal(seen["means2d"], project(g, 21, 35, compat=V010).means2d)
    ref = render(g, 21, 35, background=bg, backend="torch", compat=V010)
    torch.testing.assert_close(rgb, ref.rgb, atol=2e-6, rtol=0)
    torch.testing.assert_close(alpha, ref.alpha, atol=2e-6, rtol=0)
    default = render(g, 21, 35, background=bg, backend="torch")
    assert (rgb - default.rgb).abs().max() > 1e-2


def test_compat_argument_is_validated():
    g = make_case(0, 1, 3)
    with pytest.raises(ValueError, match="compat"):
        render(g, 8, 8, compat="gsplat-0.1")
    with pytest.raises(ValueError, match="backend='torch'"):
        render(g, 8, 8, backend="dense", compat=V010)
    with pytest.raises(ValueError, match="paper"):
        render(g, 8, 8, camera="pinhole", compat=V010)
    # the default is None and unchanged
    assert torch.equal(render(g, 8, 8).rgb, render(g, 8, 8, compat=None).rgb)
