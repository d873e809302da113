"""Pure-PyTorch Gaussian compositing: a tiled renderer (CPU and GPU, differentiable) and a dense reference.

Entry points: :func:`render_tiles` (gsplat 1.5.3's compositing rule in 16 x 16 tiles, exact, with a hand-written
backward; ``compat="gsplat-0.1.0"`` for the authors' rasterizer) and :func:`render_dense` (every Gaussian at
every pixel, plain autograd). Design notes (the rule, the tiling, gsplat 0.1.0's backward formulas):
docs/renderer.md#torch-backend
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from gmae.render.camera import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    TILE,
    CameraLike,
    Projection,
    check_compat,
    project,
    tile_grid,
    v010_tile_range,
)
from gmae.render.gaussians import Gaussians

# Pixels x Gaussians evaluated at once per chunk. On CPU small chunks stay in cache (2^17 float32 = 512 KB
# per intermediate; measured fastest among 2^15..2^20 at 224 px); on GPU large chunks amortise kernel launches.
CHUNK_ELEMS_CPU = 1 << 17
CHUNK_ELEMS_CUDA = 1 << 24
_PIX = TILE * TILE
# gsplat 0.1.0's backward kernel clamps the re-derived alpha to this (its forward uses ALPHA_MAX = 0.999).
V010_BWD_ALPHA_MAX = 0.99


def splat_features(gaussians: Gaussians, proj: Projection) -> Tensor:
    """Per-Gaussian features (r, g, b, z, 1), [B, N, 5]."""
    ones = torch.ones_like(proj.depths).unsqueeze(-1)
    return torch.cat((gaussians.colors, proj.depths.unsqueeze(-1), ones), -1)


def _finish(feat_sum: Tensor, t_final: Tensor, background: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(rgb, alpha, depth) from the composited features [B, H, W, 5] and T_final [B, H, W]."""
    rgb = feat_sum[..., :3] + t_final.unsqueeze(-1) * background[:, None, None, :]
    alpha = feat_sum[..., 4]
    depth = feat_sum[..., 3] / alpha.clamp_min(1e-10)
    return rgb, alpha, depth


