"""Data: the embedded tiny multi-task set (``gmae.data.tiny``), loaders for the real data sets
(``gmae.data.datasets``) and the ImageNet transforms (``gmae.data.transforms``).

Names are imported lazily so ``gmae data tiny`` does not pay for importing torch / torchvision.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "generate_tiny": "gmae.data.tiny",
    "ImageFolderDataset": "gmae.data.datasets",
    "CocoInstances": "gmae.data.datasets",
    "BSDSDataset": "gmae.data.datasets",
    "load_bsds_ground_truth": "gmae.data.datasets",
    "SaliencyDataset": "gmae.data.datasets",
    "ImageListDataset": "gmae.data.datasets",
    "CorruptImageWarning": "gmae.data.datasets",
    "IMG_EXTENSIONS": "gmae.data.datasets",
    "IMAGENET_MEAN": "gmae.data.transforms",
    "IMAGENET_STD": "gmae.data.transforms",
    "pretrain_transform": "gmae.data.transforms",
    "eval_transform": "gmae.data.transforms",
    "denormalize": "gmae.data.transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gmae.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
