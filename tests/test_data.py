"""The tiny data set is read back through the loaders used for the real data sets and checked against
independent readers (torchvision ImageFolder, pycocotools, scipy.io, PIL)."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmae.data.bsds import BSDSDataset, load_bsds_ground_truth
from gmae.data.imagenet import ImageFolderDataset
from gmae.data.images import CorruptImageWarning, ImageListDataset
from gmae.data.saliency import SaliencyDataset
from gmae.data.tiny import COCO_CATEGORY_IDS, SHAPES, generate_tiny, read_manifest
from gmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_transform, pretrain_transform
from gmae.io import sha256_file

SMALL = dict(train_per_class=2, val_per_class=1, coco_train=2, coco_val=2, bsds=2, saliency=2, photos=3)
DATA_SUFFIXES = (".JPEG", ".jpg", ".png", ".mat")

# pycocotools 2.0.11 passes copy=False to numpy 2 inside mask.decode; harmless, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root, read from disk (not from the manifest)."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _match(path) -> str:
    return re.escape(str(path))


# ---------------------------------------------------------------------------------------------- the set


def test_manifest_lists_every_file_with_its_sha256(tiny_data):
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    on_disk = _tree(tiny_data)
    on_disk.pop("manifest.json")
    assert {k: v["sha256"] for k, v in manifest["files"].items()} == on_disk
    assert manifest["params"]["seed"] == 0 and manifest["params"]["size"] == 64
    c = manifest["counts"]
    assert (c["imagenet_train"], c["imagenet_val"], c["bsds500"], c["saliency"], c["photos"]) == (256, 64, 8, 16, 24)
    assert read_manifest(tiny_data) is not None
    assert "GMAE tiny" in (tiny_data / "README.txt").read_text()


def test_imagenet_folder_matches_torchvision(tiny_data):
    from torchvision.datasets import ImageFolder

    for split, per_class in (("train", 32), ("val", 8)):
        root = tiny_data / "imagenet" / split
        ours, ref = ImageFolderDataset(root), ImageFolder(str(root))
        assert ours.classes == sorted(SHAPES) == ref.classes
        assert ours.class_to_idx == ref.class_to_idx
        assert ours.samples == ref.samples
        assert Counter(ours.targets) == {i: per_class for i in range(len(SHAPES))}
        for i in (0, len(ours) - 1):
            img, label = ours[i]
            ref_img, ref_label = ref[i]
            assert label == ref_label and img.size == (64, 64) and img.mode == "RGB"
            assert np.array_equal(np.asarray(img), np.asarray(ref_img))
    x, _ = ImageFolderDataset(tiny_data / "imagenet" / "val", transform=eval_transform(32))[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_imagenet_classes_are_learnable(tiny_data):
    """HOG features + logistic regression (an independent small model) beat chance (1/8) clearly on val."""
    from skimage.feature import hog
    from sklearn.linear_model import LogisticRegression

    def features(split):
        ds = ImageFolderDataset(tiny_data / "imagenet" / split)
        x = [hog(np.asarray(ds[i][0].convert("L"), np.float32) / 255, pixels_per_cell=(8, 8),
                 cells_per_block=(2, 2)) for i in range(len(ds))]  # (1764,) gradient histograms
        return np.stack(x), np.array(ds.targets)

    xtr, ytr = features("train")
    xva, yva = features("val")
    acc = (LogisticRegression(C=0.1, max_iter=2000).fit(xtr, ytr).predict(xva) == yva).mean()
    assert acc >= 0.2, acc  # measured 0.28 at the default 32 images per class (0.52 at 160); chance is 0.125


def test_coco_json_is_consistent_under_pycocotools(tiny_data):
    from pycocotools.coco import COCO

    manifest = json.loads((tiny_data / "manifest.json").read_text())
    for split in ("train2017", "val2017"):
        coco = COCO(str(tiny_data / "coco" / "annotations" / f"instances_{split}.json"))
        assert sorted(coco.getCatIds()) == sorted(COCO_CATEGORY_IDS)
        assert all(c["supercategory"] and c["name"] in SHAPES for c in coco.loadCats(coco.getCatIds()))
        assert len(coco.anns) == manifest["counts"][f"coco_{split}_annotations"]
        for img_id, info in coco.imgs.items():
            with Image.open(tiny_data / "coco" / split / info["file_name"]) as im:
                assert im.size == (info["width"], info["height"])
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
            assert anns, f"image {img_id} has no annotation"
            cover = np.zeros((info["height"], info["width"]), dtype=int)
            for a in anns:
                assert a["iscrowd"] == 0 and a["category_id"] in COCO_CATEGORY_IDS
                m = coco.annToMask(a)
                ys, xs = np.nonzero(m)
                assert m.sum() == a["area"] > 0
                assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                cover += m
            # Masks are the visible parts after occlusion, so objects of one image never share a pixel.
            assert cover.max() == 1


def test_bsds_mat_layout_and_loaders(tiny_data):
    from scipy.io import loadmat

    root = tiny_data / "bsds500"
    mats = sorted((root / "groundTruth").glob("*.mat"))
    assert len(mats) == 8
    shapes = set()
    for p in mats:
        with Image.open(root / "images" / f"{p.stem}.jpg") as im:
            hw = (im.size[1], im.size[0])
        shapes.add(hw)
        gt = loadmat(p)["groundTruth"]
        assert gt.shape[0] == 1 and gt.shape[1] >= 3
        segs = []
        for i in range(gt.shape[1]):
            b = gt[0, i]["Boundaries"][0, 0]
            s = gt[0, i]["Segmentation"][0, 0]
            assert b.shape == s.shape == hw and b.dtype == np.uint8 and s.dtype == np.uint16
            assert set(np.unique(b)) <= {0, 1}
            assert np.array_equal(np.unique(s), np.arange(1, s.max() + 1)) and s.max() >= 2
            # Boundaries separate segments: every pair of 4-neighbours with different labels has a marked
            # member, and every marked pixel has a 4-neighbour with another label.
            dh, dv = s[:, :-1] != s[:, 1:], s[:-1] != s[1:]
            assert np.all(b[:, :-1][dh] | b[:, 1:][dh]) and np.all(b[:-1][dv] | b[1:][dv])
            other = np.zeros(hw, bool)
            other[:, :-1] |= dh
            other[:, 1:] |= dh
            other[:-1] |= dv
            other[1:] |= dv
            assert not np.any(b.astype(bool) & ~other)
            segs.append(s)
        assert any(not np.array_equal(segs[0], s) for s in segs[1:]), "annotators should differ"
        ours = load_bsds_ground_truth(p)
        assert len(ours) == len(segs)
        for g, s in zip(ours, segs):
            np.testing.assert_array_equal(g["segmentation"], s)
    assert shapes == {(64, 96), (96, 64)}  # landscape and portrait
    ds = BSDSDataset(root)
    assert ds.ids == [p.stem for p in mats]
    bid, image, gts = ds[0]
    assert bid == mats[0].stem and (image.size[1], image.size[0]) == gts[0]["segmentation"].shape


def test_bsds_official_layout(tiny_data, tmp_path):
    flat = BSDSDataset(tiny_data / "bsds500")
    data = tmp_path / "BSR" / "BSDS500" / "data"
    shutil.copytree(tiny_data / "bsds500" / "images", data / "images" / "test")
    shutil.copytree(tiny_data / "bsds500" / "groundTruth", data / "groundTruth" / "test")
    (data / "images" / "test" / "Thumbs.db").write_bytes(b"\0")  # the official release ships these
    for root in (tmp_path / "BSR", tmp_path / "BSR" / "BSDS500", data):
        ds = BSDSDataset(root, split="test")
        assert ds.ids == flat.ids
        a, b = ds[3], flat[3]
        assert a[0] == b[0] and np.array_equal(np.asarray(a[1]), np.asarray(b[1]))
        assert all(np.array_equal(x["boundaries"], y["boundaries"]) for x, y in zip(a[2], b[2]))


def test_saliency_masks(tiny_data):
    root = tiny_data / "saliency"
    ds = SaliencyDataset(root)
    assert len(ds) == 16
    for i in range(len(ds)):
        image, mask = ds[i]
        with Image.open(ds.masks[i]) as m:
            assert m.mode == "L"
            raw = np.asarray(m)
        assert set(np.unique(raw)) == {0, 255}
        assert raw.shape == mask.shape == (image.size[1], image.size[0])
        np.testing.assert_array_equal(mask, raw >= 128)
        assert 0.01 < mask.mean() < 0.6


def test_photos_are_crops_of_real_photographs(tiny_data):
    manifest = json.loads((tiny_data / "manifest.json").read_text())
    assert {"china", "flower", "grace_hopper", "astronaut"} <= set(manifest["photo_sources"])
    ds = ImageListDataset(tiny_data / "photos")
    assert len(ds) == 24
    arrays = [np.asarray(ds[i]) for i in range(len(ds))]
    assert all(a.shape == (64, 64, 3) for a in arrays)
    assert len({a.tobytes() for a in arrays}) == 24 and min(a.std() for a in arrays) > 3
    sources = {p.name.rsplit("_", 1)[0] for p in ds.paths}
    assert sources == set(manifest["photo_sources"]) and len(sources) >= 8
    t = ImageListDataset(ds.paths[:2], transform=eval_transform(32))
    assert t[1].shape == (3, 32, 32)


# --------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_data, tmp_path):
    a = generate_tiny(tmp_path / "a", seed=0, size=64, **SMALL)["root"]
    b = generate_tiny(tmp_path / "b", seed=0, size=64, **SMALL)["root"]
    c = generate_tiny(tmp_path / "c", seed=1, size=64, **SMALL)["root"]
    ta, tb, tc = _tree(a), _tree(b), _tree(c)
    assert ta == tb
    images = [k for k in ta if k.endswith(DATA_SUFFIXES)]
    assert len(images) == 8 * 3 + 4 + 2 * 2 + 2 * 2 + 3
    assert all(ta[k] != tc.get(k) for k in images)
    # Each image has its own random stream: the small set's images equal the same files of the full set.
    full = _tree(tiny_data)
    assert all(ta[k] == full[k] for k in images if not k.startswith("imagenet/val"))


def test_skip_when_complete_regenerate_when_partial(tmp_path):
    out = tmp_path / "t"
    generate_tiny(out, seed=3, size=32, **{**SMALL, "train_per_class": 3})
    probe = out / "saliency" / "masks" / "sal_0000.png"
    before = probe.stat().st_mtime_ns
    generate_tiny(out, seed=3, size=32, **{**SMALL, "train_per_class": 3})
    assert probe.stat().st_mtime_ns == before  # complete and identical parameters: nothing rewritten
    first = _tree(out)
    (out / "manifest.json").unlink()  # a partial set
    generate_tiny(out, seed=3, size=32, **{**SMALL, "train_per_class": 3})
    assert _tree(out) == first
    generate_tiny(out, seed=3, size=32, **SMALL)  # other parameters: regenerated, no stale files left
    assert len(list((out / "imagenet" / "train" / "disk").iterdir())) == 2
    assert set(_tree(out)) == set(json.loads((out / "manifest.json").read_text())["files"]) | {"manifest.json"}


@pytest.mark.parametrize("size", [31, 225, 64.0])
def test_size_out_of_range_fails_before_writing(tmp_path, size):
    with pytest.raises(ValueError, match="size"):
        generate_tiny(tmp_path / "x", size=size)
    assert not (tmp_path / "x").exists()


def test_refuses_to_replace_foreign_files(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "mine.png").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="photos"):
        generate_tiny(tmp_path, size=32, **SMALL)
    assert (tmp_path / "photos" / "mine.png").exists()


def test_cli(tmp_path, capsys):
    from gmae.cli import main

    out = tmp_path / "cli"
    args = ["data", "tiny", "--out", str(out), "--size", "32", "--seed", "5", "--train-per-class", "1",
            "--val-per-class", "1", "--coco-train", "1", "--coco-val", "1", "--bsds", "1", "--saliency", "1",
            "--photos", "1"]
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["params"]["size"] == 32
    with Image.open(next((out / "imagenet" / "train" / "star").iterdir())) as im:
        assert im.size == (32, 32)
    with pytest.raises(SystemExit) as e:
        main(["data", "tiny", "--out", str(out), "--size", "16"])
    assert e.value.code == 2 and "32..224" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- transforms


def test_eval_transform_matches_pil_reference(tiny_data):
    path = next((tiny_data / "photos").iterdir())
    img = Image.open(path).convert("RGB")
    x = eval_transform(32)(img)
    # Reference: bicubic resize of the 64 px side to int(32 * 256 / 224) = 36, centre crop 32, normalise.
    ref = np.asarray(img.resize((36, 36), Image.Resampling.BICUBIC), np.float32)[2:34, 2:34] / 255
    ref = (ref - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x.numpy(), ref.transpose(2, 0, 1), atol=1e-5)
    np.testing.assert_allclose(denormalize(x).permute(1, 2, 0).numpy(),
                               np.asarray(img.resize((36, 36), Image.Resampling.BICUBIC))[2:34, 2:34] / 255,
                               atol=1e-5)


def test_pretrain_transform_and_denormalize():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8))
    torch.manual_seed(0)
    x = pretrain_transform(48)(img)
    torch.manual_seed(0)
    assert x.shape == (3, 48, 48) and torch.equal(x, pretrain_transform(48)(img))
    d = denormalize(x)
    assert d.min() >= 0 and d.max() <= 1
    # Closed form: Normalize maps mean -> 0, so denormalize(0) is the mean; batch dims broadcast.
    z = denormalize(torch.zeros(2, 3, 4, 4))
    assert torch.allclose(z[1, :, 2, 2], torch.tensor(IMAGENET_MEAN))
    with pytest.raises(ValueError):
        denormalize(torch.zeros(4, 4))


# --------------------------------------------------------------------------------------- bad input


def _small_folder(tiny_data, dst, classes=("disk", "ring"), n=4):
    for c in classes:
        (dst / c).mkdir(parents=True)
        for p in sorted((tiny_data / "imagenet" / "train" / c).iterdir())[:n]:
            shutil.copy(p, dst / c / p.name)
    return dst


def test_image_folder_errors_name_the_path(tiny_data, tmp_path):
    with pytest.raises(FileNotFoundError, match=_match(tmp_path / "nope")):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no class folders in " + _match(tmp_path / "flat")):
        ImageFolderDataset(tmp_path / "flat")
    root = _small_folder(tiny_data, tmp_path / "f")
    (root / "star").mkdir()
    (root / "star" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=_match(root / "star")):
        ImageFolderDataset(root)


def test_truncated_and_corrupt_images_are_skipped_with_a_count(tiny_data, tmp_path):
    root = _small_folder(tiny_data, tmp_path / "f")
    ds = ImageFolderDataset(root)
    bad, garbage = Path(ds.samples[1][0]), Path(ds.samples[5][0])
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated JPEG
    garbage.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.warns(CorruptImageWarning, match=_match(bad)):
        img, label = ds[1]
    # Deterministic fallback: the next readable sample.
    nxt, nxt_label = Image.open(ds.samples[2][0]).convert("RGB"), ds.samples[2][1]
    assert label == nxt_label and np.array_equal(np.asarray(img), np.asarray(nxt))
    assert ds.num_skipped == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known bad file is skipped without warning again
        ds[1]
    with pytest.warns(CorruptImageWarning, match=_match(garbage)):
        items = [ds[i] for i in range(len(ds))]
    assert len(items) == len(ds) and ds.num_skipped == 2
    for p, _ in ds.samples:
        Path(p).write_bytes(b"")
    with pytest.warns(CorruptImageWarning), pytest.raises(RuntimeError, match="no readable image"):
        ds[0]


def test_bsds_errors(tiny_data, tmp_path):
    from scipy.io import savemat

    bad = tmp_path / "bad.mat"
    savemat(bad, {"seg": np.ones((3, 3))})
    with pytest.raises(ValueError, match=_match(bad) + ".*groundTruth"):
        load_bsds_ground_truth(bad)
    with pytest.raises(FileNotFoundError, match=_match(tmp_path / "nope")):
        BSDSDataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no BSDS images"):
        BSDSDataset(tmp_path)
    root = tmp_path / "b"
    shutil.copytree(tiny_data / "bsds500", root)
    victim = sorted((root / "groundTruth").iterdir())[2]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=_match(root / "images" / f"{victim.stem}.jpg")):
        BSDSDataset(root)


def test_saliency_errors(tiny_data, tmp_path):
    root = tmp_path / "s"
    shutil.copytree(tiny_data / "saliency", root)
    mask = root / "masks" / "sal_0003.png"
    Image.open(mask).resize((10, 12)).save(mask)
    ds = SaliencyDataset(root)
    with pytest.raises(ValueError, match=_match(mask)):
        ds[3]
    mask.unlink()
    with pytest.raises(FileNotFoundError, match=_match(root / "images" / "sal_0003.jpg")):
        SaliencyDataset(root)


def test_image_list_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=_match(tmp_path / "none")):
        ImageListDataset(tmp_path / "none")
    with pytest.raises(FileNotFoundError, match=_match(tmp_path / "gone.png")):
        ImageListDataset([tmp_path / "gone.png"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=_match(broken)):
        ImageListDataset([broken])[0]


def test_plain_imagenet_style(tmp_path, tiny_data):
    """The "plain" style: one dark grey shape on a light grey background; the other tasks are unchanged."""
    few = dict(train_per_class=2, val_per_class=1, coco_train=1, coco_val=1, bsds=1, saliency=1, photos=1)
    plain = generate_tiny(tmp_path / "plain", seed=0, size=64, imagenet_style="plain", **few)
    assert read_manifest(plain["root"])["params"]["imagenet_style"] == "plain"
    for path in sorted(plain["imagenet"].rglob("*.JPEG")):
        img = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert np.abs(img - img.mean(-1, keepdims=True)).max() <= 6  # grey (JPEG chroma noise only)
        grey = img.mean(-1)
        # a dark object (luminance <= 0.4) on a light background (>= 0.6) filling the corners
        assert np.percentile(grey, 5) < grey[:4, :4].mean() - 40 and grey[:4, :4].mean() >= 0.55 * 255
    cluttered = generate_tiny(tmp_path / "cluttered", seed=0, size=64, **few)
    assert "imagenet_style" not in read_manifest(cluttered["root"])["params"]  # older sets stay valid
    assert (plain["saliency"] / "masks").exists()
    with pytest.raises(ValueError, match="imagenet_style"):
        generate_tiny(tmp_path / "bad", imagenet_style="fancy", **few)
