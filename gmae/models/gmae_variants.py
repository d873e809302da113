"""Registered GMAE sizes. ViT-B/16 is the paper's; ViT-L/16 for users who scale up; tiny for CPU runs."""

from __future__ import annotations

from gmae.models.gmae import GMAE
from gmae.models.registry import register_model


@register_model
def gmae_vit_base_patch16(**kw) -> GMAE:
    args = dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, num_gaussians=256)
    return GMAE(**{**args, **kw})


@register_model
def gmae_vit_large_patch16(**kw) -> GMAE:
    args = dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16,
                decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, num_gaussians=256)
    return GMAE(**{**args, **kw})


@register_model
def gmae_vit_tiny_patch8(**kw) -> GMAE:
    """CPU-sized GMAE for the tiny data (64 px, 8 x 8 patches): not a paper model."""
    args = dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3,
                decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, num_gaussians=96)
    return GMAE(**{**args, **kw})
