"""ViTDet Mask R-CNN, ViT-B backbone, 100-epoch COCO schedule (detectron2 LazyConfig, written for gmae).

Values: ../../shared/spec/protocols.md "COCO detection" (ViTDet's mask_rcnn_vitdet_b_100ep as published).
Backbone ViT: img 1024, patch 16, width 768, depth 12, 12 heads, drop path 0.1, window attention 14 except the
global blocks 2, 5, 8, 11, relative position on, absolute position from the 224 pretraining grid with CLS.
SimpleFeaturePyramid: 256 channels, scales 4, 2, 1, 0.5 + LastLevelMaxPool -> p2..p6, LN, square pad 1024.
Heads: Mask R-CNN FPN with a 2-conv RPN, 4conv1fc box head with LN, mask head with LN.
Data: LSJ (flip, ResizeScale 0.1-2.0 of 1024, FixedSizeCrop 1024), batch 64; test ResizeShortestEdge 1024.
Optimiser: AdamW lr 1e-4, wd 0.1 (0 on norms and pos_embed), layer decay 0.7; 184,375 iterations,
x0.1 at 163,889 and 177,546, linear warmup 250 from 0.001; AMP.
The data set names are registered by ``gmae eval coco --coco DIR`` (eval/coco/data.py).
"""

from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, build_detection_train_loader, \
    get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.vit import SimpleFeaturePyramid, ViT
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers, MaskRCNNConvUpsampleHead, \
    StandardROIHeads
from detectron2.solver.build import get_default_optimizer_params
from torch.optim import AdamW

from eval.coco.lazy_config import layer_norm, vit_lr_decay, warmup_multistep

IMAGE_SIZE = 1024

model = L(GeneralizedRCNN)(
    backbone=L(SimpleFeaturePyramid)(
        net=L(ViT)(
            img_size=IMAGE_SIZE,
            patch_size=16,
            embed_dim=768,
            depth=12,
            num_heads=12,
            mlp_ratio=4.0,
            qkv_bias=True,
            drop_path_rate=0.1,
            norm_layer=L(layer_norm)(eps=1e-6),
            window_size=14,
            # every block but the global ones 2, 5, 8, 11
            window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],
            residual_block_indexes=[],
            use_rel_pos=True,
            use_abs_pos=True,
            pretrain_img_size=224,
            pretrain_use_cls_token=True,
            out_feature="last_feat",
        ),
        in_feature="${.net.out_feature}",
        out_channels=256,
        scale_factors=[4.0, 2.0, 1.0, 0.5],
        top_block=L(LastLevelMaxPool)(),
        norm="LN",
        square_pad=IMAGE_SIZE,
    ),
    proposal_generator=L(RPN)(
        in_features=["p2", "p3", "p4", "p5", "p6"],
        head=L(StandardRPNHead)(in_channels=256, num_anchors=3, conv_dims=[-1, -1]),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=[2000, 1000],
        post_nms_topk=[1000, 1000],
        nms_thresh=0.7,
    ),
    roi_heads=L(StandardROIHeads)(
        num_classes=80,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
        box_in_features=["p2", "p3", "p4", "p5"],
        box_pooler=L(ROIPooler)(
            output_size=7,
            scales=[1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32],
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=L(ShapeSpec)(channels=256, height=7, width=7),
            conv_dims=[256, 256, 256, 256],
            fc_dims=[1024],
            conv_norm="LN",
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels=1024),
            test_score_thresh=0.05,
            box2box_transform=L(Box2BoxTransform)(weights=[10, 10, 5, 5]),
            num_classes="${..num_classes}",
        ),
        mask_in_features=["p2", "p3", "p4", "p5"],
        mask_pooler=L(ROIPooler)(
            output_size=14,
            scales=[1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32],
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
        ),
        mask_head=L(MaskRCNNConvUpsampleHead)(
            input_shape=L(ShapeSpec)(channels=256, width=14, height=14),
            num_classes="${..num_classes}",
            conv_dims=[256, 256, 256, 256, 256],
            conv_norm="LN",
        ),
    ),
    # ImageNet statistics in RGB order (the MAE / GMAE encoders were pretrained on RGB input)
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
)

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="gmae_coco_train2017"),
    mapper=L(DatasetMapper)(
        is_train=True,
        # large-scale jitter
        augmentations=[
            L(T.RandomFlip)(horizontal=True),
            L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE),
            L(T.FixedSizeCrop)(crop_size=[IMAGE_SIZE, IMAGE_SIZE], pad=False),
        ],
        image_format="RGB",
        use_instance_mask=True,
        instance_mask_format="polygon",
        recompute_boxes=True,
    ),
    total_batch_size=64,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="gmae_coco_val2017", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=IMAGE_SIZE)],
        image_format="RGB",
    ),
    num_workers=4,
)
# official pycocotools COCOeval (the fast C++ one needs detectron2._C)
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", use_fast_impl=False)

optimizer = L(AdamW)(
    params=L(get_default_optimizer_params)(
        # model: filled in at run time
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        lr_factor_func=L(vit_lr_decay)(lr_decay_rate=0.7, num_layers=12),
        overrides={"pos_embed": {"weight_decay": 0.0}},
    ),
    lr=1e-4,
    betas=[0.9, 0.999],
    weight_decay=0.1,
)

lr_multiplier = L(warmup_multistep)(
    max_iter="${train.max_iter}",
    milestones=[163889, 177546],
    warmup_iters=250,
    warmup_factor=0.001,
    gamma=0.1,
)

train = dict(
    output_dir="./output",
    init_checkpoint="",  # the encoder comes from --checkpoint (eval/coco/checkpoint.py)
    max_iter=184375,
    # the batch the lr and iteration counts above are for (64 GPUs x 1 image); eval/coco/lazy_config.py
    reference_batch_size=64,
    amp=dict(enabled=True),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=True),
    checkpointer=dict(period=5000, max_to_keep=100),
    eval_period=5000,
    log_period=20,
    device="cuda",
    seed=0,
)
