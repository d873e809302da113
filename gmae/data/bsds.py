"""BSDS500 (Berkeley segmentation and boundaries): the one reader, locator and writer of its files.

Layouts: a flat set (``root/images/<id>.jpg`` + ``root/groundTruth/<id>.mat``) or the official release
(``BSR``, ``BSDS500`` or ``BSDS500/data`` holding ``images/<split>`` and ``groundTruth/<split>``).
A ``groundTruth/<id>.mat`` holds ``groundTruth``: a 1 x K cell of 1 x 1 structs {Segmentation, Boundaries},
one per human annotator. The boundary benchmark itself (matching, ODS / OIS / AP) is :mod:`eval.bsds_benchmark`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from gmae.data.images import decode_rgb, require_dir

# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


def load_bsds_ground_truth(mat_path: str | os.PathLike, segmentation: bool = True) -> list[dict[str, np.ndarray]]:
    """Read a BSDS500 ``groundTruth/<id>.mat``: a cell of K structs {Segmentation, Boundaries}.

    Returns K dicts ``{"segmentation": (H, W) int32 labels 1..n, "boundaries": (H, W) uint8 0/1}``; with
    ``segmentation=False`` only ``"boundaries"`` is read (and required), as the boundary benchmark needs.
    A file that is missing, unreadable or not in this layout raises naming it.
    """
    from scipy.io import loadmat

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise FileNotFoundError(f"BSDS ground-truth file not found: {mat_path}")
    try:
        mat = loadmat(str(mat_path))
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"cannot read {mat_path} as a MATLAB v5 file ({type(e).__name__}: {e})") from e
    if "groundTruth" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{mat_path} has no variable 'groundTruth' (variables: {keys})")
    cell = np.asarray(mat["groundTruth"])
    if cell.dtype != object or cell.size == 0:
        raise ValueError(f"{mat_path}: 'groundTruth' is not a non-empty cell array (dtype {cell.dtype})")
    fields = ("Segmentation", "Boundaries") if segmentation else ("Boundaries",)
    out: list[dict[str, np.ndarray]] = []
    for k, st in enumerate(cell.ravel()):
        names = getattr(getattr(st, "dtype", None), "names", None) or ()
        if any(f not in names for f in fields):
            raise ValueError(f"{mat_path}: groundTruth{{{k + 1}}} lacks {'/'.join(fields)} (fields {names})")
        bnd = np.asarray(st["Boundaries"].ravel()[0])
        if bnd.ndim != 2:
            raise ValueError(f"{mat_path}: groundTruth{{{k + 1}}}.Boundaries is not 2-D (shape {bnd.shape})")
        if out and bnd.shape != out[0]["boundaries"].shape:
            raise ValueError(f"{mat_path}: annotators disagree on the image size "
                             f"({out[0]['boundaries'].shape} vs {bnd.shape})")
        gt = {"boundaries": (bnd != 0).astype(np.uint8)}
        if segmentation:
            seg = np.asarray(st["Segmentation"].ravel()[0])
            if seg.shape != bnd.shape:
                raise ValueError(f"{mat_path}: groundTruth{{{k + 1}}} Segmentation {seg.shape} and Boundaries "
                                 f"{bnd.shape} are not the same 2-D shape")
            gt = {"segmentation": seg.astype(np.int32), **gt}
        out.append(gt)
    return out


def load_gt_boundaries(path: str | os.PathLike) -> list[np.ndarray]:
    """The K annotators' boundary maps of a BSDS500 ``groundTruth`` .mat file, each (H, W) bool."""
    return [gt["boundaries"] != 0 for gt in load_bsds_ground_truth(path, segmentation=False)]


# ----------------------------------------------------------------------------------------------------------
# Locating
# ----------------------------------------------------------------------------------------------------------


