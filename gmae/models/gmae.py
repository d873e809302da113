"""GMAE: the MAE encoder, a query-token decoder that predicts k 3-D Gaussians, and a splatting renderer.

Data path: image -> patches / random mask -> encoder (visible tokens + CLS) -> decoder over
[CLS, visible tokens, k queries] -> Linear(512 -> 14) on the k query outputs -> activations -> Gaussians ->
render(224 x 224, white background, the authors' camera) -> per-patch MSE on masked patches in [0, 1] RGB.

``compat="authors"`` reproduces what the authors' training code computes where it departs from the paper's
description (tekotan/video-gmae, ``chewbacca/``; the README's deviation ledger measures each item):
the decoder positions of the visible tokens are gathered from the position table *including* its CLS row,
so patch j gets patch j-1's code and patch 0 the all-zero CLS row; rendering follows gsplat v0.1.0
(``render(..., compat="gsplat-0.1.0")``: +1 px centres, 3-sigma tile culling, its backward); and the "all"
loss is summed, not averaged, over the images of a forward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from gmae.models.base import MaskedAutoencoder, imagenet_denormalize
from gmae.models.registry import register_model
from gmae.models.vit import (VIT_SIZES, MaskedViTEncoder, decoder_blocks, init_mae_weights, patchify,
                             sincos_pos_embed_2d)
from gmae.render import Gaussians, render

GAUSSIAN_CHANNELS = 14
# "paper": the method as the paper describes it (default); "authors": as the authors' code computes it
MODEL_COMPAT = ("paper", "authors")
# the renderer rules each model compat mode trains with
RENDER_COMPAT = {"paper": None, "authors": "gsplat-0.1.0"}


def shoemake_quaternion(u: torch.Tensor) -> torch.Tensor:
    """[..., 3] in [0, 1] -> unit quaternion [..., 4] (w, x, y, z) by Shoemake's uniform-rotation map."""
    u1, u2, u3 = u.unbind(-1)
    a, b = torch.sqrt((1 - u1).clamp_min(0)), torch.sqrt(u1.clamp_min(0))
    t2, t3 = 2 * math.pi * u2, 2 * math.pi * u3
    return torch.stack([a * torch.sin(t2), a * torch.cos(t2), b * torch.sin(t3), b * torch.cos(t3)], dim=-1)


def gaussian_activations(raw: torch.Tensor, max_scale: float = 1.0) -> Gaussians:
    """Head output [B, k, 14] -> Gaussians (the paper's activations, see the spec's channel table).

    centre 2(sigmoid - 1/2) in (-1, 1); scale c * sigmoid in (0, c); rotation: Shoemake's map of sigmoid(ch 6:9)
    (channel 9 unused); colour sigmoid; opacity sigmoid.
    """
    if raw.shape[-1] != GAUSSIAN_CHANNELS:
        raise ValueError(f"expected {GAUSSIAN_CHANNELS} channels, got {raw.shape[-1]}")
    raw = raw.float()
    means = 2 * (torch.sigmoid(raw[..., 0:3]) - 0.5)
    scales = max_scale * torch.sigmoid(raw[..., 3:6])
    quats = shoemake_quaternion(torch.sigmoid(raw[..., 6:9]))
    colors = torch.sigmoid(raw[..., 10:13])
    opacities = torch.sigmoid(raw[..., 13])
    return Gaussians(means=means, scales=scales, quats=quats, colors=colors, opacities=opacities)


