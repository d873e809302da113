"""COCO detection (eval/coco): the ViTDet configs, the encoder -> detectron2 ViT hand-over, the batch rule,
the wheel repacking, the evaluator's sanity and a tiny CPU train + eval run.

Tests that need detectron2 skip (with the install command as the reason) only when it is not importable; CI
installs it with scripts/install_detectron2.sh.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

# numpy 2 notes that torch tensors' __array__ lacks a copy keyword (raised inside detectron2 / pycocotools)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

HAS_D2 = importlib.util.find_spec("detectron2") is not None
needs_d2 = pytest.mark.skipif(not HAS_D2, reason="detectron2 is not installed (bash scripts/install_detectron2.sh)")



# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coco_dir(tiny_data):
    return Path(tiny_data) / "coco"


def _tiny_cfg():
    from eval.coco.lazy_config import load_config

    return load_config("mask_rcnn_vitdet_tiny")


# ----------------------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------------------

@needs_d2
def test_vit_b_config_has_every_spec_value():
    from detectron2.config import instantiate
    from detectron2.data import transforms as T
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool
    from detectron2.modeling.backbone.vit import SimpleFeaturePyramid, ViT
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead, MaskRCNNConvUpsampleHead

    from eval.coco.lazy_config import load_config

    cfg = load_config("mask_rcnn_vitdet_b_100ep")
    bb, net = cfg.model.backbone, cfg.model.backbone.net
    assert bb._target_ is SimpleFeaturePyramid and net._target_ is ViT
    assert (net.img_size, net.patch_size, net.embed_dim, net.depth, net.num_heads) == (1024, 16, 768, 12, 12)
    assert net.drop_path_rate == 0.1 and net.window_size == 14 and net.use_rel_pos and net.use_abs_pos
    global_blocks = [i for i in range(12) if i not in net.window_block_indexes]
    assert global_blocks == [2, 5, 8, 11]
    assert net.pretrain_img_size == 224 and net.pretrain_use_cls_token
    assert instantiate(net.norm_layer)(8).eps == 1e-6
    assert bb.out_channels == 256 and list(bb.scale_factors) == [4.0, 2.0, 1.0, 0.5]
    assert bb.top_block._target_ is LastLevelMaxPool and bb.norm == "LN" and bb.square_pad == 1024
    rpn, heads = cfg.model.proposal_generator, cfg.model.roi_heads
    assert list(rpn.head.conv_dims) == [-1, -1]  # 2 convs
    assert list(rpn.in_features) == ["p2", "p3", "p4", "p5", "p6"]
    assert heads.box_head._target_ is FastRCNNConvFCHead
    assert list(heads.box_head.conv_dims) == [256] * 4 and list(heads.box_head.fc_dims) == [1024]
    assert heads.box_head.conv_norm == "LN"
    assert heads.mask_head._target_ is MaskRCNNConvUpsampleHead and heads.mask_head.conv_norm == "LN"
    assert heads.num_classes == 80
    # data: LSJ train, ResizeShortestEdge 1024 test, batch 64
    train_augs = cfg.dataloader.train.mapper.augmentations
    assert [a._target_ for a in train_augs] == [T.RandomFlip, T.ResizeScale, T.FixedSizeCrop]
    assert train_augs[0].horizontal
    assert (train_augs[1].min_scale, train_augs[1].max_scale) == (0.1, 2.0)
    assert (train_augs[1].target_height, train_augs[1].target_width) == (1024, 1024)
    assert list(train_augs[2].crop_size) == [1024, 1024]
    assert cfg.dataloader.train.total_batch_size == 64 and cfg.train.reference_batch_size == 64
    (test_aug,) = cfg.dataloader.test.mapper.augmentations
    assert test_aug._target_ is T.ResizeShortestEdge and test_aug.short_edge_length == 1024
    assert cfg.dataloader.evaluator.use_fast_impl is False
    # optimisation
    assert cfg.optimizer._target_ is torch.optim.AdamW
    assert cfg.optimizer.lr == 1e-4 and cfg.optimizer.weight_decay == 0.1
    params = cfg.optimizer.params
    assert params.weight_decay_norm == 0.0 and dict(params.overrides) == {"pos_embed": {"weight_decay": 0.0}}
    assert (params.lr_factor_func.lr_decay_rate, params.lr_factor_func.num_layers) == (0.7, 12)
    decay = instantiate(params.lr_factor_func)
    assert decay("backbone.net.pos_embed") == pytest.approx(0.7 ** 13)
    assert decay("backbone.net.blocks.4.attn.qkv.weight") == pytest.approx(0.7 ** 8)
    assert decay("roi_heads.box_head.fc1.weight") == 1.0
    assert cfg.train.max_iter == 184375 and cfg.train.amp.enabled
    sched = cfg.lr_multiplier
    assert list(sched.milestones) == [163889, 177546] and sched.warmup_iters == 250
    assert sched.warmup_factor == 0.001 and sched.gamma == 0.1
    # the instantiated schedule, against its closed form at chosen iterations
    mult = instantiate(cfg.lr_multiplier)
    n = cfg.train.max_iter
    for it, want in [(0, 0.001), (125, 0.001 + 0.999 * 0.5), (250, 1.0), (163888, 1.0), (163889, 0.1),
                     (177545, 0.1), (177546, 0.01), (184374, 0.01)]:
        assert mult(it / n) == pytest.approx(want, rel=1e-6), it


@needs_d2
def test_vit_l_config():
    from detectron2.config import instantiate

    from eval.coco.lazy_config import load_config

    cfg = load_config("mask_rcnn_vitdet_l_100ep")
    net = cfg.model.backbone.net
    assert (net.embed_dim, net.depth, net.num_heads, net.drop_path_rate) == (1024, 24, 16, 0.4)
    assert [i for i in range(24) if i not in net.window_block_indexes] == [5, 11, 17, 23]
    decay = instantiate(cfg.optimizer.params.lr_factor_func)
    assert decay("backbone.net.blocks.0.mlp.fc1.weight") == pytest.approx(0.8 ** 24)
    assert cfg.train.max_iter == 184375 and cfg.dataloader.train.total_batch_size == 64


@needs_d2
def test_optimizer_groups_decay_and_layer_lr():
    """Instantiated on the tiny model: no weight decay on norms and pos_embed, lr x 0.7^(L+1-layer)."""
    from detectron2.config import instantiate

    cfg = _tiny_cfg()
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    opt = instantiate(cfg.optimizer)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    base = cfg.optimizer.lr

    def group(name):
        return group_of[id(named[name])]

    assert group("backbone.net.pos_embed")["weight_decay"] == 0.0
    assert group("backbone.net.blocks.1.norm1.weight")["weight_decay"] == 0.0
    assert group("backbone.net.blocks.1.attn.qkv.weight")["weight_decay"] == 0.1
    assert group("backbone.net.blocks.1.attn.qkv.weight")["lr"] == pytest.approx(base * 0.7 ** 3)
    assert group("backbone.net.patch_embed.proj.weight")["lr"] == pytest.approx(base * 0.7 ** 5)
    assert group("roi_heads.box_predictor.cls_score.weight")["lr"] == pytest.approx(base)


@needs_d2
def test_batch_rule_scales_lr_and_every_iteration_count():
    from eval.coco.lazy_config import ITERATION_KEYS, load_config, scale_to_batch

    cfg = load_config("mask_rcnn_vitdet_b_100ep")
    same = scale_to_batch(copy.deepcopy(cfg), 64)
    assert same["factor"] == 1.0 and "optimizer.lr" not in same
    out = scale_to_batch(cfg, 8)  # 8 GPUs x 1 image
    assert cfg.dataloader.train.total_batch_size == 8
    assert cfg.optimizer.lr == pytest.approx(1e-4 / 8)
    assert cfg.train.max_iter == 184375 * 8
    assert list(cfg.lr_multiplier.milestones) == [163889 * 8, 177546 * 8]
    assert cfg.lr_multiplier.warmup_iters == 2000
    assert cfg.train.eval_period == 40000 and cfg.train.checkpointer.period == 40000
    assert set(ITERATION_KEYS) <= set(out)
    # images seen stay the same
    assert cfg.train.max_iter * 8 == 184375 * 64


@needs_d2
def test_unknown_override_and_bad_data_are_refused(tmp_path, tiny_encoder):
    from eval.coco.lazy_config import load_config
    from eval.coco.train import RunSpec, check_inputs

    with pytest.raises(KeyError, match="train.max_iters"):
        load_config("mask_rcnn_vitdet_tiny", ["train.max_iters=3"])
    (tmp_path / "annotations").mkdir()
    spec = RunSpec(config="mask_rcnn_vitdet_tiny", coco=str(tmp_path), checkpoint=str(tiny_encoder["export"]),
                   out_dir=str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        check_inputs(spec)
    ok = dict(config="mask_rcnn_vitdet_tiny", coco=str(tmp_path), checkpoint=str(tiny_encoder["export"]),
              out_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="train.amp.enabled"):
        check_inputs(RunSpec(**ok, overrides=["train.amp.enabled=True"]))
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        check_inputs(RunSpec(**ok, num_gpus=3))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            check_inputs(RunSpec(**dict(ok, config="mask_rcnn_vitdet_b_100ep")))


@needs_d2
def test_vit_b_train_loader_on_polygon_annotations(coco_dir, tmp_path):
    """The real-COCO path of the ViT-B config (polygon masks, LSJ, FixedSizeCrop, boxes recomputed from the
    cropped masks), here at 64 px: every box must be the extent of its cropped polygon mask."""
    from detectron2.config import instantiate
    from detectron2.structures import PolygonMasks

    from eval.coco.data import register_coco
    from eval.coco.lazy_config import load_config

    root = tmp_path / "coco_poly"
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (root / split).symlink_to(coco_dir / split)
        doc = json.loads((coco_dir / "annotations" / f"instances_{split}.json").read_text())
        for a in doc["annotations"]:
            x, y, w, h = a["bbox"]
            a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    info = register_coco(root)
    assert not info["rle_masks"]
    cfg = load_config("mask_rcnn_vitdet_b_100ep", [
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        "dataloader.train.mapper.augmentations.1.target_height=64",
        "dataloader.train.mapper.augmentations.1.target_width=64",
        "dataloader.train.mapper.augmentations.2.crop_size=[64,64]"])
    assert cfg.dataloader.train.mapper.instance_mask_format == "polygon"
    batch = next(iter(instantiate(cfg.dataloader.train)))
    assert len(batch) == 2 and sum(len(item["instances"]) for item in batch) > 0
    for item in batch:
        h, w = item["image"].shape[1:]
        assert h <= 64 and w <= 64
        inst = item["instances"]
        assert isinstance(inst.gt_masks, PolygonMasks)
        torch.testing.assert_close(inst.gt_boxes.tensor, inst.gt_masks.get_bounding_boxes().tensor)
        assert all(x1 <= w + 1e-4 and y1 <= h + 1e-4 for x1, y1 in inst.gt_boxes.tensor[:, 2:].tolist())


# ----------------------------------------------------------------------------------------------------------
# the encoder -> detectron2 ViT
# ----------------------------------------------------------------------------------------------------------

@needs_d2
def test_round_trip_export_to_detectron2_vit_tensors_identical(tiny_encoder):
    from detectron2.config import instantiate

    from eval.coco.checkpoint import encoder_to_detectron2, load_backbone
    from gmae.engine.checkpoint import load_encoder_weights as load_encoder

    export, arch = load_encoder(tiny_encoder["export"])
    from_train, _ = load_encoder(tiny_encoder["train_ckpt"])
    assert arch["embed_dim"] == 192 and arch["patch_size"] == 8
    converted = encoder_to_detectron2(export)
    assert set(converted) == {"backbone.net." + k for k in export if k not in ("cls_token", "norm.weight",
                                                                                 "norm.bias")}
    model = instantiate(_tiny_cfg().model)
    report = load_backbone(model, export, source="export")
    net_state = model.backbone.net.state_dict()
    # every tensor of the export that ViTDet uses is in the ViT, bit for bit; the training checkpoint agrees
    for k, v in export.items():
        if k in ("cls_token", "norm.weight", "norm.bias"):
            continue
        assert torch.equal(net_state[k], v), k
        assert torch.equal(net_state[k], from_train[k]), k
    # what is not from the encoder: the zero-initialised rel-pos tables only
    not_from_encoder = sorted(set(net_state) - set(export))
    assert not_from_encoder and all(".attn.rel_pos_" in k for k in not_from_encoder)
    assert all(float(net_state[k].abs().max()) == 0.0 for k in not_from_encoder)
    assert report["loaded"] == len(converted) and report["dropped"] == ["cls_token", "norm.bias", "norm.weight"]


@needs_d2
def test_detectron2_vit_computes_what_the_encoder_blocks_compute(tiny_encoder):
    """Same names must mean the same maths: a global-attention, no-rel-pos detectron2 ViT loaded from the
    export equals the encoder's own timm blocks run on the patch tokens (no CLS, no final norm)."""
    from detectron2.modeling.backbone.vit import ViT

    from eval.coco.checkpoint import load_backbone
    from gmae.engine.checkpoint import load_encoder_weights as load_encoder
    from eval.coco.lazy_config import layer_norm

    export, _ = load_encoder(tiny_encoder["export"])
    vit = ViT(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3, norm_layer=layer_norm(1e-6),
              window_size=0, use_rel_pos=False, pretrain_img_size=64).eval()
    load_backbone(vit, export, source="export", prefix="")
    enc = tiny_encoder["module"]
    imgs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = vit(imgs)["last_feat"]  # [B, D, 8, 8]
        x = enc.patch_embed(imgs) + enc.pos_embed[:, 1:]
        for blk in enc.blocks:
            x = blk(x)
    want = x.transpose(1, 2).reshape(2, 192, 8, 8)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@needs_d2
