"""Write the embedded tiny multi-task data set in the real on-disk formats.

No ImageNet, COCO, BSDS500 or saliency data is available offline, so tests and smoke runs use a small set
rendered here with numpy + PIL and written in exactly the layouts the real data sets use. The loaders in
``gmae.data`` read it through the same code paths as the real data:

  DIR/imagenet/{train,val}/<class>/*.JPEG        ImageFolder tree, 8 shape classes (the class is the shape of
                                                 the dominant object: largest and in front)
  DIR/coco/{train2017,val2017}/*.jpg             COCO images
  DIR/coco/annotations/instances_{split}.json    COCO instances: bbox [x,y,w,h], area, RLE mask of the
                                                 visible part of every visible object
  DIR/bsds500/images/<id>.jpg                    BSDS500-style images (landscape and portrait)
  DIR/bsds500/groundTruth/<id>.mat               1xK cell of structs {Segmentation uint16, Boundaries uint8}
  DIR/saliency/{images/<id>.jpg,masks/<id>.png}  one salient object per image, binary 0/255 masks
  DIR/photos/<name>.png                          crops of the real photographs bundled with scikit-image,
                                                 scikit-learn and matplotlib (for reconstruction metrics)
  DIR/README.txt, DIR/manifest.json              manifest (counts, seed, size, sha256 of every file) is
                                                 written last, atomically: no manifest = partial set

Same seed and size give byte-identical files. Every image has its own random stream
(``numpy.random.default_rng([seed, task, ...index])``), so changing a count does not change other images.
"""

from __future__ import annotations

import argparse
import colorsys
import importlib.util
import io
import json
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gmae.data.bsds import ground_truth_mat_bytes
from gmae.io import atomic_write_json

SIZE_RANGE = (32, 224)
FORMAT = "gmae-tiny"
FORMAT_VERSION = 1
README_HEADER = "GMAE tiny multi-task data set"

# Class order here is the rendering order; ImageFolder sorts class folders by name.
SHAPES = ("disk", "square", "triangle", "ring", "cross", "star", "ellipse", "diamond")
SUPERCATEGORY = {"disk": "round", "ellipse": "round", "ring": "round",
                 "square": "polygon", "triangle": "polygon", "diamond": "polygon",
                 "cross": "symbol", "star": "symbol"}
# Non-contiguous like COCO's 1..90, so loaders have to map category ids to contiguous labels.
COCO_CATEGORY_IDS = (1, 2, 3, 5, 7, 8, 11, 13)
COCO_SPLITS = ("train2017", "val2017")
# Top-level entries this generator owns inside DIR (and may delete when regenerating).
OWNED = ("imagenet", "coco", "bsds500", "saliency", "photos", "README.txt", "manifest.json")

_TASK_IMAGENET, _TASK_COCO, _TASK_BSDS, _TASK_SALIENCY, _TASK_PHOTOS = range(5)
_SS = 2  # supersampling factor for colour (anti-aliased edges); labels are taken at pixel centres
_JPEG_QUALITY = 90


# ----------------------------------------------------------------------------------------------------------
# Shapes: each is an inside-test in a local unit frame, scaled so that every shape has the same area at the
# same radius (otherwise "the largest object" would depend on the shape, not only on the radius).
# ----------------------------------------------------------------------------------------------------------

def _star(points: int, inner: float) -> np.ndarray:
    ang = np.pi / 2 + np.arange(2 * points) * np.pi / points
    rad = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([rad * np.cos(ang), -rad * np.sin(ang)], 1)


_POLYGONS = {
    "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]),
    "triangle": _star(3, 0.5)[::2],  # equilateral, apex up (v axis points down in image coordinates)
    "diamond": np.array([[1.0, 0.0], [0.0, 0.62], [-1.0, 0.0], [0.0, -0.62]]),
    "cross": np.array([[0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3], [-0.3, -1],
                       [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3]], dtype=float),
    "star": _star(5, 0.45),
}
_ELLIPSE_AXIS = 0.55
_RING_INNER = 0.55


def _polygon_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


_AREA = {"disk": math.pi, "ellipse": math.pi * _ELLIPSE_AXIS, "ring": math.pi * (1 - _RING_INNER ** 2),
         **{k: _polygon_area(v) for k, v in _POLYGONS.items()}}
