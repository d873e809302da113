"""Salient-object data sets (DUTS / ECSSD style): images with binary foreground masks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from gmae.data.images import WIDE_GREY_MODES, decode_rgb, is_image_file, require_dir, to_8bit


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
        self.root = require_dir(Path(root), "saliency root")
        self.transform = transform
        self.image_dir = require_dir(self.root / image_dir, "saliency image directory")
        self.mask_dir = require_dir(self.root / mask_dir, "saliency mask directory")
        self.images = sorted(p for p in self.image_dir.iterdir() if is_image_file(p.name))
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
        image = decode_rgb(img_path)
        with Image.open(mask_path) as m:
            mask = np.asarray(to_8bit(m) if m.mode in WIDE_GREY_MODES else m.convert("L"))
        if mask.shape != (image.size[1], image.size[0]):
            raise ValueError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {img_path} is "
                             f"{image.size[0]}x{image.size[1]}")
        # masks stored as 0/1 (not 0/255) are common: thresholding those at 128 would leave no foreground
        mask = (mask >= (1 if mask.max() <= 1 else 128)).astype(np.uint8)
        return (self.transform(image) if self.transform is not None else image), mask