def test_checkpoint_missing_backbone_keys_is_refused(tiny_encoder, tmp_path, coco_dir):
    from detectron2.config import instantiate

    from eval.coco.checkpoint import BackboneLoadError, load_backbone
    from gmae.engine.checkpoint import load_encoder_weights as load_encoder
    from eval.coco.train import RunSpec, run_coco

    export, arch = load_encoder(tiny_encoder["export"])
    partial = {k: v for k, v in export.items() if not k.startswith("blocks.2.")}
    model = instantiate(_tiny_cfg().model)
    with pytest.raises(BackboneLoadError, match=r"backbone weights not in the checkpoint: .*blocks\.2\."):
        load_backbone(model, partial, source="partial")
    # a pos_embed of another pretraining grid: detectron2 would only warn; we refuse
    wrong_grid = dict(export, pos_embed=torch.zeros(1, 1 + 4 * 4, 192))
    with pytest.raises(BackboneLoadError, match="shape mismatch.*pos_embed"):
        load_backbone(model, wrong_grid, source="wrong_grid")
    # end to end through the command's entry: refused before any training step or output
    bad = tmp_path / "partial.pth"
    torch.save({"model": partial, "encoder_arch": arch}, bad)
    out = tmp_path / "run"
    spec = RunSpec(config="mask_rcnn_vitdet_tiny", coco=str(coco_dir), checkpoint=str(bad), out_dir=str(out))
    with pytest.raises(BackboneLoadError, match=str(bad)):
        run_coco(spec)
    assert not (out / "model_final.pth").exists() and not (out / "records.json").exists()


