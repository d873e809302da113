"""Reading images the same way everywhere: 8-bit RGB from any file PIL opens (16-bit greyscale scaled, not
clipped), the image-extension rule, unreadable-file handling, and flat photo folders (``ImageListDataset``).

Loading never runs code from data; bad input fails with an error naming the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

# Same list and matching rule (lower-cased suffix) as torchvision.datasets.folder.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# What PIL raises for an unreadable file: truncated / corrupt data (OSError, incl. UnidentifiedImageError),
# broken headers (SyntaxError, ValueError), absurd sizes (DecompressionBombError).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

# 16-bit / 32-bit integer greyscale modes: PIL's convert("RGB") clips their values at 255 (all white)
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class CorruptImageWarning(UserWarning):
    """An unreadable image was skipped."""


def decode_rgb(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit RGB; an unreadable file raises one of ``DECODE_ERRORS`` (see :func:`load_rgb`)."""
    with Image.open(path) as im:
        if im.mode in WIDE_GREY_MODES:
            return to_8bit(im).convert("RGB")
        return im.convert("RGB")  # convert() decodes the whole file, so truncation is caught here


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit RGB (16-bit greyscale scaled, not clipped); an unreadable file raises ValueError
    naming it. Every loader of the suite reads images through this."""
    try:
        return decode_rgb(path)
    except DECODE_ERRORS as e:
        raise ValueError(f"cannot read image {path} ({type(e).__name__}: {e})") from e


def to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit greyscale image (PNG stores 16-bit as I;16, PIL may open it as I) scaled to 8 bits: v * 255 / 65535."""
    a = np.asarray(im).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8), mode="L")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else FileNotFoundError / NotADirectoryError naming it as ``what``."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} is not a directory: {path}")
    return path


class ImageListDataset(Dataset):
    """Images from a flat directory (sorted file names, image extensions only) or an explicit list of paths.

    Item -> image (RGB PIL, or ``transform(image)``); ``paths[i]`` names it. Unlike ImageFolderDataset an
    unreadable file raises (naming it): metrics over a fixed photo set must not silently change the set.
    """

    def __init__(self, paths_or_dir: str | os.PathLike | Iterable[str | os.PathLike],
                 transform: Callable | None = None):
        if isinstance(paths_or_dir, (str, os.PathLike)):
            d = require_dir(Path(paths_or_dir), "image directory")
            self.paths = sorted(p for p in d.iterdir() if p.is_file() and is_image_file(p.name))
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


def find_images(root: str | os.PathLike, max_images: int | None = None) -> list[Path]:
    """Image files under ``root`` (recursive, following links), sorted by relative path; first ``max_images``."""
    d = Path(root)
    if not d.is_dir():
        raise FileNotFoundError(f"image folder not found: {d}")
    files = sorted((Path(dp) / f for dp, _, names in os.walk(d, followlinks=True) for f in names
                    if f.lower().endswith(IMG_EXTENSIONS)), key=lambda p: p.relative_to(d).as_posix())
    if not files:
        raise FileNotFoundError(f"no image file ({', '.join(IMG_EXTENSIONS)}) under {d}")
    return files[:max_images] if max_images else files