def find_bsds(root: str | os.PathLike, split: str = "test") -> tuple[Path, Optional[Path]]:
    """(image dir, ground-truth dir or None) of a flat BSDS set (images/, groundTruth/) or the official release
    (BSR, BSDS500 or BSDS500/data with images/<split>, groundTruth/<split>); else a plain folder of .jpg."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BSDS folder not found: {root}")
    for base in (root, root / "data", root / "BSDS500" / "data", root / "BSR" / "BSDS500" / "data"):
        if (base / "images" / split).is_dir():
            gt = base / "groundTruth" / split
            return base / "images" / split, gt if gt.is_dir() else None
        if (base / "images").is_dir() and any(p.suffix.lower() == ".jpg" for p in (base / "images").iterdir()):
            gt = base / "groundTruth"
            return base / "images", gt if gt.is_dir() else None
    if any(p.suffix.lower() == ".jpg" for p in root.iterdir()):
        return root, None
    raise FileNotFoundError(f"no BSDS images under {root} (looked for images/, images/{split}/ and *.jpg)")


class BSDSDataset(Dataset):
    """BSDS500 images with their human segmentations: item -> ``(id, image, gts)``.

    ``root`` is any layout :func:`find_bsds` locates, with its ground truth. ``gts`` is
    ``load_bsds_ground_truth`` of the image's .mat; ``image`` an RGB PIL image (``transform`` applied if given).
    Every image must have a .mat (checked at construction).
    """

    def __init__(self, root: str | os.PathLike, split: str = "test", transform: Callable | None = None):
        self.root = require_dir(Path(root), "BSDS root")
        self.transform = transform
        self.image_dir, gt_dir = find_bsds(self.root, split)
        if gt_dir is None:
            raise FileNotFoundError(f"BSDS groundTruth directory not found next to {self.image_dir}")
        self.gt_dir = gt_dir
        self.ids = sorted(p.stem for p in self.image_dir.iterdir() if p.suffix.lower() == ".jpg")
        if not self.ids:
            raise FileNotFoundError(f"no .jpg image in {self.image_dir}")
        for i in self.ids:
            if not (self.gt_dir / f"{i}.mat").is_file():
                raise FileNotFoundError(f"image {self.image_dir / (i + '.jpg')} has no ground truth "
                                        f"{self.gt_dir / (i + '.mat')}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        bid = self.ids[index]
        img_path, mat_path = self.image_dir / f"{bid}.jpg", self.gt_dir / f"{bid}.mat"
        image = decode_rgb(img_path)
        gts = load_bsds_ground_truth(mat_path)
        w, h = image.size
        for g in gts:
            if g["segmentation"].shape != (h, w):
                raise ValueError(f"{mat_path} ground truth is {g['segmentation'].shape} but {img_path} is {(h, w)}")
        return bid, (self.transform(image) if self.transform is not None else image), gts


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------


def boundaries_from_segmentation(seg: np.ndarray) -> np.ndarray:
    """Thin (1 px) boundary map (H, W) uint8 0/1: a pixel is on a boundary where its right or lower
    neighbour has another label."""
    b = np.zeros(seg.shape, dtype=bool)
    b[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    b[:-1, :] |= seg[:-1, :] != seg[1:, :]
    return b.astype(np.uint8)


def ground_truth_mat_bytes(segmentations: Sequence[np.ndarray], boundaries: Sequence[np.ndarray] | None = None,
                           written_by: str = "gmae") -> bytes:
    """A BSDS500 ``groundTruth`` .mat (MAT v5) of K annotators, as bytes.

    ``segmentations`` are stored in their own dtype; ``boundaries`` (stored as uint8 0/1) default to
    :func:`boundaries_from_segmentation` of each. The 116-byte text header, which would hold a creation time,
    is pinned to "... written by <written_by>" so the same input gives the same bytes.
    """
    from scipy.io import savemat

    if boundaries is None:
        boundaries = [boundaries_from_segmentation(seg) for seg in segmentations]
    cell = np.empty((1, len(segmentations)), dtype=object)
    for k, (seg, bnd) in enumerate(zip(segmentations, boundaries)):
        st = np.empty((1, 1), dtype=[("Segmentation", object), ("Boundaries", object)])
        st[0, 0] = (seg, np.asarray(bnd, np.uint8))
        cell[0, k] = st
    buf = io.BytesIO()
    savemat(buf, {"groundTruth": cell})
    raw = bytearray(buf.getvalue())
    raw[:116] = f"MATLAB 5.0 MAT-file, written by {written_by}".encode("ascii").ljust(116, b" ")
    return bytes(raw)