@needs_d2
def test_encoder_of_another_shape_is_refused_before_building(tiny_encoder, tmp_path, coco_dir):
    from eval.coco.checkpoint import BackboneLoadError
    from eval.coco.train import RunSpec, check_inputs

    spec = RunSpec(config="mask_rcnn_vitdet_tiny", coco=str(coco_dir), checkpoint=str(tiny_encoder["export"]),
                   out_dir=str(tmp_path / "o"), overrides=["model.backbone.net.pretrain_img_size=224"])
    with pytest.raises(BackboneLoadError, match="img_size=64 but model.backbone.net.pretrain_img_size=224"):
        check_inputs(spec)


# ----------------------------------------------------------------------------------------------------------
# evaluator sanity
# ----------------------------------------------------------------------------------------------------------

def _gt_as_detections(ann_file):
    doc = json.loads(Path(ann_file).read_text())
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "segmentation": a["segmentation"], "score": 1.0} for a in doc["annotations"]]


def _cocoeval(ann_file, dets, iou_type):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_perfect_predictions_give_ap_100_with_pycocotools(coco_dir):
    ann = coco_dir / "annotations" / "instances_val2017.json"
    dets = _gt_as_detections(ann)
    for iou_type in ("bbox", "segm"):
        assert _cocoeval(ann, dets, iou_type)[0] == pytest.approx(1.0)
    # negative control: every box shifted by half its width is no longer a match at IoU >= 0.5
    shifted = [dict(d, bbox=[d["bbox"][0] + d["bbox"][2] / 2, *d["bbox"][1:]]) for d in dets]
    for d in shifted:
        d.pop("segmentation")
    assert _cocoeval(ann, shifted, "bbox")[0] < 0.5


