"""The COCO-format data set of ``--coco DIR``: layout checks and detectron2 registration.

Layout (COCO 2017): ``DIR/annotations/instances_{train2017,val2017}.json`` and the images under
``DIR/{train2017,val2017}/``. Both splits are registered under the names the configs use
(``gmae_coco_train2017``, ``gmae_coco_val2017``) with detectron2's ``register_coco_instances`` (categories
mapped to contiguous ids in sorted-id order, as detectron2 does for COCO's 1..90).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPLITS = ("train2017", "val2017")
DATASET_NAMES = {split: f"gmae_coco_{split}" for split in SPLITS}


def coco_paths(root: str | Path) -> dict[str, tuple[Path, Path]]:
    """{split: (annotation json, image folder)}; raises naming the missing path before any work."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--coco: folder not found: {root}")
    out = {}
    for split in SPLITS:
        ann = root / "annotations" / f"instances_{split}.json"
        img = root / split
        if not ann.is_file():
            raise FileNotFoundError(f"--coco {root}: missing {ann} (expected DIR/annotations/instances_{split}.json)")
        if not img.is_dir():
            raise FileNotFoundError(f"--coco {root}: missing image folder {img}")
        out[split] = (ann, img)
    return out


def describe_annotations(ann_file: str | Path) -> dict[str, Any]:
    """Category ids (sorted), image / annotation counts and whether any non-crowd mask is RLE-encoded."""
    try:
        doc = json.loads(Path(ann_file).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{ann_file}: not a readable COCO json ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{ann_file}: not COCO instances format (no {key!r} list)")
    rle = any(isinstance(a.get("segmentation"), dict) and not a.get("iscrowd", 0) for a in doc["annotations"])
    return {"category_ids": sorted(int(c["id"]) for c in doc["categories"]), "images": len(doc["images"]),
            "annotations": len(doc["annotations"]), "rle_masks": rle}


def register_coco(root: str | Path, described: dict[str, Any] | None = None) -> dict[str, Any]:
    """Register both splits of ``root`` with detectron2 (replacing earlier registrations of the same names).

    Returns {"names": {split: name}, "num_classes", "rle_masks" (train split), "train": ..., "val": ...};
    passing that dict back as ``described`` skips re-reading the json files (COCO's train json is 450 MB).
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    paths = coco_paths(root)
    if described is not None:
        info = {"train2017": described["train"], "val2017": described["val"]}
    else:
        info = {split: describe_annotations(ann) for split, (ann, _) in paths.items()}
    train_ids, val_ids = info["train2017"]["category_ids"], info["val2017"]["category_ids"]
    if train_ids != val_ids:
        raise ValueError(f"--coco {root}: train2017 and val2017 list different categories "
                         f"({train_ids} vs {val_ids})")
    if not train_ids:
        raise ValueError(f"--coco {root}: no categories in {paths['train2017'][0]}")
    for split, (ann, img) in paths.items():
        name = DATASET_NAMES[split]
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, str(ann), str(img))
    return {"names": dict(DATASET_NAMES), "num_classes": len(train_ids), "rle_masks": info["train2017"]["rle_masks"],
            "train": info["train2017"], "val": info["val2017"]}
