"""The MAE baseline (He et al. 2022): GMAE's encoder and masking, MAE's mask-token decoder and pixel loss.

Data path: image -> patches / random mask -> the shared encoder (visible tokens + CLS) -> Linear(D -> 512)
-> mask tokens fill the masked positions, unshuffle -> + fixed sin-cos decoder position embedding ->
8 blocks x 512 x 16 heads -> LayerNorm -> Linear(512 -> p*p*3) per patch -> per-patch MSE on masked patches.

Training uses the same engine, data and masking as GMAE (``gmae.engine.train``); only the decoder and the
loss target differ. Targets are the input patches in ImageNet-normalised pixel space, as in MAE.

``loss_type`` (the shared ``model.loss_type`` config key) maps onto MAE's flags:
  "masked"       MAE with ``norm_pix_loss=False``: plain normalised pixels, masked patches only
  "masked_norm"  MAE with ``norm_pix_loss=True``: per-patch (x - mean) / sqrt(var + 1e-6), unbiased var
  "all"          loss on every patch (not an MAE setting; kept for symmetry with GMAE's ablation)

Parameter names equal the official MAE repository's (``decoder_embed``, ``mask_token``,
``decoder_pos_embed``, ``decoder_blocks.*``, ``decoder_norm``, ``decoder_pred``) under ``decoder.``, and the
encoder's under ``encoder.``: converting to and from the released checkpoints is a prefix map
(:mod:`gmae.models.mae_checkpoint`). To start from released weights, pass ``official_checkpoint=PATH`` to the
constructor (in a pretrain config: ``model.kwargs: {official_checkpoint: PATH}``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from gmae.models.base import MaskedAutoencoder, imagenet_denormalize
from gmae.models.registry import register_model
from gmae.models.vit import (VIT_SIZES, MaskedViTEncoder, decoder_blocks, init_mae_weights, patchify,
                             sincos_pos_embed_2d, unpatchify)

NORM_PIX_EPS = 1e-6  # MAE's norm_pix_loss: (x - mean) / (var + 1e-6) ** 0.5


class PixelDecoder(nn.Module):
    """MAE's decoder: mask tokens at the masked positions, transformer blocks, a per-patch pixel head."""

    def __init__(self, num_patches: int, grid_size: int, patch_size: int, in_chans: int = 3,
                 embed_dim: int = 768, decoder_dim: int = 512, depth: int = 8, num_heads: int = 16,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_dim), requires_grad=False)
        self.decoder_blocks = decoder_blocks(decoder_dim, depth, num_heads, mlp_ratio)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size * patch_size * in_chans)
        pe = sincos_pos_embed_2d(decoder_dim, grid_size, cls_token=True)
        self.decoder_pos_embed.data.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        # MAE's init: xavier Linear (decoder_pred included), zero biases, unit LayerNorm, tokens N(0, 0.02)
        self.apply(init_mae_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent [B, 1 + K, D] (CLS first), ids_restore [B, L] -> patch predictions [B, L, p*p*C].

        Row l of the output is patch l of the image in row-major order (visible and masked alike).
        """
        x = self.decoder_embed(latent)
        b, n_vis, d = x.shape
        n = ids_restore.shape[1]
        # append one mask token per masked patch, then undo the shuffle so token l sits at patch l
        tokens = torch.cat([x[:, 1:, :], self.mask_token.to(x.dtype).expand(b, n + 1 - n_vis, d)], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        # row 0 of the decoder position embedding is zero: CLS gets no position
        x = torch.cat([x[:, :1, :], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x)[:, 1:, :]


class MAE(MaskedAutoencoder):
    """Masked Autoencoder. ``forward`` returns {"loss", "patches", "mask", "latent"}; ``patches`` are in the
    loss's space (normalised pixels, or norm-pix units when ``loss_type="masked_norm"``)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, mlp_ratio: float = 4.0, mask_ratio: float = 0.75,
                 loss_type: str = "masked", official_checkpoint: str | None = None):
        encoder = MaskedViTEncoder(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio)
        super().__init__(encoder, mask_ratio, loss_type)
        if in_chans != 3:
            raise ValueError(f"MAE reconstructs RGB images; in_chans must be 3, got {in_chans}")
        self.decoder = PixelDecoder(encoder.num_patches, encoder.grid_size, patch_size, in_chans, embed_dim,
                                    decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio)
        if official_checkpoint:
            # start from released MAE weights (encoder-only or _full); see gmae.models.mae_checkpoint
            from gmae.models.mae_checkpoint import load_official_mae

            load_official_mae(self, official_checkpoint)

    @property
    def norm_pix(self) -> bool:
        """MAE's ``norm_pix_loss`` flag, spelled ``loss_type="masked_norm"`` in the shared config."""
        return self.loss_type == "masked_norm"

    def predict(self, latent, ids_restore, ids_keep, imgs) -> dict:
        return {"patches": self.decoder(latent, ids_restore)}

    def loss_target(self, imgs: torch.Tensor) -> torch.Tensor:
        # MAE's target is the input itself, i.e. ImageNet-normalised pixels (not [0, 1] RGB as in GMAE)
        return patchify(imgs.float(), self.patch_size)

    def to_rgb01(self, out: dict, imgs: torch.Tensor) -> torch.Tensor:
        """Predicted patches -> [B, 3, H, W] RGB in [0, 1] (unclamped).

        A norm-pix model predicts each patch up to its mean and scale; those are taken from the ground-truth
        patch (as every norm-pix MAE visualisation does), which leaks information about masked patches:
        ``out["denorm_uses_gt_stats"]`` says so.
        """
        patches = out["patches"].float()
        if self.norm_pix:
            target = self.loss_target(imgs)
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True, unbiased=True)
            patches = patches * (var + NORM_PIX_EPS) ** 0.5 + mean
        out["denorm_uses_gt_stats"] = self.norm_pix
        return imagenet_denormalize(unpatchify(patches, self.patch_size, 3))


# The registered MAE sizes: the same ViTs as GMAE's (see VIT_SIZES).
@register_model
def mae_vit_base_patch16(**kw) -> MAE:
    return MAE(**{**VIT_SIZES["base_patch16"], **kw})


@register_model
def mae_vit_large_patch16(**kw) -> MAE:
    return MAE(**{**VIT_SIZES["large_patch16"], **kw})


@register_model
def mae_vit_tiny_patch8(**kw) -> MAE:
    """CPU-sized MAE for the tiny data: the encoder of ``gmae_vit_tiny_patch8``; not a paper model."""
    return MAE(**{**VIT_SIZES["tiny_patch8"], **kw})