@needs_d2
def test_perfect_predictions_give_ap_100_through_detectron2_evaluator(coco_dir, tmp_path):
    """Our registration (non-contiguous category ids) + detectron2's COCOEvaluator on GT-as-detections."""
    import pycocotools.mask as mask_util
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import COCOEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    from eval.coco.data import DATASET_NAMES, register_coco

    info = register_coco(coco_dir)
    name = DATASET_NAMES["val2017"]
    dicts = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    assert info["num_classes"] == len(meta.thing_classes) == 8
    # COCO's sparse ids map to contiguous labels in id order
    assert sorted(meta.thing_dataset_id_to_contiguous_id.items()) == [(i, k) for k, i in enumerate(
        sorted(meta.thing_dataset_id_to_contiguous_id))]
    evaluator = COCOEvaluator(name, output_dir=str(tmp_path), use_fast_impl=False, distributed=False)
    evaluator.reset()
    for rec in dicts:
        h, w = rec["height"], rec["width"]
        anns = [a for a in rec["annotations"] if not a.get("iscrowd", 0)]
        inst = Instances((h, w))
        inst.pred_boxes = Boxes(torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                              for a in anns], dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        inst.pred_masks = torch.from_numpy(np.stack([mask_util.decode(a["segmentation"]) for a in anns])
                                           if anns else np.zeros((0, h, w), np.uint8)).bool()
        evaluator.process([{"image_id": rec["image_id"], "height": h, "width": w}], [{"instances": inst}])
    results = evaluator.evaluate()
    for task in ("bbox", "segm"):
        assert results[task]["AP"] == pytest.approx(100.0)
        assert results[task]["AP50"] == pytest.approx(100.0)


