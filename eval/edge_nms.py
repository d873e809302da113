"""Edge non-maximum suppression and morphological thinning, as used before BSDS500 scoring.

``edge_nms`` is the structured-edge NMS that HED, RCF, SAM's zero-shot edge protocol and most CNN edge papers
run on their soft maps before the benchmark (Dollar & Zitnick's edgesNmsMex with r=1, s=5, m=1.01, preceded by
the usual ``convTri(E, 1)``):

1. ``E = tri_smooth(E, 1)`` (separable [1 2 1] / 4 with symmetric padding);
2. orientation from the second derivatives of a smoother copy: ``Ox, Oy = grad(tri_smooth(E, 4))``,
   ``Oxx = d/dx Ox``, ``Oxy, Oyy = grad(Oy)``, ``O = atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)) mod pi``
   (central differences, one-sided at the border, i.e. ``np.gradient``);
3. a pixel with value e survives if ``m * e >= E(p + d * n)`` for d = -r..r, d != 0, where n = (cos O, sin O) in
   (x = column, y = row) and E(.) is bilinear interpolation with coordinates clamped to [0, size - 1.001];
4. the s pixels nearest each image side are attenuated linearly: the pixel at distance k (0-based) from a side is
   multiplied by k / s (so the outermost row/column becomes 0; corners get both factors).

pyEdgeEval's port replaces ``Oxx == 0`` by 1e-5 instead of adding 1e-5; we follow the MATLAB original. We compute
in float64 (the MEX file used float32), so ties exactly at ``m * e == E(p + d n)`` may resolve differently in a
handful of pixels per image.

``thin`` is MATLAB's ``bwmorph(BW, 'thin', Inf)``: the two-subiteration parallel thinning of Guo & Hall (1989,
algorithm A1, as given by Lam, Lee & Suen 1992, p. 879), iterated until nothing changes. We build its two
256-entry deletion tables from the paper's conditions G1, G2, G3 / G3' and apply them only to foreground pixels,
which is 4-20x faster than ``skimage.morphology.thin`` on edge maps. scikit-image's ``thin`` implements the same
algorithm with the same tables, and tests/test_bsds.py checks the outputs are identical on random masks (as well as
against pyEdgeEval's copy of the MATLAB lookup tables).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["edge_nms", "edge_orientation", "thin", "tri_smooth"]


# --------------------------------------------------------------------------------------------- thinning

# Neighbours x1..x8 of Guo & Hall, counter-clockwise from east, as (row, col) offsets (row 0 is the top).
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _guo_hall_tables() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two subiterations, indexed by sum(x_k << (k - 1)) over the 8 neighbours."""
    code = np.arange(256)
    bit = [(code >> k) & 1 for k in range(8)]

    def x(i: int) -> np.ndarray:  # x_i with x_9 = x_1, x_0 = x_8
        return bit[(i - 1) % 8]

    # G1: exactly one 8-connected run of foreground around p (the crossing number X_H).
    crossing = sum((x(2 * i - 1) == 0) & ((x(2 * i) == 1) | (x(2 * i + 1) == 1)) for i in range(1, 5))
    # G2: 2 <= min(n1, n2) <= 3, n1 / n2 counting pairs of neighbours in two phases.
    n1 = sum(x(2 * k - 1) | x(2 * k) for k in range(1, 5))
    n2 = sum(x(2 * k) | x(2 * k + 1) for k in range(1, 5))
    g12 = (crossing == 1) & (np.minimum(n1, n2) >= 2) & (np.minimum(n1, n2) <= 3)
    # G3 (first subiteration): (x2 | x3 | ~x8) & x1 == 0; G3' (second): (x6 | x7 | ~x4) & x5 == 0.
    g3 = ((x(2) | x(3) | (1 - x(8))) & x(1)) == 0
    g3p = ((x(6) | x(7) | (1 - x(4))) & x(5)) == 0
    return g12 & g3, g12 & g3p


_DELETE_1, _DELETE_2 = _guo_hall_tables()


