"""ImageNet in the ImageFolder layout: ``ImageFolderDataset`` and the (train, val) split check of the
classification evaluations (``image_folders``)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from gmae.data.images import (DECODE_ERRORS, IMG_EXTENSIONS, CorruptImageWarning, decode_rgb, is_image_file,
                              require_dir)


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
        self.root = require_dir(Path(root), "image folder")
        self.transform = transform
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"no class folders in {self.root} (expected {self.root}/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for cls in self.classes:
            cls_dir = os.path.join(self.root, cls)
            files = [os.path.join(d, f) for d, _, names in sorted(os.walk(cls_dir, followlinks=True))
                     for f in sorted(names) if is_image_file(f)]
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
                img = decode_rgb(path)
            except DECODE_ERRORS as e:
                self._bad.add(i)
                warnings.warn(f"skipping unreadable image {path} ({type(e).__name__}: {e}); "
                              f"{len(self._bad)} skipped so far", CorruptImageWarning, stacklevel=2)
                continue
            return (self.transform(img) if self.transform is not None else img), target
        raise RuntimeError(f"no readable image among the {n} files under {self.root}")


def image_folders(root: str | os.PathLike, train_split: str, val_split: str, train_transform=None,
                  val_transform=None) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """(train, val) ImageFolderDatasets of ``root/<train_split>`` and ``root/<val_split>``; raises naming the
    folder if a split is missing, has no classes or the two splits disagree on their classes."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: folder not found: {root}")
    splits = {}
    for name in (train_split, val_split):
        d = root / name
        if not d.is_dir():
            raise FileNotFoundError(f"data.root: no {name!r} split folder in {root} (expected {d}/<class>/<image>)")
        splits[name] = d
    train = ImageFolderDataset(splits[train_split], transform=train_transform)
    val = ImageFolderDataset(splits[val_split], transform=val_transform)
    if len(train.classes) < 2:  # one class scores top-1 = 100 % whatever the encoder: a meaningless number
        raise ValueError(f"{splits[train_split]}: classification needs >= 2 classes, found "
                         f"{len(train.classes)} ({train.classes})")
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise ValueError(f"{root}: {train_split}/ and {val_split}/ hold different classes "
                         f"(only in {train_split}: {only_train[:5]}, only in {val_split}: "
                         f"{only_val[:5]}; {len(train.classes)} vs {len(val.classes)} classes)")
    return train, val
