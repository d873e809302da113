"""Tiny ViTDet Mask R-CNN for CPU smoke runs and CI on the tiny COCO-format set (`gmae data tiny`, 64 px).

The ViT-B config with a ViT that matches the tiny exported encoder (MaskedViTEncoder(img_size=64, patch_size=8,
embed_dim=192, depth=4, num_heads=3)): input 64 px, window 4 with global blocks 1 and 3, rel pos on, abs pos
from the 64 px pretraining grid with CLS. Patch 8 puts the pyramid (scales 4, 2, 1, 0.5 + max pool) at
strides 2..32, i.e. features p1..p5, so the RPN, anchors and poolers move down one level. Narrow heads
(64 channels), LSJ at 64 px with a milder scale range (0.5-1.5: 0.1 of 64 px leaves nothing to detect),
batch 4, 12 iterations on the CPU in float32. Layer decay 0.7 over 4 layers. Same code path as ViT-B.
Helper names start with "_" so LazyConfig.load does not keep them as config sections.
"""

from eval.coco.lazy_config import max_pool_top_block, vit_lr_decay

from .mask_rcnn_vitdet_b_100ep import L, ShapeSpec, T, dataloader, lr_multiplier, model, optimizer, train

SIZE = 64
WIDTH = 64

_net = model.backbone.net
_net.img_size = SIZE
_net.patch_size = 8
_net.embed_dim = 192
_net.depth = 4
_net.num_heads = 3
_net.window_size = 4
_net.window_block_indexes = [0, 2]
_net.pretrain_img_size = 64
model.backbone.out_channels = WIDTH
model.backbone.square_pad = SIZE
model.backbone.top_block = L(max_pool_top_block)(in_feature="p4")  # p4 -> p5

_rpn = model.proposal_generator
_rpn.in_features = ["p1", "p2", "p3", "p4", "p5"]
_rpn.head.in_channels = WIDTH
_rpn.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
_rpn.anchor_generator.strides = [2, 4, 8, 16, 32]
_rpn.batch_size_per_image = 64
_rpn.pre_nms_topk = [200, 100]
_rpn.post_nms_topk = [100, 50]

_heads = model.roi_heads
_heads.batch_size_per_image = 64
_heads.box_in_features = _heads.mask_in_features = ["p1", "p2", "p3", "p4"]
_heads.box_pooler.scales = _heads.mask_pooler.scales = [1.0 / 2, 1.0 / 4, 1.0 / 8, 1.0 / 16]
_heads.box_head.input_shape = L(ShapeSpec)(channels=WIDTH, height=7, width=7)
_heads.box_head.conv_dims = [WIDTH] * 4
_heads.box_head.fc_dims = [256]
_heads.box_predictor.input_shape = L(ShapeSpec)(channels=256)
_heads.box_predictor.test_topk_per_image = 20  # at most 6 objects per tiny image; keeps CPU inference short
_heads.mask_head.input_shape = L(ShapeSpec)(channels=WIDTH, width=14, height=14)
_heads.mask_head.conv_dims = [WIDTH] * 5
_heads.num_classes = 8  # the tiny set's shapes; `gmae eval coco` sets it from the data anyway

dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),
    L(T.ResizeScale)(min_scale=0.5, max_scale=1.5, target_height=SIZE, target_width=SIZE),
    L(T.FixedSizeCrop)(crop_size=[SIZE, SIZE], pad=False),
]
dataloader.train.mapper.instance_mask_format = "bitmask"  # the tiny set stores RLE masks
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 0
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=SIZE, max_size=SIZE)]
dataloader.test.num_workers = 0

optimizer.lr = 2e-4
optimizer.params.lr_factor_func = L(vit_lr_decay)(lr_decay_rate=0.7, num_layers=4)

train.max_iter = 12
train.reference_batch_size = 4
lr_multiplier.milestones = [9, 11]
lr_multiplier.warmup_iters = 2
train.eval_period = 0  # evaluate once, after the last iteration
train.checkpointer = dict(period=1000000, max_to_keep=1)
train.log_period = 4
train.amp.enabled = False
train.device = "cpu"

