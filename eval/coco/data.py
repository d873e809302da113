"""The COCO-format data set of ``--coco DIR``: layout checks and detectron2 registration.

Layout (COCO 2017): ``DIR/annotations/instances_{train2017,val2017}.json`` and the images under
``DIR/{train2017,val2017}/``. Both splits are registered under the names the configs use
(``gmae_coco_train2017``, ``gmae_coco_val2017``) with detectron2's ``register_coco_instances`` (categories
mapped to contiguous ids in sorted-id order, as detectron2 does for COCO's 1..90).
"""

from __future__ import annotations

import json
import os
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


# fields every entry of each list must have (what detectron2's loader and COCOeval index without checking)
_REQUIRED = {"images": ("id", "file_name", "height", "width"), "annotations": ("id", "image_id", "category_id",
                                                                              "bbox"),
             "categories": ("id", "name")}


def describe_annotations(ann_file: str | Path, image_dir: str | Path | None = None) -> dict[str, Any]:
    """Category ids (sorted), image / annotation counts and whether any non-crowd mask is RLE-encoded.

    Checks, naming the json, what would otherwise fail after training: the schema (required fields, boxes of 4
    numbers, annotations of known images and categories) and, with ``image_dir``, that every image file exists.
    """
    try:
        doc = json.loads(Path(ann_file).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{ann_file}: not a readable COCO json ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{ann_file}: not COCO instances format (top level is not an object)")
    for key, fields in _REQUIRED.items():
        if not isinstance(doc.get(key), list):
            raise ValueError(f"{ann_file}: not COCO instances format (no {key!r} list)")
        for i, entry in enumerate(doc[key]):
            missing = [f for f in fields if not isinstance(entry, dict) or f not in entry]
            if missing:
                raise ValueError(f"{ann_file}: {key}[{i}] lacks {missing}")
    image_ids = {im["id"] for im in doc["images"]}
    cat_ids = {c["id"] for c in doc["categories"]}
    for i, a in enumerate(doc["annotations"]):
        box = a["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise ValueError(f"{ann_file}: annotations[{i}].bbox is not [x, y, w, h] numbers: {box!r}")
        if a["image_id"] not in image_ids or a["category_id"] not in cat_ids:
            raise ValueError(f"{ann_file}: annotations[{i}] refers to an unknown image_id {a['image_id']!r} or "
                             f"category_id {a['category_id']!r}")
    if image_dir is not None:
        present = set(os.listdir(image_dir))
        absent = [im["file_name"] for im in doc["images"] if im["file_name"] not in present
                  and not (Path(image_dir) / im["file_name"]).is_file()]
        if absent:
            raise FileNotFoundError(f"{ann_file}: {len(absent)} of {len(doc['images'])} images are missing from "
                                    f"{image_dir} (first: {absent[0]})")
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
        info = {split: describe_annotations(ann, img) for split, (ann, img) in paths.items()}
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
