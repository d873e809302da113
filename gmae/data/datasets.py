"""Loaders for the real data sets (ImageNet folders, COCO instances, BSDS500, saliency masks, photo folders).

The same classes read the embedded tiny set (``gmae data tiny``), which is written in the real layouts.
Bad input fails with an error naming the path before any expensive work; loading never runs code from data.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

# Same list and matching rule (lower-cased suffix) as torchvision.datasets.folder.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# What PIL raises for an unreadable file: truncated / corrupt data (OSError, incl. UnidentifiedImageError),
# broken headers (SyntaxError, ValueError), absurd sizes (DecompressionBombError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class CorruptImageWarning(UserWarning):
    """An unreadable image was skipped."""


# 16-bit / 32-bit integer greyscale modes: PIL's convert("RGB") clips their values at 255 (all white)
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _load_rgb(path: str | os.PathLike) -> Image.Image:
    with Image.open(path) as im:
        if im.mode in _WIDE_GREY:
            return _to_8bit(im).convert("RGB")
        return im.convert("RGB")  # convert() decodes the whole file, so truncation is caught here


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit RGB (16-bit greyscale scaled, not clipped); an unreadable file raises ValueError
    naming it. Every loader of the suite reads images through this."""
    try:
        return _load_rgb(path)
    except _DECODE_ERRORS as e:
        raise ValueError(f"cannot read image {path} ({type(e).__name__}: {e})") from e


def _to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit greyscale image (PNG stores 16-bit as I;16, PIL may open it as I) scaled to 8 bits: v * 255 / 65535."""
    a = np.asarray(im).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8), mode="L")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} is not a directory: {path}")
    return path


# ----------------------------------------------------------------------------------------------------------
# ImageNet (ImageFolder layout)
# ----------------------------------------------------------------------------------------------------------

class ImageFolderDataset(Dataset):
    """``root/<class>/**/<image>`` -> ``(image, label)``, with torchvision ImageFolder's class order and samples.

    Classes are the sub-directories of ``root`` sorted by name (label = index); samples are every file with an
    image extension under each class directory (os.walk order sorted, following links). An unreadable image is
    skipped: ``__getitem__`` returns the next readable sample (index + 1, + 2, ... wrapping around), warns once
    per bad file (CorruptImageWarning) and counts it in ``num_skipped``. With DataLoader workers each worker
    holds its own copy, so counts are per worker.

    Attributes: ``classes``, ``class_to_idx``, ``samples`` [(path, label)], ``targets``, ``num_skipped``.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None):
        self.root = _require_dir(Path(root), "image folder")
        self.transform = transform
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"no class folders in {self.root} (expected {self.root}/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for cls in self.classes:
            cls_dir = os.path.join(self.root, cls)
            files = [os.path.join(d, f) for d, _, names in sorted(os.walk(cls_dir, followlinks=True))
                     for f in sorted(names) if _is_image(f)]
            if not files:
                raise FileNotFoundError(f"class folder {cls_dir} holds no image file ({', '.join(IMG_EXTENSIONS)})")
            self.samples += [(f, self.class_to_idx[cls]) for f in files]
        self.targets = [t for _, t in self.samples]
        self._bad: set[int] = set()

    @property
    def num_skipped(self) -> int:
        """Number of distinct unreadable files met so far."""
        return len(self._bad)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            path, target = self.samples[i]
            try:
                img = _load_rgb(path)
            except _DECODE_ERRORS as e:
                self._bad.add(i)
                warnings.warn(f"skipping unreadable image {path} ({type(e).__name__}: {e}); "
                              f"{len(self._bad)} skipped so far", CorruptImageWarning, stacklevel=2)
                continue
            return (self.transform(img) if self.transform is not None else img), target
        raise RuntimeError(f"no readable image among the {n} files under {self.root}")


# ----------------------------------------------------------------------------------------------------------
# COCO instances
# ----------------------------------------------------------------------------------------------------------