_TARGET_AREA = 2.2
_SCALE = {k: math.sqrt(_TARGET_AREA / a) for k, a in _AREA.items()}
_EXTENT = {k: _SCALE[k] * (1.0 if k not in _POLYGONS else float(np.hypot(*_POLYGONS[k].T).max()))
           for k in SHAPES}


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of ``shape`` for local coordinates ``u, v`` (any broadcastable shapes)."""
    if shape == "disk":
        return u * u + v * v <= 1.0
    if shape == "ellipse":
        return u * u + (v / _ELLIPSE_AXIS) ** 2 <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= _RING_INNER ** 2)
    poly = _POLYGONS[shape]
    inside = np.zeros(np.broadcast(u, v).shape, dtype=bool)
    # Even-odd crossing test, vectorised over pixels, looping over the (<= 12) edges.
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0)):
        if y0 == y1:
            continue
        straddles = (y0 > v) != (y1 > v)
        x_cross = x0 + (v - y0) * (x1 - x0) / (y1 - y0)
        inside ^= straddles & (u < x_cross)
    return inside


# ----------------------------------------------------------------------------------------------------------
# Textures: a two-colour mix driven by a sinusoidal grating plus bilinear value noise, and a linear shading.
# ----------------------------------------------------------------------------------------------------------

def _smooth(grid: np.ndarray, ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Bilinear value noise: ``grid`` (g, g) stretched over the unit square, sampled at ``ty`` (Hs,) x ``tx``
    (Ws,) in [0, 1] -> (Hs, Ws). Separable, so it is two small matrix products."""
    g = grid.shape[0]
    wy = np.maximum(0.0, 1.0 - np.abs(ty[:, None] * (g - 1) - np.arange(g)))  # (Hs, g) hat weights
    wx = np.maximum(0.0, 1.0 - np.abs(tx[:, None] * (g - 1) - np.arange(g)))  # (Ws, g)
    return wy @ grid @ wx.T


@dataclass
class _Texture:
    c1: np.ndarray  # (3,) colours in [0, 1]
    c2: np.ndarray
    k: np.ndarray  # (2,) grating angular frequency (rad / px) along x, y
    phase: float
    amp: float
    grid: np.ndarray  # (g, g) value noise in [-1, 1] spanning the image
    namp: float
    shade: np.ndarray  # (2,) brightness slope per px along x, y

    def __call__(self, ys: np.ndarray, xs: np.ndarray, h: int, w: int, cy: float, cx: float) -> np.ndarray:
        """Colour at the pixel-centre coordinates ``ys`` (Hs,) x ``xs`` (Ws,) -> (Hs, Ws, 3) floats."""
        noise = _smooth(self.grid, ys / h, xs / w)
        s = self.amp * np.sin(self.k[0] * xs[None, :] + self.k[1] * ys[:, None] + self.phase) + self.namp * noise
        t = np.clip(0.5 + 0.5 * s, 0.0, 1.0)[..., None]
        shade = 1.0 + self.shade[0] * (xs[None, :] - cx) + self.shade[1] * (ys[:, None] - cy)
        return (self.c1 * (1.0 - t) + self.c2 * t) * shade[..., None]


def _texture(rng: np.random.Generator, size: int, kind: str) -> _Texture:
    """Background textures are busy (clutter); object textures are mostly one colour with mild detail."""
    busy = kind == "background"
    c1 = rng.uniform(0.05, 0.95, 3)
    c2 = rng.uniform(0.05, 0.95, 3) if busy else np.clip(c1 + rng.normal(0.0, 0.15, 3), 0.0, 1.0)
    cycles = rng.uniform(2.0, 9.0) if busy else rng.uniform(3.0, 12.0)
    theta = rng.uniform(0.0, 2 * np.pi)
    k = 2 * np.pi * cycles / size * np.array([np.cos(theta), np.sin(theta)])
    phase = rng.uniform(0.0, 2 * np.pi)
    amp = rng.uniform(0.3, 0.9) if busy else rng.uniform(0.05, 0.35)
    g = int(rng.integers(3, 9))
    grid = rng.uniform(-1.0, 1.0, (g, g))
    namp = rng.uniform(0.3, 0.9) if busy else rng.uniform(0.05, 0.3)
    slope = rng.uniform(0.0, 0.25 if busy else 0.5) / size
    phi = rng.uniform(0.0, 2 * np.pi)
    return _Texture(c1, c2, k, phase, amp, grid, namp, slope * np.array([np.cos(phi), np.sin(phi)]))