# ----------------------------------------------------------------------------------------------------------
# tiny train + eval, end to end
# ----------------------------------------------------------------------------------------------------------

@needs_d2
def test_tiny_train_and_eval_appends_ap_records(tiny_encoder, coco_dir, tmp_path, capsys):
    """`gmae eval coco` with the tiny preset on a training checkpoint (the encoder is exported on the fly)."""
    from gmae.cli import main
    from gmae.results import ResultsStore

    out, store = tmp_path / "run", tmp_path / "store"
    code = main(["eval", "coco", "--checkpoint", str(tiny_encoder["train_ckpt"]), "--coco", str(coco_dir),
                 "--config", "mask_rcnn_vitdet_tiny", "--out", str(out), "--results", str(store),
                 "train.max_iter=8", "lr_multiplier.milestones=[6,7]",
                 # no score threshold: the barely trained model still emits detections to re-score
                 "model.roi_heads.box_predictor.test_score_thresh=0.0"])
    assert code == 0 and "box AP" in capsys.readouterr().out
    records = ResultsStore(store).read()
    want = {f"{m}_{t}" for m in ("ap", "ap50", "ap75", "aps", "apm", "apl") for t in ("box", "mask")}
    assert {r["metric"] for r in records} == want and len(records) == 12
    by_metric = {r["metric"]: r for r in records}
    for r in records:
        assert r["protocol"] == "coco" and r["config"]["max_iter"] == 8 and r["config"]["batch"] == 4
        assert r["value"] is None or 0.0 <= r["value"] <= 100.0
    assert by_metric["ap_box"]["value"] is not None and by_metric["ap_mask"]["value"] is not None
    # the recorded AP is what pycocotools gives on the dumped detections (independent recomputation)
    dets = json.loads((out / "inference" / "coco_instances_results.json").read_text())
    ann = coco_dir / "annotations" / "instances_val2017.json"
    assert len(dets) > 0
    for task, iou_type in (("box", "bbox"), ("mask", "segm")):
        stats = _cocoeval(ann, dets, iou_type)
        assert by_metric[f"ap_{task}"]["value"] == pytest.approx(100 * max(stats[0], 0.0), abs=1e-6)
        assert by_metric[f"ap50_{task}"]["value"] == pytest.approx(100 * max(stats[1], 0.0), abs=1e-6)
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert losses and all(math.isfinite(v) for v in losses)