class GaussianDecoder(nn.Module):
    """MAE-style decoder over [CLS, visible tokens, k queries]; no mask tokens for masked patches.

    ``shifted_positions`` reproduces the authors' gather: visible patch j gets row j of the position table
    that starts with the CLS row, i.e. patch j-1's code (patch 0: zeros), instead of its own.
    """

    def __init__(self, num_patches: int, grid_size: int, embed_dim: int = 768, decoder_dim: int = 512,
                 depth: int = 8, num_heads: int = 16, mlp_ratio: float = 4.0, num_gaussians: int = 256,
                 shifted_positions: bool = False):
        super().__init__()
        self.num_gaussians = num_gaussians
        self.shifted_positions = shifted_positions
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_dim), requires_grad=False)
        # query j = one shared mask-token parameter + a per-query embedding
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.query_embed = nn.Parameter(torch.zeros(1, num_gaussians, decoder_dim))
        self.decoder_blocks = decoder_blocks(decoder_dim, depth, num_heads, mlp_ratio)
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.head = nn.Linear(decoder_dim, GAUSSIAN_CHANNELS, bias=False)
        pe = sincos_pos_embed_2d(decoder_dim, grid_size, cls_token=True)
        self.decoder_pos_embed.data.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        self.apply(init_mae_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.uniform_(self.query_embed, 0.0, 1.0)
        self.head.reset_parameters()  # the paper keeps PyTorch's default init for the head (not Xavier)

    def forward(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """latent [B, 1 + K, D] (CLS first), ids_keep [B, K] -> raw Gaussian parameters [B, k, 14]."""
        x = self.decoder_embed(latent)
        b, _, d = x.shape
        table = self.decoder_pos_embed[0] if self.shifted_positions else self.decoder_pos_embed[0, 1:]
        pos = table[ids_keep]  # [B, K, d]: each visible token's own patch position (paper) or the row before it
        x = torch.cat([x[:, :1, :], x[:, 1:, :] + pos], dim=1)  # CLS gets no position
        queries = (self.mask_token + self.query_embed).expand(b, -1, -1)
        x = torch.cat([x, queries], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        return self.head(x[:, -self.num_gaussians:, :])


class GMAE(MaskedAutoencoder):
    """Gaussian Masked Autoencoder. ``forward`` returns {"loss", "patches", "rgb", "gaussians", "mask", ...}."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, decoder_embed_dim: int = 512, decoder_depth: int = 8,
                 decoder_num_heads: int = 16, mlp_ratio: float = 4.0, num_gaussians: int = 256,
                 max_scale: float = 1.0, mask_ratio: float = 0.75, loss_type: str = "masked",
                 render_backend: str = "auto", background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 compat: str = "paper"):
        if compat not in MODEL_COMPAT:
            raise ValueError(f"compat must be one of {MODEL_COMPAT}, got {compat!r}")
        encoder = MaskedViTEncoder(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio)
        super().__init__(encoder, mask_ratio, loss_type)
        if num_gaussians < 1:
            raise ValueError(f"num_gaussians must be >= 1, got {num_gaussians}")
        if max_scale <= 0:
            raise ValueError(f"max_scale must be > 0, got {max_scale}")
        self.decoder = GaussianDecoder(encoder.num_patches, encoder.grid_size, embed_dim, decoder_embed_dim,
                                       decoder_depth, decoder_num_heads, mlp_ratio, num_gaussians,
                                       shifted_positions=compat == "authors")
        self.compat = compat
        self.render_compat = RENDER_COMPAT[compat]
        self.num_gaussians = num_gaussians
        self.max_scale = max_scale
        # only the torch backend has gsplat v0.1.0's tile culling and backward (gsplat 1.5.3 takes its centres only)
        self.render_backend = "torch" if compat == "authors" and render_backend == "auto" else render_backend
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32), persistent=False)

    def decode_gaussians(self, latent: torch.Tensor, ids_keep: torch.Tensor) -> Gaussians:
        return gaussian_activations(self.decoder(latent, ids_keep), self.max_scale)

    def render(self, gaussians: Gaussians, height: int, width: int) -> torch.Tensor:
        """Gaussians -> [B, 3, H, W] RGB in [0, 1] on the white background (float32)."""
        out = render(gaussians, height=height, width=width, background=self.background,
                     backend=self.render_backend, compat=self.render_compat)
        return out.rgb.permute(0, 3, 1, 2)

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None,
                return_block_outputs: bool = False) -> dict:
        out = super().forward(imgs, mask_ratio, noise, return_block_outputs)
        if self.compat == "authors" and self.loss_type == "all":
            # the authors add up each image's mean over all patches (16x ours at their 16 images per GPU);
            # it reaches training only through the gradient-norm clip and AdamW's epsilon
            out["loss"] = out["loss"] * imgs.shape[0]
        return out

    def predict(self, latent, ids_restore, ids_keep, imgs) -> dict:
        gaussians = self.decode_gaussians(latent, ids_keep)
        rgb = self.render(gaussians, imgs.shape[-2], imgs.shape[-1])
        return {"gaussians": gaussians, "rgb": rgb, "patches": patchify(rgb, self.patch_size)}

    def loss_target(self, imgs: torch.Tensor) -> torch.Tensor:
        return patchify(imagenet_denormalize(imgs.float()), self.patch_size)

    def to_rgb01(self, out: dict, imgs: torch.Tensor) -> torch.Tensor:
        return out["rgb"]

    @torch.no_grad()
    def predict_gaussians(self, imgs: torch.Tensor, mask_ratio: float = 0.0,
                          noise: torch.Tensor | None = None) -> Gaussians:
        """The k Gaussians predicted for ``imgs`` (mask ratio 0 = the zero-shot read-outs' setting)."""
        latent, _, _, ids_keep = self.encoder(imgs, mask_ratio, noise)
        return self.decode_gaussians(latent, ids_keep)


# The registered GMAE sizes (see VIT_SIZES): ViT-B/16 is the paper's; ViT-L/16 for users who scale up.
@register_model
def gmae_vit_base_patch16(**kw) -> GMAE:
    return GMAE(**{**VIT_SIZES["base_patch16"], "num_gaussians": 256, **kw})


@register_model
def gmae_vit_large_patch16(**kw) -> GMAE:
    return GMAE(**{**VIT_SIZES["large_patch16"], "num_gaussians": 256, **kw})


@register_model
def gmae_vit_tiny_patch8(**kw) -> GMAE:
    """CPU-sized GMAE for the tiny data (64 px, 8 x 8 patches): not a paper model."""
    return GMAE(**{**VIT_SIZES["tiny_patch8"], "num_gaussians": 96, **kw})