def thin(mask: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Thin a binary image to 8-connected one-pixel lines, like ``bwmorph(mask, 'thin', Inf)``.

    Args:
        mask: (H, W) array, nonzero = foreground.
        max_iter: stop after this many full iterations (None: until nothing changes).
    Returns:
        (H, W) bool array, a subset of ``mask != 0``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"thin expects a 2-D mask, got shape {mask.shape}")
    h, w = mask.shape
    # One pixel of zero padding so neighbour lookups never leave the array.
    pad = np.zeros((h + 2, w + 2), np.uint8)
    fg = pad[1:-1, 1:-1]
    fg[...] = mask != 0
    # Only pixels with a background 4-neighbour can be deleted (condition G1 needs one), so start from those.
    edge = fg & ((pad[:-2, 1:-1] == 0) | (pad[2:, 1:-1] == 0) | (pad[1:-1, :-2] == 0) | (pad[1:-1, 2:] == 0))
    flat = pad.ravel()
    offsets = np.array([dy * (w + 2) + dx for dy, dx in _NEIGHBOURS], np.int64)
    # A pixel needs re-testing against a subiteration's table only if its neighbourhood changed since it was last
    # tested against that table; this gives exactly the same result as testing every pixel every time.
    todo2d = np.zeros((2, h + 2, w + 2), bool)
    todo2d[:, 1:-1, 1:-1] = edge
    todo = todo2d.reshape(2, -1)
    it = 0
    busy = True
    while busy and (max_iter is None or it < max_iter):
        busy = False
        for sub, table in enumerate((_DELETE_1, _DELETE_2)):
            cand = np.flatnonzero(todo[sub])
            if not cand.size:
                continue
            busy = True
            todo[sub, cand] = False
            cand = cand[flat[cand] != 0]
            # All decisions of a subiteration read the image as it was at its start (parallel thinning).
            code = flat[cand + offsets[0]].copy()
            for k in range(1, 8):
                code |= flat[cand + offsets[k]] << k
            gone = cand[table[code]]
            if gone.size:
                flat[gone] = 0
                nb = (gone[:, None] + offsets[None, :]).ravel()
                todo[:, nb] = True
        it += 1
    return fg.astype(bool)


# --------------------------------------------------------------------------------------------- NMS


def tri_smooth(image: np.ndarray, r: int) -> np.ndarray:
    """Separable triangle filter of radius r with symmetric padding (Dollar's ``convTri``, integer r >= 1).

    r = 1 uses the kernel [1 2 1] / 4; r > 1 uses [1 .. r+1 .. 1] / (r + 1)^2.
    """
    if r < 1:
        return np.asarray(image, np.float64)
    if r == 1:
        kernel = np.array([1.0, 2.0, 1.0]) / 4.0
    else:
        kernel = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float64) / (r + 1) ** 2
    # 'symmetric' (edge sample repeated) is MATLAB's padarray 'symmetric'; scipy calls it 'reflect'.
    out = ndi.correlate1d(np.asarray(image, np.float64), kernel, axis=0, mode="reflect")
    return ndi.correlate1d(out, kernel, axis=1, mode="reflect")


def edge_orientation(edges: np.ndarray) -> np.ndarray:
    """Edge normal angle in [0, pi) from second derivatives of ``tri_smooth(edges, 4)``; (H, W) -> (H, W)."""
    oy, ox = np.gradient(tri_smooth(edges, 4))
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    return np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = image.shape
    x = np.clip(x, 0.0, w - 1.001)
    y = np.clip(y, 0.0, h - 1.001)
    x0 = x.astype(np.intp)
    y0 = y.astype(np.intp)
    dx = x - x0
    dy = y - y0
    return (image[y0, x0] * (1 - dx) * (1 - dy) + image[y0, x0 + 1] * dx * (1 - dy)
            + image[y0 + 1, x0] * (1 - dx) * dy + image[y0 + 1, x0 + 1] * dx * dy)


def edge_nms(edges: np.ndarray, r: int = 1, s: int = 5, m: float = 1.01, presmooth: int = 1,
             orientation: np.ndarray | None = None) -> np.ndarray:
    """Structured-edge non-maximum suppression of a soft edge map.

    Args:
        edges: (H, W) float edge strengths, typically in [0, 1].
        r: suppression radius along the normal (pixels).
        s: width of the linearly attenuated border (pixels).
        m: multiplier; a pixel is kept unless a neighbour along the normal exceeds m times its value.
        presmooth: radius of the ``tri_smooth`` applied first (HED / pyEdgeEval pipelines use 1; 0 = none).
        orientation: optional (H, W) normal angles; default ``edge_orientation`` of the smoothed map.
    Returns:
        (H, W) float64 map: the smoothed strengths at surviving pixels, 0 elsewhere.
    """
    e = np.asarray(edges, np.float64)
    if e.ndim != 2:
        raise ValueError(f"edge_nms expects a 2-D map, got shape {e.shape}")
    if presmooth:
        e = tri_smooth(e, presmooth)
    o = edge_orientation(e) if orientation is None else np.asarray(orientation, np.float64)
    h, w = e.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cos_o, sin_o = np.cos(o), np.sin(o)
    keep = e != 0
    scaled = e * m
    for d in range(-r, r + 1):
        if d:
            keep &= ~(scaled < _bilinear(e, xx + d * cos_o, yy + d * sin_o))
    out = np.where(keep, e, 0.0)
    s = min(int(s), w // 2, h // 2)
    if s > 0:
        ramp = np.arange(s, dtype=np.float64) / s
        out[:, :s] *= ramp
        out[:, w - s:] *= ramp[::-1]
        out[:s, :] *= ramp[:, None]
        out[h - s:, :] *= ramp[::-1, None]
    return out