def batch_background(background, batch: int, device: torch.device,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """A background colour ([3] or [B, 3], tensor or sequence; None = white) as a [B, 3] tensor."""
    if background is None:
        return torch.ones(batch, 3, dtype=dtype, device=device)
    bg = torch.as_tensor(background).to(dtype=dtype, device=device)
    if bg.shape == (3,):
        return bg.expand(batch, 3)
    if bg.shape == (batch, 3):
        return bg
    raise ValueError(f"background must be [3] or [B={batch}, 3], got {tuple(bg.shape)}")


# ----------------------------------------------------------------------------------------------------
# Tiled renderer
# ----------------------------------------------------------------------------------------------------


@dataclass
class _TilePlan:
    """Which Gaussians each non-empty (image, tile) pair composites, grouped into chunks.

    pair_ids [P] flat (image * n_tiles + tile) ids, ordered by decreasing list length;
    gauss [P, K] flat (image * N + index) Gaussian ids per pair in depth order, padded with 0;
    counts [P] valid list lengths; chunks: (start, end, K_chunk) row ranges of the pair table.
    """

    batch: int
    tiles_y: int
    tiles_x: int
    pair_ids: Tensor
    gauss: Tensor
    counts: Tensor
    chunks: list[tuple[int, int, int]]


def _build_plan(
    proj: Projection, height: int, width: int, chunk_elems: int, compat: Optional[str] = None
) -> _TilePlan:
    b, n = proj.depths.shape
    ty_n, tx_n = tile_grid(height, width)
    with torch.no_grad():
        dev = proj.depths.device
        order = torch.argsort(proj.depths.detach(), dim=-1, stable=True)  # [B, N] nearest first
        by2 = order.unsqueeze(-1).expand(-1, -1, 2)
        uv = proj.means2d.detach().gather(1, by2)
        ext = proj.extent.gather(1, by2).to(uv.dtype)
        vis = proj.visible.gather(1, order)
        # Tile range [lo, hi) of each Gaussian's box, as gsplat's isect_tiles computes it.
        lo = torch.floor((uv - ext) / TILE)
        hi = torch.ceil((uv + ext) / TILE)
        if compat == "gsplat-0.1.0":
            # Every pixel with alpha >= 1/255 lies in the opacity-aware box, so intersecting it with 0.1.0's
            # 3-sigma box composites exactly 0.1.0's per-pixel lists, with fewer pairs to evaluate.
            lo_v, hi_v = v010_tile_range(proj, height, width)
            lo = torch.maximum(lo, lo_v.gather(1, by2))
            hi = torch.minimum(hi, hi_v.gather(1, by2))
        x_idx = torch.arange(tx_n, device=dev, dtype=uv.dtype)
        y_idx = torch.arange(ty_n, device=dev, dtype=uv.dtype)
        in_x = (x_idx >= lo[..., 0:1]) & (x_idx < hi[..., 0:1])  # [B, N, tx]
        in_y = (y_idx >= lo[..., 1:2]) & (y_idx < hi[..., 1:2])  # [B, N, ty]
        hit = in_y.unsqueeze(-1) & in_x.unsqueeze(-2) & vis[..., None, None]  # [B, N, ty, tx]
        hit = hit.reshape(b, n, ty_n * tx_n).transpose(1, 2)  # [B, T, N], N in depth order

        counts_all = hit.sum(-1).reshape(-1)  # [B*T]
        nonempty = torch.nonzero(counts_all).squeeze(-1)
        counts_ne = counts_all[nonempty]
        srt = torch.argsort(counts_ne, descending=True, stable=True)
        pair_ids = nonempty[srt]
        counts = counts_ne[srt]
        n_pairs = pair_ids.numel()
        k_max = int(counts[0]) if n_pairs else 0

        # nonzero is row-major, so within one (image, tile) the hits come in depth order.
        nz = torch.nonzero(hit.reshape(b * ty_n * tx_n, n))  # [n_isects, 2]: (pair flat id, depth rank)
        row_of_pair = torch.full((b * ty_n * tx_n,), -1, dtype=torch.long, device=dev)
        row_of_pair[pair_ids] = torch.arange(n_pairs, device=dev)
        starts = torch.cumsum(counts_all, 0) - counts_all  # first isect of each pair
        rank_in_pair = torch.arange(nz.shape[0], device=dev) - starts[nz[:, 0]]
        img = nz[:, 0] // (ty_n * tx_n)
        gauss = torch.zeros(n_pairs, k_max, dtype=torch.long, device=dev)
        gauss[row_of_pair[nz[:, 0]], rank_in_pair] = img * n + order[img, nz[:, 1]]

        chunks = []
        counts_host = counts.tolist()
        i = 0
        while i < n_pairs:
            k = counts_host[i]  # the longest list of this chunk (lists are sorted by length)
            rows = max(1, chunk_elems // (_PIX * k))
            chunks.append((i, min(n_pairs, i + rows), k))
            i += rows
    return _TilePlan(b, ty_n, tx_n, pair_ids, gauss, counts, chunks)


def _tile_pixels(pair_ids: Tensor, plan: _TilePlan, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates [P, 256] (x and y) of the tiles of the given (image, tile) pairs."""
    tile = pair_ids % (plan.tiles_y * plan.tiles_x)
    ty, tx = tile // plan.tiles_x, tile % plan.tiles_x
    local = torch.arange(TILE, device=pair_ids.device, dtype=dtype) + 0.5
    px = (tx.to(dtype) * TILE)[:, None, None] + local[None, None, :]  # [P, 1, 16]
    py = (ty.to(dtype) * TILE)[:, None, None] + local[None, :, None]  # [P, 16, 1]
    return px.expand(-1, TILE, TILE).reshape(-1, _PIX), py.expand(-1, TILE, TILE).reshape(-1, _PIX)


class _Chunk:
    """The compositing quantities of one chunk of (image, tile) pairs, each [P, 256, K]."""

    def __init__(self, px, py, mean2d, conic, opac, valid):
        self.dx = mean2d[:, None, :, 0] - px[:, :, None]
        self.dy = mean2d[:, None, :, 1] - py[:, :, None]
        a, b, c = (conic[:, None, :, i] for i in range(3))
        self.a, self.b, self.c = a, b, c
        self.sigma = 0.5 * (a * self.dx * self.dx + c * self.dy * self.dy) + b * self.dx * self.dy
        self.vis = torch.exp(-self.sigma)
        self.alpha_raw = opac[:, None, :] * self.vis
        alpha = self.alpha_raw.clamp_max(ALPHA_MAX)
        self.keep = (self.sigma >= 0) & (alpha >= ALPHA_MIN) & valid[:, None, :]
        self.alpha = torch.where(self.keep, alpha, 0.0)
        self.one_m = 1.0 - self.alpha
        t_incl = torch.cumprod(self.one_m, -1)
        # T_incl is non-increasing, so "T after this Gaussian > T_MIN" marks exactly the Gaussians composited
        # before the stop (the stopping Gaussian itself and everything behind it fail the test).
        self.live = t_incl > T_MIN
        self.t_excl = torch.cat((torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]), -1)
        self.w = torch.where(self.live, self.alpha * self.t_excl, 0.0)
        self.t_final = torch.where(self.live, t_incl, 1.0).amin(-1)  # [P, 256]


class _TileComposite(torch.autograd.Function):
    """sum_i f_i w_i and T_final per pixel for all images, with a hand-written, chunk-recomputing backward."""

    @staticmethod
    def forward(ctx, means2d, conics, opac, feat, plan: _TilePlan, height: int, width: int, v010_bwd: bool):
        # means2d [M, 2], conics [M, 3], opac [M], feat [M, C] with M = B*N flattened.
        n_pairs_all = plan.batch * plan.tiles_y * plan.tiles_x
        out_f = feat.new_zeros(n_pairs_all, _PIX, feat.shape[-1])
        out_t = feat.new_ones(n_pairs_all, _PIX)
        for s, e, k in plan.chunks:
            ids, g = plan.pair_ids[s:e], plan.gauss[s:e, :k]
            valid = torch.arange(k, device=g.device) < plan.counts[s:e, None]
            px, py = _tile_pixels(ids, plan, feat.dtype)
            ch = _Chunk(px, py, means2d[g], conics[g], opac[g], valid)
            out_f[ids] = torch.einsum("pqk,pkc->pqc", ch.w, feat[g])
            out_t[ids] = ch.t_final
        ctx.save_for_backward(means2d, conics, opac, feat)
        ctx.plan = plan
        ctx.v010_bwd = v010_bwd
        return _untile(out_f, plan, height, width), _untile(out_t.unsqueeze(-1), plan, height, width).squeeze(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_f, grad_t):
        means2d, conics, opac, feat = ctx.saved_tensors
        plan: _TilePlan = ctx.plan
        g_f = _tile(grad_f, plan)  # [B*T, 256, C]
        g_t = _tile(grad_t.unsqueeze(-1), plan).squeeze(-1)  # [B*T, 256]
        d_mean = torch.zeros_like(means2d)
        d_conic = torch.zeros_like(conics)
        d_opac = torch.zeros_like(opac)
        d_feat = torch.zeros_like(feat)
        for s, e, k in plan.chunks:
            ids, g = plan.pair_ids[s:e], plan.gauss[s:e, :k]
            valid = torch.arange(k, device=g.device) < plan.counts[s:e, None]
            px, py = _tile_pixels(ids, plan, feat.dtype)
            f = feat[g]
            ch = _Chunk(px, py, means2d[g], conics[g], opac[g], valid)
            gf, gt = g_f[ids], g_t[ids]
            gdot = torch.einsum("pqc,pkc->pqk", gf, f)  # dL/dF . f_k per pixel
            if ctx.v010_bwd:
                d_alpha, w = _v010_d_alpha(ch, gdot, gt)
            else:
                # dF/dalpha_k = T_k f_k - (sum_{j>k} w_j f_j) / (1 - alpha_k);
                # dT_final/dalpha_k = -T_final / (1 - alpha_k).
                w = ch.w
                wg = ch.w * gdot
                behind = wg.sum(-1, keepdim=True) - torch.cumsum(wg, -1)  # sum over j > k
                d_alpha = ch.t_excl * gdot - (behind + (ch.t_final * gt).unsqueeze(-1)) / ch.one_m
                # Only composited, unclamped Gaussians pass gradient to their parameters.
                on = ch.live & ch.keep & (ch.alpha_raw < ALPHA_MAX)
                d_alpha = torch.where(on, d_alpha, 0.0)
            d_sigma = -d_alpha * ch.alpha_raw  # alpha = o exp(-sigma)
            sdx, sdy = d_sigma * ch.dx, d_sigma * ch.dy
            dm = torch.stack(((ch.a * sdx + ch.b * sdy).sum(1), (ch.b * sdx + ch.c * sdy).sum(1)), -1)
            dc = torch.stack((0.5 * (sdx * ch.dx).sum(1), (sdx * ch.dy).sum(1), 0.5 * (sdy * ch.dy).sum(1)), -1)
            do = (d_alpha * ch.vis).sum(1)
            df = torch.einsum("pqc,pqk->pkc", gf, w)
            gv = g.reshape(-1)
            # Padded slots carry exact zeros (their w and d_alpha are masked), so adding them to id 0 is harmless.
            d_mean.index_add_(0, gv, dm.reshape(-1, 2))
            d_conic.index_add_(0, gv, dc.reshape(-1, 3))
            d_opac.index_add_(0, gv, do.reshape(-1))
            d_feat.index_add_(0, gv, df.reshape(-1, feat.shape[-1]))
        return d_mean, d_conic, d_opac, d_feat, None, None, None, None


def _v010_d_alpha(ch: _Chunk, gdot: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """gsplat 0.1.0's dL/dalpha and the weights it gives dL/df, [P, 256, K] each
    (docs/renderer.md#gsplat-010-binning-and-backward).

    gdot [P, 256, K] = dL/dF . f_k, gt [P, 256] = dL/dT_final. Non-composited slots get exact zeros.
    """
    used = ch.live & ch.keep  # the Gaussians 0.1.0's backward walk visits: composited ones, up to the stop
    alpha_b = torch.where(used, ch.alpha_raw.clamp_max(V010_BWD_ALPHA_MAX), 0.0)
    one_m_b = 1.0 - alpha_b
    # T'_k = T_final / prod_{j >= k} (1 - alpha'_j): a suffix product (>= T_final >= 1e-4 as alpha' <= alpha,
    # so the division is safe).
    suffix = torch.flip(torch.cumprod(torch.flip(one_m_b, (-1,)), -1), (-1,))
    t_b = ch.t_final.unsqueeze(-1) / suffix
    w_b = alpha_b * t_b  # zero where unused
    wg = w_b * gdot
    # sum over j > k as a back-to-front running sum, like 0.1.0's buffer; the padding at the back of a list
    # then only adds exact zeros before the real terms, so it cannot change these sums.
    suffix_wg = torch.flip(torch.cumsum(torch.flip(wg, (-1,)), -1), (-1,))
    behind = torch.cat((suffix_wg[..., 1:], torch.zeros_like(suffix_wg[..., :1])), -1)
    d_alpha = t_b * gdot - (behind + (ch.t_final * gt).unsqueeze(-1)) / one_m_b
    # No mask for clamped alphas: 0.1.0 passes vis * dL/dalpha to the opacity wherever it composited.
    return torch.where(used, d_alpha, 0.0), w_b


def _untile(x: Tensor, plan: _TilePlan, height: int, width: int) -> Tensor:
    """[B*T, 256, C] tile-major values to [B, H, W, C] images."""
    c = x.shape[-1]
    x = x.reshape(plan.batch, plan.tiles_y, plan.tiles_x, TILE, TILE, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(plan.batch, plan.tiles_y * TILE, plan.tiles_x * TILE, c)[:, :height, :width]


def _tile(x: Tensor, plan: _TilePlan) -> Tensor:
    """Inverse of :func:`_untile`: [B, H, W, C] to [B*T, 256, C], zero-padded to whole tiles."""
    b, h, w, c = x.shape
    hp, wp = plan.tiles_y * TILE, plan.tiles_x * TILE
    if (h, w) != (hp, wp):
        x = torch.nn.functional.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    x = x.reshape(b, plan.tiles_y, TILE, plan.tiles_x, TILE, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * plan.tiles_y * plan.tiles_x, _PIX, c)


def render_tiles(
    gaussians: Gaussians,
    height: int,
    width: int,
    background: Optional[Tensor] = None,
    camera: CameraLike = "paper",
    chunk_elems: Optional[int] = None,
    compat: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tiled render of Gaussians [B, N] in their own dtype: rgb [B, H, W, 3], alpha [B, H, W], depth [B, H, W].

    ``chunk_elems`` bounds the pixels x Gaussians evaluated at once (working memory about 20 x 4 bytes x
    chunk_elems in float32); default 2^17 on CPU, 2^24 on GPU.
    compat: None (gsplat 1.5.3 rules) or "gsplat-0.1.0" (its centres, 3-sigma tile binning and backward;
    see docs/renderer.md#gsplat-010-pixel-convention; paper camera only).
    """
    check_compat(compat)
    if chunk_elems is None:
        chunk_elems = CHUNK_ELEMS_CUDA if gaussians.means.is_cuda else CHUNK_ELEMS_CPU
    proj = project(gaussians, height, width, camera, compat)
    bg = batch_background(background, gaussians.batch_size, gaussians.means.device, gaussians.means.dtype)
    plan = _build_plan(proj, height, width, chunk_elems, compat)
    b, n = proj.depths.shape
    feat = splat_features(gaussians, proj)
    feat_sum, t_final = _TileComposite.apply(
        proj.means2d.reshape(b * n, 2),
        proj.conics.reshape(b * n, 3),
        gaussians.opacities.reshape(b * n),
        feat.reshape(b * n, feat.shape[-1]),
        plan,
        height,
        width,
        compat == "gsplat-0.1.0",
    )
    return _finish(feat_sum, t_final, bg)


# ----------------------------------------------------------------------------------------------------
# Dense reference
# ----------------------------------------------------------------------------------------------------


def render_dense(
    gaussians: Gaussians,
    height: int,
    width: int,
    background: Optional[Tensor] = None,
    camera: CameraLike = "paper",
    compat: Optional[str] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Every Gaussian at every pixel with plain autograd; same outputs as :func:`render_tiles`.

    O(B N H W) memory: a speed baseline and test reference, not for training-size batches.
    compat must be None: plain autograd cannot reproduce gsplat 0.1.0's backward, so
    ``compat="gsplat-0.1.0"`` raises a ValueError naming the backends that support it.
    """
    if check_compat(compat) is not None:
        raise ValueError(
            f"backend='dense' has no compat={compat!r} mode (its autograd backward would be exact, not "
            f"gsplat 0.1.0's); use backend='torch' (forward and backward) or 'gsplat' (centres only)"
        )
    proj = project(gaussians, height, width, camera)
    bg = batch_background(background, gaussians.batch_size, gaussians.means.device, gaussians.means.dtype)
    order = torch.argsort(proj.depths.detach(), dim=-1, stable=True)

    def by_depth(t: Tensor) -> Tensor:
        if t.dim() == 2:
            return t.gather(1, order)
        return t.gather(1, order.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    uv, conic = by_depth(proj.means2d), by_depth(proj.conics)
    opac, visible = by_depth(gaussians.opacities), by_depth(proj.visible)
    feat = by_depth(splat_features(gaussians, proj))
    dt = uv.dtype
    ys = torch.arange(height, device=uv.device, dtype=dt) + 0.5
    xs = torch.arange(width, device=uv.device, dtype=dt) + 0.5
    py, px = (t.reshape(1, -1, 1) for t in torch.meshgrid(ys, xs, indexing="ij"))  # [1, HW, 1]
    dx = uv[:, None, :, 0] - px  # [B, HW, N]
    dy = uv[:, None, :, 1] - py
    a, b, c = (conic[:, None, :, i] for i in range(3))
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp(opac[:, None, :] * torch.exp(-sigma), max=ALPHA_MAX)
    used = (sigma >= 0) & (alpha >= ALPHA_MIN) & visible[:, None, :]
    alpha = torch.where(used, alpha, torch.zeros_like(alpha))
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    live = trans > T_MIN
    trans_before = torch.cat((torch.ones_like(trans[..., :1]), trans[..., :-1]), -1)
    w = torch.where(live, alpha * trans_before, torch.zeros_like(alpha))
    t_final = torch.where(live, trans, torch.ones_like(trans)).amin(-1)
    feat_sum = torch.einsum("bpn,bnc->bpc", w, feat)
    bsz = uv.shape[0]
    return _finish(
        feat_sum.reshape(bsz, height, width, -1), t_final.reshape(bsz, height, width), bg
    )