@dataclass
class _Object:
    shape: str
    cx: float
    cy: float
    r: float  # radius in px before the per-shape area normalisation
    angle: float
    tex: _Texture

    def mask(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Boolean (len(ys), len(xs)) coverage at the given pixel-centre coordinates."""
        s = self.r * _SCALE[self.shape]
        ext = self.r * _EXTENT[self.shape] + 1.0
        # Evaluate only inside the bounding window: objects are small relative to the image.
        y0, y1 = np.searchsorted(ys, self.cy - ext), np.searchsorted(ys, self.cy + ext)
        x0, x1 = np.searchsorted(xs, self.cx - ext), np.searchsorted(xs, self.cx + ext)
        out = np.zeros((len(ys), len(xs)), dtype=bool)
        if y1 <= y0 or x1 <= x0:
            return out
        dy = (ys[y0:y1] - self.cy)[:, None]
        dx = (xs[x0:x1] - self.cx)[None, :]
        c, si = math.cos(self.angle), math.sin(self.angle)
        out[y0:y1, x0:x1] = _inside(self.shape, (c * dx + si * dy) / s, (-si * dx + c * dy) / s)
        return out


def _random_object(rng, shape: str, r: float, cx: float, cy: float, size: int) -> _Object:
    return _Object(shape, cx, cy, r, rng.uniform(0.0, 2 * np.pi), _texture(rng, size, "object"))


def _centres(n: int) -> np.ndarray:
    """Pixel-centre coordinates 0.5, 1.5, ..., n - 0.5."""
    return np.arange(n) + 0.5


def _render(h: int, w: int, background, objects: list[_Object]) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``objects`` back to front over ``background``.

    ``background(ys, xs) -> (Hs, Ws, 3)``. Returns the uint8 image (h, w, 3), colour supersampled _SS x _SS,
    and the int32 label map (h, w) at pixel centres: 0 = background, i + 1 = objects[i] (visible part).
    """
    ys = (np.arange(h * _SS) + 0.5) / _SS
    xs = (np.arange(w * _SS) + 0.5) / _SS
    img = background(ys, xs)
    for ob in objects:
        m = ob.mask(ys, xs)
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(rows) == 0:
            continue
        sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        col = ob.tex(ys[sl[0]], xs[sl[1]], h, w, ob.cy, ob.cx)
        img[sl] = np.where(m[sl][..., None], col, img[sl])
    img = img.reshape(h, _SS, w, _SS, 3).mean(axis=(1, 3))
    img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    labels = _label_map(h, w, objects)
    return img, labels


def _label_map(h: int, w: int, objects: list[_Object]) -> np.ndarray:
    ys, xs = _centres(h), _centres(w)
    labels = np.zeros((h, w), dtype=np.int32)
    for i, ob in enumerate(objects):
        labels[ob.mask(ys, xs)] = i + 1
    return labels


def _drop_hidden(h: int, w: int, objects: list[_Object], min_frac: float, min_px: int) -> list[_Object]:
    """Remove objects whose visible part is tiny; removing one only uncovers others, so one pass suffices."""
    ys, xs = _centres(h), _centres(w)
    full = np.array([ob.mask(ys, xs).sum() for ob in objects])
    visible = np.bincount(_label_map(h, w, objects).ravel(), minlength=len(objects) + 1)[1:]
    keep = (visible >= min_px) & (visible >= min_frac * np.maximum(full, 1))
    return [ob for ob, k in zip(objects, keep) if k]


def _plain_background(rng, size: int, h: int, w: int):
    tex = _texture(rng, size, "background")
    return lambda ys, xs: tex(ys, xs, h, w, h / 2, w / 2)


def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(arr).save(buf, "JPEG", quality=_JPEG_QUALITY)
    else:
        Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _aspect_hw(rng, size: int) -> tuple[int, int]:
    """Landscape, portrait or square like real photo collections (longer side 4:3 of ``size``)."""
    long = int(round(size * 4 / 3))
    return [(size, long), (long, size), (size, size)][int(rng.integers(3))]


# ----------------------------------------------------------------------------------------------------------
# The five tasks
# ----------------------------------------------------------------------------------------------------------

def _imagenet_image(seed: int, size: int, split: int, cls: int, i: int) -> bytes:
    rng = np.random.default_rng([seed, _TASK_IMAGENET, split, cls, i])
    bg = _plain_background(rng, size, size, size)
    objects = []
    for _ in range(int(rng.integers(2, 5))):  # distractors: any shape, small, behind the dominant object
        objects.append(_random_object(rng, SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(0.09, 0.16) * size,
                                      rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size, size))
    objects.append(_random_object(rng, SHAPES[cls], rng.uniform(0.26, 0.34) * size,
                                  rng.uniform(0.4, 0.6) * size, rng.uniform(0.4, 0.6) * size, size))
    img, _ = _render(size, size, bg, objects)
    return _encode(img, "JPEG")


class _Flat:
    """A constant-colour texture (same call signature as _Texture)."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, ys: np.ndarray, xs: np.ndarray, h: int = 0, w: int = 0, cy: float = 0, cx: float = 0):
        return np.full((len(ys), len(xs), 3), self.value)


def _imagenet_plain_image(seed: int, size: int, split: int, cls: int, i: int) -> bytes:
    """The "plain" style: one dark grey shape, large and near the centre, on a light grey background; no
    distractors, colour or texture. Self-supervised pretraining at CPU scale can learn this class signal;
    the default cluttered style needs far more compute than a tiny run has."""
    rng = np.random.default_rng([seed, _TASK_IMAGENET, split, cls, i, 1])
    background, foreground = rng.uniform(0.6, 0.9), rng.uniform(0.1, 0.4)
    obj = _Object(SHAPES[cls], rng.uniform(0.42, 0.58) * size, rng.uniform(0.42, 0.58) * size,
                  rng.uniform(0.30, 0.38) * size, rng.uniform(0.0, 2 * np.pi), _Flat(foreground))
    img, _ = _render(size, size, lambda ys, xs: _Flat(background)(ys, xs), [obj])
    return _encode(img, "JPEG")


IMAGENET_STYLES = {"cluttered": _imagenet_image, "plain": _imagenet_plain_image}


def _coco_image(seed: int, size: int, split: int, i: int, min_px: int):
    rng = np.random.default_rng([seed, _TASK_COCO, split, i])
    h, w = _aspect_hw(rng, size)
    bg = _plain_background(rng, size, h, w)
    m = min(h, w)
    objects = [_random_object(rng, SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(0.08, 0.24) * m,
                              rng.uniform(0.08, 0.92) * w, rng.uniform(0.08, 0.92) * h, size)
               for _ in range(int(rng.integers(3, 7)))]
    objects = _drop_hidden(h, w, objects, 0.3, min_px)
    img, labels = _render(h, w, bg, objects)
    return _encode(img, "JPEG"), labels, [ob.shape for ob in objects]


def _bsds_image(seed: int, size: int, i: int, min_px: int):
    rng = np.random.default_rng([seed, _TASK_BSDS, i])
    long = int(round(size * 1.5))
    h, w = (size, long) if i % 2 == 0 else (long, size)  # alternate landscape / portrait like BSDS
    n_regions = int(rng.integers(3, 6))
    seeds = rng.uniform(0, 1, (n_regions, 2)) * [h, w]
    texs = [_texture(rng, size, "background") for _ in range(n_regions)]
    warp = [rng.uniform(-1.0, 1.0, (5, 5)) for _ in range(2)]

    def regions(ys, xs):
        # Voronoi cells of warped coordinates: curvy region borders, like natural segment boundaries.
        wy = _smooth(warp[0], ys / h, xs / w) * 0.12 * size
        wx = _smooth(warp[1], ys / h, xs / w) * 0.12 * size
        d = ((ys[:, None, None] + wy[..., None] - seeds[:, 0]) ** 2
             + (xs[None, :, None] + wx[..., None] - seeds[:, 1]) ** 2)  # (Hs, Ws, regions)
        return np.argmin(d, axis=-1)

    def background(ys, xs):
        reg = regions(ys, xs)
        out = np.zeros((len(ys), len(xs), 3))
        for j, t in enumerate(texs):
            out = np.where((reg == j)[..., None], t(ys, xs, h, w, seeds[j, 0], seeds[j, 1]), out)
        return out

    m = min(h, w)
    objects = [_random_object(rng, SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(0.1, 0.22) * m,
                              rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h, size)
               for _ in range(int(rng.integers(2, 5)))]
    objects = _drop_hidden(h, w, objects, 0.3, min_px)
    img, labels = _render(h, w, background, objects)
    base = np.where(labels > 0, n_regions - 1 + labels, regions(_centres(h), _centres(w)))
    annotators = [_consecutive(base)]
    for _ in range(int(rng.integers(2, 5))):  # K = 3..5 annotators
        annotators.append(_annotator(rng, base, size))
    return _encode(img, "JPEG"), annotators


def _consecutive(seg: np.ndarray) -> np.ndarray:
    """Relabel to 1..n (BSDS Segmentation convention), uint16."""
    _, inv = np.unique(seg, return_inverse=True)
    return (inv.reshape(seg.shape) + 1).astype(np.uint16)


def _annotator(rng, seg: np.ndarray, size: int) -> np.ndarray:
    """A second opinion: merge a few adjacent segments and move the borders by a smooth 0..2 px field."""
    seg = seg.copy()
    for _ in range(int(rng.integers(0, 3))):
        pairs = np.concatenate([np.stack([seg[:, :-1].ravel(), seg[:, 1:].ravel()], 1),
                                np.stack([seg[:-1].ravel(), seg[1:].ravel()], 1)])
        pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
        if len(pairs) == 0:
            break
        a, b = pairs[int(rng.integers(len(pairs)))]
        seg[seg == b] = a
    h, w = seg.shape
    amp = 2.0 * max(1.0, size / 128)
    ys, xs = _centres(h) / h, _centres(w) / w
    dy = np.rint(_smooth(rng.uniform(-1.0, 1.0, (4, 4)), ys, xs) * amp).astype(int)
    dx = np.rint(_smooth(rng.uniform(-1.0, 1.0, (4, 4)), ys, xs) * amp).astype(int)
    yy = np.clip(np.arange(h)[:, None] + dy, 0, h - 1)
    xx = np.clip(np.arange(w)[None, :] + dx, 0, w - 1)
    return _consecutive(seg[yy, xx])


def _saliency_image(seed: int, size: int, i: int):
    rng = np.random.default_rng([seed, _TASK_SALIENCY, i])
    h, w = _aspect_hw(rng, size)
    m = min(h, w)
    bg = _plain_background(rng, size, h, w)
    clutter = [_random_object(rng, SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(0.05, 0.12) * m,
                              rng.uniform(0.0, 1.0) * w, rng.uniform(0.0, 1.0) * h, size)
               for _ in range(int(rng.integers(6, 12)))]
    # The salient object: one or two overlapping parts sharing a saturated texture, near the centre.
    tex = _texture(rng, size, "object")
    tex.c1 = np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)))
    tex.c2 = np.clip(tex.c1 + rng.normal(0, 0.1, 3), 0, 1)
    cy, cx, r = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w, rng.uniform(0.2, 0.3) * m
    parts = [_Object(SHAPES[int(rng.integers(len(SHAPES)))], cx, cy, r, rng.uniform(0, 2 * np.pi), tex)]
    if rng.random() < 0.5:
        off = rng.uniform(-0.8, 0.8, 2) * r
        parts.append(_Object(SHAPES[int(rng.integers(len(SHAPES)))], cx + off[0], cy + off[1],
                             rng.uniform(0.5, 0.7) * r, rng.uniform(0, 2 * np.pi), tex))
    front = []
    if rng.random() < 0.4:  # a small occluder in front: the mask is the visible part only
        front.append(_random_object(rng, SHAPES[int(rng.integers(len(SHAPES)))], rng.uniform(0.05, 0.09) * m,
                                    cx + rng.uniform(-0.7, 0.7) * r, cy + rng.uniform(-0.7, 0.7) * r, size))
    objects = clutter + parts + front
    img, labels = _render(h, w, bg, objects)
    salient = (labels > len(clutter)) & (labels <= len(clutter) + len(parts))
    return _encode(img, "JPEG"), _encode((salient * 255).astype(np.uint8), "PNG")


def _photo_sources() -> list[tuple[str, object]]:
    """(name, loader) for the real photographs that ship inside installed packages (no download)."""

    def package_file(package, *parts, fallback):
        def load():
            # Read the bundled file directly: locating it does not import the (slow to import) package.
            spec = importlib.util.find_spec(package)
            path = Path(spec.origin).parent.joinpath(*parts) if spec and spec.origin else None
            if path is not None and path.is_file():
                with Image.open(path) as im:
                    return np.asarray(im.convert("RGB"))
            return fallback()
        return load

    def skimage_image(name):
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img

    def sklearn_image(name):
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    def grace_hopper():
        import matplotlib.cbook as cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            return np.asarray(im.convert("RGB"))

    skimage_files = {"astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png",
                     "rocket": "rocket.jpg", "hubble_deep_field": "hubble_deep_field.jpg",
                     "immunohistochemistry": "ihc.png", "stereo_motorcycle": "motorcycle_left.png"}
    sources = [(n.replace("stereo_", ""), package_file("skimage", "data", f, fallback=lambda n=n: skimage_image(n)))
               for n, f in skimage_files.items()]
    sources += [(n, package_file("sklearn", "datasets", "images", f"{n}.jpg",
                                 fallback=lambda n=n: sklearn_image(f"{n}.jpg"))) for n in ("china", "flower")]
    sources.append(("grace_hopper", package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg",
                                                 fallback=grace_hopper)))
    return sources


def _load_photos() -> dict[str, np.ndarray]:
    photos = {}
    for name, load in _photo_sources():
        try:
            img = np.asarray(load())
        except Exception as e:  # noqa: BLE001 - a missing optional sample must not stop the whole set
            warnings.warn(f"photo source {name!r} unavailable ({type(e).__name__}: {e}); skipped", stacklevel=3)
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos[name] = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    if not photos:
        raise RuntimeError("no bundled photograph could be loaded (scikit-image, scikit-learn, matplotlib)")
    return photos


def _photo_crop(seed: int, size: int, i: int, img: np.ndarray) -> bytes:
    """A random square crop covering 35-100 % of the shorter side, resized (bicubic) to size x size."""
    rng = np.random.default_rng([seed, _TASK_PHOTOS, i])
    hs, ws = img.shape[:2]
    short = min(hs, ws)
    lo = min(short, max(size, int(0.35 * short)))
    side = int(rng.integers(lo, short + 1))
    y0, x0 = int(rng.integers(0, hs - side + 1)), int(rng.integers(0, ws - side + 1))
    crop = Image.fromarray(img[y0:y0 + side, x0:x0 + side])
    if side != size:
        crop = crop.resize((size, size), Image.Resampling.BICUBIC)
    return _encode(np.asarray(crop), "PNG")


# ----------------------------------------------------------------------------------------------------------
# Writing, manifest, skip-if-complete
# ----------------------------------------------------------------------------------------------------------

class _Writer:
    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, dict] = {}

    def put(self, rel: str, data: bytes) -> None:
        import hashlib

        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _params(seed, size, counts, imagenet_style: str = "cluttered") -> dict:
    style = {} if imagenet_style == "cluttered" else {"imagenet_style": imagenet_style}  # old manifests stay valid
    return {"format": FORMAT, "version": FORMAT_VERSION, "seed": int(seed), "size": int(size), **counts, **style}


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete tiny set at ``root`` (every listed file present with its size), else None."""
    path = Path(root) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for rel, info in files.items():
        p = Path(root) / rel
        if not p.is_file() or p.stat().st_size != info["bytes"]:
            return None
    return manifest


def _paths(root: Path) -> dict[str, Path]:
    return {"root": root, "imagenet": root / "imagenet", "coco": root / "coco", "bsds500": root / "bsds500",
            "saliency": root / "saliency", "photos": root / "photos", "readme": root / "README.txt",
            "manifest": root / "manifest.json"}


def _is_ours(root: Path) -> bool:
    try:
        if json.loads((root / "manifest.json").read_text()).get("params", {}).get("format") == FORMAT:
            return True
    except (OSError, ValueError, AttributeError):
        pass
    try:
        return (root / "README.txt").read_text().startswith(README_HEADER)
    except OSError:
        return False


def generate_tiny(out: str | Path, seed: int = 0, size: int = 64, *, train_per_class: int = 32,
                  val_per_class: int = 8, coco_train: int = 32, coco_val: int = 24, bsds: int = 8,
                  saliency: int = 16, photos: int = 24, imagenet_style: str = "cluttered",
                  overwrite: bool = False) -> dict[str, Path]:
    """Write the tiny multi-task set under ``out`` and return the paths of its parts.

    Args:
        out: target directory (created). Existing entries named like the set's parts are replaced only when
            they come from an earlier run (README/manifest present) or ``overwrite=True``.
        seed: base seed; same seed and size give byte-identical files.
        size: image side in px, 32..224 (ImageNet/saliency/photos are size x size or 4:3 around it;
            BSDS images are 1.5*size x size, landscape and portrait).
        train_per_class / val_per_class: ImageNet-style images per class (8 classes).
        coco_train / coco_val, bsds, saliency, photos: image counts of the other tasks.
        imagenet_style: "cluttered" (default: the dominant shape among distractors on textured backgrounds) or
            "plain" (one grey shape on a grey background: learnable by tiny self-supervised pretraining).
        overwrite: regenerate even when a complete set with the same parameters exists.

    Returns:
        ``{"root", "imagenet", "coco", "bsds500", "saliency", "photos", "readme", "manifest"}`` -> Path.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise ValueError(f"size must be an integer in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    counts = {"train_per_class": train_per_class, "val_per_class": val_per_class, "coco_train": coco_train,
              "coco_val": coco_val, "bsds": bsds, "saliency": saliency, "photos": photos}
    for k, v in counts.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
    counts = {k: int(v) for k, v in counts.items()}
    if imagenet_style not in IMAGENET_STYLES:
        raise ValueError(f"imagenet_style must be one of {sorted(IMAGENET_STYLES)}, got {imagenet_style!r}")
    root = Path(out)
    params = _params(seed, size, counts, imagenet_style)
    paths = _paths(root)
    manifest = read_manifest(root)
    if manifest is not None and manifest.get("params") == params and not overwrite:
        return paths

    present = [name for name in OWNED if (root / name).exists()]
    if present and not (overwrite or _is_ours(root)):
        raise FileExistsError(f"{root} already holds {present} not written by 'gmae data tiny'; "
                              "pass overwrite=True (--overwrite) to replace them")
    if (root / "manifest.json").exists():
        (root / "manifest.json").unlink()  # first, so an interrupted rewrite never looks complete
    for name in present:
        p = root / name
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)

    photo_src = _load_photos()  # fails early (before rendering) if no photograph is available
    wr = _Writer(root)
    totals: dict[str, int] = {}
    # The README is written first: an interrupted run leaves it (marking the dir as ours) but no manifest.
    readme = _readme(params, sorted(photo_src))
    (root / "README.txt").write_text(readme)

    # ImageNet-style tree. Val files are named like ILSVRC2012 val images sorted into class folders.
    for split, n in ((0, train_per_class), (1, val_per_class)):
        sname = ("train", "val")[split]
        for cls, shape in enumerate(SHAPES):
            for i in range(n):
                name = f"{shape}_{i:05d}.JPEG" if split == 0 else f"ILSVRC2012_val_{cls * n + i + 1:08d}.JPEG"
                wr.put(f"imagenet/{sname}/{shape}/{name}", IMAGENET_STYLES[imagenet_style](seed, size, split, cls, i))
        totals[f"imagenet_{sname}"] = n * len(SHAPES)

    # COCO instances.
    from pycocotools import mask as mask_utils

    min_px = max(6, int(round(6 * (size / 64) ** 2)))
    categories = [{"id": cid, "name": s, "supercategory": SUPERCATEGORY[s]}
                  for cid, s in zip(COCO_CATEGORY_IDS, SHAPES)]
    cat_of = dict(zip(SHAPES, COCO_CATEGORY_IDS))
    for split, n in ((0, coco_train), (1, coco_val)):
        sname = COCO_SPLITS[split]
        images, anns = [], []
        for i in range(n):
            jpg, labels, shapes = _coco_image(seed, size, split, i, min_px)
            image_id = (1 + split) * 100000 + 37 * i + 9  # unique, not contiguous: loaders must not assume
            fname = f"{image_id:012d}.jpg"
            wr.put(f"coco/{sname}/{fname}", jpg)
            h, w = labels.shape
            images.append({"id": image_id, "file_name": fname, "height": h, "width": w, "license": 1,
                           "date_captured": "2017-01-01 00:00:00"})
            for k, shape in enumerate(shapes):
                rle = mask_utils.encode(np.asfortranarray((labels == k + 1).astype(np.uint8)))
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_of[shape],
                             "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                             "area": float(mask_utils.area(rle)),
                             "bbox": [float(x) for x in mask_utils.toBbox(rle)], "iscrowd": 0})
        doc = {"info": {"description": "gmae tiny COCO-format instances (synthetic shapes)", "version": "1.0",
                        "year": 2017, "contributor": "gmae data tiny", "date_created": "2017/01/01"},
               "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
               "images": images, "annotations": anns, "categories": categories}
        wr.put(f"coco/annotations/instances_{sname}.json", json.dumps(doc).encode())
        totals[f"coco_{sname}_images"] = n
        totals[f"coco_{sname}_annotations"] = len(anns)

    # BSDS500-style images + ground truth.
    for i in range(bsds):
        bid = f"{100000 + 1009 * i + 7}"
        jpg, annotators = _bsds_image(seed, size, i, min_px)
        wr.put(f"bsds500/images/{bid}.jpg", jpg)
        wr.put(f"bsds500/groundTruth/{bid}.mat", ground_truth_mat_bytes(annotators, written_by="gmae data tiny"))
    totals["bsds500"] = bsds

    # Saliency (DUTS-like: images/*.jpg + masks/*.png).
    for i in range(saliency):
        jpg, png = _saliency_image(seed, size, i)
        wr.put(f"saliency/images/sal_{i:04d}.jpg", jpg)
        wr.put(f"saliency/masks/sal_{i:04d}.png", png)
    totals["saliency"] = saliency

    # Real photographs, round-robin over the available sources.
    names = sorted(photo_src)
    for i in range(photos):
        name = names[i % len(names)]
        wr.put(f"photos/{name}_{i:03d}.png", _photo_crop(seed, size, i, photo_src[name]))
    totals["photos"] = photos

    wr.put("README.txt", readme.encode())
    atomic_write_json(root / "manifest.json", {"params": params, "seed": int(seed), "size": int(size),
                                               "counts": totals, "photo_sources": names,
                                               "classes": sorted(SHAPES), "files": wr.files})
    return paths


def _readme(params: dict, photo_sources: list[str]) -> str:
    return f"""{README_HEADER} (format {FORMAT} v{FORMAT_VERSION}), written by `gmae data tiny`.

seed={params['seed']} size={params['size']}  counts: {json.dumps({k: v for k, v in params.items()
                                                                 if k not in ('format', 'version', 'seed', 'size')})}

Synthetic scenes of textured shapes rendered with numpy and PIL, written in the on-disk formats of the
real data sets so the real loaders read them. Shapes: {', '.join(SHAPES)}.

imagenet/{{train,val}}/<class>/*.JPEG  ImageFolder tree, one class per shape. The label is the shape of the
    dominant object (the largest, drawn in front of 2-4 small distractors of any shape) on a busy texture.
coco/{{train2017,val2017}}/*.jpg, coco/annotations/instances_<split>.json  COCO instances: every visible
    object has bbox [x,y,w,h], area and an RLE mask of its visible part (after occlusion), iscrowd=0.
    Category ids are {list(COCO_CATEGORY_IDS)} (not contiguous, like COCO).
bsds500/images/<id>.jpg, bsds500/groundTruth/<id>.mat  BSDS500 layout: groundTruth is a 1xK cell (K=3..5) of
    structs with Segmentation (uint16, 1..n) and Boundaries (uint8 0/1). Annotator 1 is exact; the others
    merge a few adjacent segments and move borders by up to 2 px. Images alternate landscape / portrait.
saliency/images/<id>.jpg, saliency/masks/<id>.png  one salient object (1-2 parts, sometimes partly occluded)
    on a cluttered background; masks are single-channel 0/255 PNGs of its visible part.
photos/<source>_<i>.png  random crops (resized bicubic) of real photographs bundled with scikit-image,
    scikit-learn and matplotlib. Sources: {', '.join(photo_sources)}.

manifest.json (params, counts, sha256 and size of every file) is written last; without it the set is partial.
"""


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def _size_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not SIZE_RANGE[0] <= v <= SIZE_RANGE[1]:
        raise argparse.ArgumentTypeError(f"size must be in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {v}")
    return v


def _count_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--size", type=_size_arg, default=64, help="image side in px, 32..224 (default 64)")
    parser.add_argument("--train-per-class", type=_count_arg, default=32, help="ImageNet train images per class")
    parser.add_argument("--val-per-class", type=_count_arg, default=8, help="ImageNet val images per class")
    parser.add_argument("--coco-train", type=_count_arg, default=32, help="COCO train2017 images")
    parser.add_argument("--coco-val", type=_count_arg, default=24, help="COCO val2017 images")
    parser.add_argument("--bsds", type=_count_arg, default=8, help="BSDS500 images")
    parser.add_argument("--saliency", type=_count_arg, default=16, help="saliency images")
    parser.add_argument("--photos", type=_count_arg, default=24, help="photo crops")
    parser.add_argument("--imagenet-style", choices=("cluttered", "plain"), default="cluttered",
                        help="ImageNet-style images: cluttered (default) or plain (one grey shape; learnable by "
                             "tiny self-supervised pretraining)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if a complete set exists")


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        paths = generate_tiny(args.out, seed=args.seed, size=args.size, train_per_class=args.train_per_class,
                              val_per_class=args.val_per_class, coco_train=args.coco_train, coco_val=args.coco_val,
                              bsds=args.bsds, saliency=args.saliency, photos=args.photos,
                              imagenet_style=args.imagenet_style, overwrite=args.overwrite)
    except (ValueError, FileExistsError, RuntimeError) as e:
        print(f"gmae data tiny: error: {e}", file=sys.stderr)
        return 2
    manifest = json.loads(paths["manifest"].read_text())
    print(f"tiny set at {paths['root']} ({len(manifest['files'])} files, {time.perf_counter() - t0:.1f} s)")
    for k, v in manifest["counts"].items():
        print(f"  {k:<28}{v}")
    return 0