class CocoInstances(Dataset):
    """COCO instances: ``root/<split>/*.jpg`` + ``root/annotations/instances_<split>.json`` (pycocotools).

    ``split`` is e.g. ``"val2017"`` (``"val"`` / ``"train"`` are accepted and mean ``<split>2017``).
    Item ``i`` -> ``(image, target)``: image is an RGB PIL image (h, w); target holds numpy arrays for the N
    annotations of the image: ``boxes`` (N, 4) float32 xyxy in pixels, ``labels`` (N,) int64 contiguous
    0..K-1 (index into ``cat_ids`` / ``classes``), ``category_ids`` (N,) raw COCO ids, ``masks`` (N, h, w)
    uint8 0/1 (polygons or RLE decoded), ``area`` (N,) float32, ``iscrowd`` (N,) int64, plus ``image_id``
    and ``file_name``. ``transforms(image, target) -> (image, target)`` is applied last if given.
    """

    def __init__(self, root: str | os.PathLike, split: str = "val2017", transforms: Callable | None = None):
        root = Path(root)
        if split in ("train", "val", "test") and not (root / split).is_dir():
            split = f"{split}2017"
        self.root, self.split, self.transforms = root, split, transforms
        self.ann_file = root / "annotations" / f"instances_{split}.json"
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.ann_file}")
        self.image_dir = _require_dir(root / split, "COCO image directory")
        from pycocotools.coco import COCO

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress lines
                self.coco = COCO(str(self.ann_file))
        except (ValueError, KeyError, TypeError, AssertionError) as e:
            raise ValueError(f"not a COCO instances file: {self.ann_file} ({type(e).__name__}: {e})") from e
        self.ids = sorted(self.coco.imgs)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i for i, c in enumerate(self.cat_ids)}
        self.classes = [self.coco.cats[c]["name"] for c in self.cat_ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"COCO image {image_id} listed in {self.ann_file} is missing: {path}")
        image = _load_rgb(path)
        h, w = int(info["height"]), int(info["width"])
        if image.size != (w, h):
            raise ValueError(f"{path} is {image.size[0]}x{image.size[1]} but {self.ann_file} says {w}x{h}")
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id]))
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # [x, y, w, h] -> [x0, y0, x1, y1]
        target = {
            "image_id": image_id,
            "file_name": info["file_name"],
            "boxes": boxes,
            "labels": np.array([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=np.int64),
            "category_ids": np.array([a["category_id"] for a in anns], dtype=np.int64),
            "masks": self._masks(anns, h, w),
            "area": np.array([a["area"] for a in anns], dtype=np.float32),
            "iscrowd": np.array([a.get("iscrowd", 0) for a in anns], dtype=np.int64),
        }
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target

    def _masks(self, anns: list[dict], h: int, w: int) -> np.ndarray:
        if not anns:
            return np.zeros((0, h, w), dtype=np.uint8)
        with warnings.catch_warnings():
            # pycocotools 2.0.11 calls np.array(copy=False) semantics that numpy 2 deprecates; harmless.
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            return np.stack([self.coco.annToMask(a) for a in anns])


# ----------------------------------------------------------------------------------------------------------
# BSDS500
# ----------------------------------------------------------------------------------------------------------

def load_bsds_ground_truth(mat_path: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """Read a BSDS500 ``groundTruth/<id>.mat``: a cell of K structs {Segmentation, Boundaries}.

    Returns K dicts ``{"segmentation": (H, W) int32 labels 1..n, "boundaries": (H, W) uint8 0/1}``.
    """
    from scipy.io import loadmat

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise FileNotFoundError(f"BSDS ground-truth file not found: {mat_path}")
    try:
        mat = loadmat(str(mat_path))
    except (ValueError, NotImplementedError, OSError, TypeError) as e:
        raise ValueError(f"cannot read {mat_path} as a MATLAB v5 file ({type(e).__name__}: {e})") from e
    if "groundTruth" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{mat_path} has no variable 'groundTruth' (variables: {keys})")
    cell = np.asarray(mat["groundTruth"])
    if cell.dtype != object or cell.size == 0:
        raise ValueError(f"{mat_path}: 'groundTruth' is not a non-empty cell array (dtype {cell.dtype})")
    out = []
    for k, st in enumerate(cell.ravel()):
        names = getattr(getattr(st, "dtype", None), "names", None) or ()
        if "Segmentation" not in names or "Boundaries" not in names:
            raise ValueError(f"{mat_path}: groundTruth{{{k + 1}}} lacks Segmentation/Boundaries (fields {names})")
        seg = np.asarray(st["Segmentation"].ravel()[0])
        bnd = np.asarray(st["Boundaries"].ravel()[0])
        if seg.ndim != 2 or seg.shape != bnd.shape:
            raise ValueError(f"{mat_path}: groundTruth{{{k + 1}}} Segmentation {seg.shape} and Boundaries "
                             f"{bnd.shape} are not the same 2-D shape")
        out.append({"segmentation": seg.astype(np.int32), "boundaries": (bnd != 0).astype(np.uint8)})
    return out


class BSDSDataset(Dataset):
    """BSDS500 images with their human segmentations: item -> ``(id, image, gts)``.

    ``root`` may be a flat set (``root/images/<id>.jpg`` + ``root/groundTruth/<id>.mat``) or the official
    release, pointed at ``BSR``, ``BSDS500`` or ``BSDS500/data`` (``.../images/<split>``,
    ``.../groundTruth/<split>``). ``gts`` is ``load_bsds_ground_truth`` of the image's .mat; ``image`` an RGB
    PIL image (``transform`` applied if given). Every image must have a .mat (checked at construction).
    """

    def __init__(self, root: str | os.PathLike, split: str = "test", transform: Callable | None = None):
        self.root = _require_dir(Path(root), "BSDS root")
        self.transform = transform
        self.image_dir, self.gt_dir = self._resolve(self.root, split)
        self.ids = sorted(p.stem for p in self.image_dir.iterdir() if p.suffix.lower() == ".jpg")
        if not self.ids:
            raise FileNotFoundError(f"no .jpg image in {self.image_dir}")
        for i in self.ids:
            if not (self.gt_dir / f"{i}.mat").is_file():
                raise FileNotFoundError(f"image {self.image_dir / (i + '.jpg')} has no ground truth "
                                        f"{self.gt_dir / (i + '.mat')}")

    @staticmethod
    def _resolve(root: Path, split: str) -> tuple[Path, Path]:
        candidates = [root, root / "data", root / "BSDS500" / "data"]
        for base in candidates:
            flat_img, flat_gt = base / "images", base / "groundTruth"
            if flat_img.is_dir() and any(p.suffix.lower() == ".jpg" for p in flat_img.iterdir()):
                return flat_img, _require_dir(flat_gt, "BSDS groundTruth directory")
            if (flat_img / split).is_dir():
                return flat_img / split, _require_dir(flat_gt / split, "BSDS groundTruth directory")
        tried = ", ".join(str(b / "images" / s) for b in candidates for s in ("", split))
        raise FileNotFoundError(f"no BSDS images under {root} (tried {tried})")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        bid = self.ids[index]
        img_path, mat_path = self.image_dir / f"{bid}.jpg", self.gt_dir / f"{bid}.mat"
        image = _load_rgb(img_path)
        gts = load_bsds_ground_truth(mat_path)
        w, h = image.size
        for g in gts:
            if g["segmentation"].shape != (h, w):
                raise ValueError(f"{mat_path} ground truth is {g['segmentation'].shape} but {img_path} is {(h, w)}")
        return bid, (self.transform(image) if self.transform is not None else image), gts


# ----------------------------------------------------------------------------------------------------------
# Saliency (DUTS / ECSSD style)
# ----------------------------------------------------------------------------------------------------------

_MASK_EXTENSIONS = (".png", ".bmp", ".jpg")


class SaliencyDataset(Dataset):
    """Salient-object images ``root/<image_dir>/<id>.<ext>`` with masks ``root/<mask_dir>/<id>.png``.

    Item -> ``(image, mask)``: image RGB PIL (``transform`` applied if given), mask (H, W) uint8 0/1 at the
    original resolution (mask pixel >= 128 -> 1, or >= 1 for masks stored as 0/1; 16-bit masks scaled to 8
    bits first; saliency metrics are computed at ground-truth resolution).
    A missing mask fails at construction; a mask whose size differs from its image fails on access.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None,
                 image_dir: str = "images", mask_dir: str = "masks"):
        self.root = _require_dir(Path(root), "saliency root")
        self.transform = transform
        self.image_dir = _require_dir(self.root / image_dir, "saliency image directory")
        self.mask_dir = _require_dir(self.root / mask_dir, "saliency mask directory")
        self.images = sorted(p for p in self.image_dir.iterdir() if _is_image(p.name))
        if not self.images:
            raise FileNotFoundError(f"no image in {self.image_dir}")
        self.masks = []
        for p in self.images:
            found = [self.mask_dir / (p.stem + e) for e in _MASK_EXTENSIONS if (self.mask_dir / (p.stem + e)).is_file()]
            if not found:
                raise FileNotFoundError(f"image {p} has no mask {self.mask_dir / (p.stem + '.png')}")
            self.masks.append(found[0])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img_path, mask_path = self.images[index], self.masks[index]
        image = _load_rgb(img_path)
        with Image.open(mask_path) as m:
            mask = np.asarray(_to_8bit(m) if m.mode in _WIDE_GREY else m.convert("L"))
        if mask.shape != (image.size[1], image.size[0]):
            raise ValueError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {img_path} is "
                             f"{image.size[0]}x{image.size[1]}")
        # masks stored as 0/1 (not 0/255) are common: thresholding those at 128 would leave no foreground
        mask = (mask >= (1 if mask.max() <= 1 else 128)).astype(np.uint8)
        return (self.transform(image) if self.transform is not None else image), mask


# ----------------------------------------------------------------------------------------------------------
# Flat photo folders
# ----------------------------------------------------------------------------------------------------------

class ImageListDataset(Dataset):
    """Images from a flat directory (sorted file names, image extensions only) or an explicit list of paths.

    Item -> image (RGB PIL, or ``transform(image)``); ``paths[i]`` names it. Unlike ImageFolderDataset an
    unreadable file raises (naming it): metrics over a fixed photo set must not silently change the set.
    """

    def __init__(self, paths_or_dir: str | os.PathLike | Iterable[str | os.PathLike],
                 transform: Callable | None = None):
        if isinstance(paths_or_dir, (str, os.PathLike)):
            d = _require_dir(Path(paths_or_dir), "image directory")
            self.paths = sorted(p for p in d.iterdir() if p.is_file() and _is_image(p.name))
            if not self.paths:
                raise FileNotFoundError(f"no image file in {d}")
        else:
            self.paths = [Path(p) for p in paths_or_dir]
            if not self.paths:
                raise ValueError("empty image list")
            missing = [str(p) for p in self.paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"image file(s) not found: {', '.join(missing[:5])}"
                                        + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        img = load_rgb(self.paths[index])
        return self.transform(img) if self.transform is not None else img
