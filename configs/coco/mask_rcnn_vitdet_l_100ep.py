"""ViTDet Mask R-CNN, ViT-L backbone, 100-epoch COCO schedule: the ViT-B config with ViTDet's ViT-L changes.

Width 1024, depth 24, 16 heads, drop path 0.4, global attention in blocks 5, 11, 17, 23, layer decay 0.8
over 24 layers (ViTDet's mask_rcnn_vitdet_l_100ep); data, heads and schedule as ViT-B.
"""

from eval.coco.lazy_config import vit_lr_decay

from .mask_rcnn_vitdet_b_100ep import L, dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.net.embed_dim = 1024
model.backbone.net.depth = 24
model.backbone.net.num_heads = 16
model.backbone.net.drop_path_rate = 0.4
model.backbone.net.window_block_indexes = [i for i in range(24) if i not in (5, 11, 17, 23)]
optimizer.params.lr_factor_func = L(vit_lr_decay)(lr_decay_rate=0.8, num_layers=24)