@needs_d2
def test_resume_continues_from_the_last_checkpoint(tiny_encoder, coco_dir, tmp_path):
    from eval.coco.train import RunSpec, run_coco

    out = tmp_path / "run"
    common = dict(config="mask_rcnn_vitdet_tiny", coco=str(coco_dir), checkpoint=str(tiny_encoder["export"]),
                  out_dir=str(out))
    run_coco(RunSpec(**common, overrides=["train.max_iter=2", "lr_multiplier.milestones=[1]", "train.log_period=1"]))
    first = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert first["iteration"] == 1
    run_coco(RunSpec(**common, overrides=["train.max_iter=4", "lr_multiplier.milestones=[3]", "train.log_period=1"],
                     resume=True))
    logged = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    # iterations 0, 1 from the first run, then 2, 3 after resuming (not 0 again)
    assert [m["iteration"] for m in logged if "total_loss" in m] == [0, 1, 2, 3]
    second = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert second["iteration"] == 3
    assert "resuming from" in (out / "log.txt").read_text()


# ----------------------------------------------------------------------------------------------------------
# install: the wheel repacking, and the command line
# ----------------------------------------------------------------------------------------------------------

def _fake_sal_wheel(path: Path) -> None:
    info = "sal_detectron2-0.7.2.dist-info/"
    files = {
        "detectron2/__init__.py": b"__version__ = '0.7.2'\n",
        "detectron2/modeling/backbone/vit.py": b"class ViT: pass\n",
        "detectron2/_C.cpython-310-x86_64-linux-gnu.so": b"\x7fELF binary",
        "tools/__init__.py": b"",
        "tools/train_net.py": b"print('tool')\n",
        info + "METADATA": ("Metadata-Version: 2.1\nName: sal-detectron2\nVersion: 0.7.2\n"
                            "Requires-Dist: Pillow>=7.1\nRequires-Dist: numpy<2\nRequires-Dist: black\n"
                            "Requires-Dist: hydra-core>=1.1\nRequires-Dist: black==23.3.0; extra == \"dev\"\n"
                            ).encode(),
        info + "WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp310-cp310-linux_x86_64\n",
        info + "top_level.txt": b"detectron2\ntools\n",
        info + "RECORD": b"",
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def test_repack_wheel_drops_binary_and_tools_and_rebuilds_record(tmp_path):
    from eval.coco.install import repack_wheel

    src = tmp_path / "sal_detectron2-0.7.2-cp310-none-any.whl"
    _fake_sal_wheel(src)
    with pytest.raises(ValueError, match="sha256"):
        repack_wheel(src, tmp_path / "out")
    out = repack_wheel(src, tmp_path / "out", check_hash=False)
    assert out.name == "sal_detectron2-0.7.2+purepy-py3-none-any.whl"
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        info = "sal_detectron2-0.7.2+purepy.dist-info/"
        assert "detectron2/modeling/backbone/vit.py" in names and "detectron2/__init__.py" in names
        assert not any(n.startswith("tools/") or "_C." in n for n in names)
        assert z.read("detectron2/modeling/backbone/vit.py") == b"class ViT: pass\n"
        wheel = z.read(info + "WHEEL").decode()
        assert "Tag: py3-none-any" in wheel and "Root-Is-Purelib: true" in wheel
        meta = z.read(info + "METADATA").decode().splitlines()
        assert "Version: 0.7.2+purepy" in meta and "Requires-Dist: numpy<2" not in meta
        assert "Requires-Dist: black" not in meta and 'Requires-Dist: black==23.3.0; extra == "dev"' in meta
        assert "Requires-Dist: hydra-core>=1.1" in meta and any(m.startswith("Requires-Dist: fvcore") for m in meta)
        assert z.read(info + "top_level.txt").decode().split() == ["detectron2"]
        rows = [r.split(",") for r in z.read(info + "RECORD").decode().splitlines()]
        assert {r[0] for r in rows} == names
        for name, digest, size in rows:
            if name.endswith("RECORD"):
                assert digest == "" and size == ""
                continue
            data = z.read(name)
            want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == want and int(size) == len(data), name


def test_cli_help_needs_no_detectron2(capsys):
    from gmae.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "coco", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--checkpoint" in text and "--num-gpus" in text and "B / 64" in text


def test_detection_extra_matches_the_install_script_requirements():
    import tomllib
    from pathlib import Path

    from eval.coco.install import RUNTIME_REQUIREMENTS

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["detection"] == list(RUNTIME_REQUIREMENTS)
