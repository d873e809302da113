"""The MAE encoder shared by GMAE and the MAE baseline: patchify, random masking, ViT blocks.

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``) so an exported encoder loads into
timm and, through the same key contract, into detectron2's ViT.
"""

from __future__ import annotations

import math
import re
from functools import partial

import numpy as np
import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block


# The ViT sizes every registered model is built at (encoder and decoder; GMAE adds its Gaussian count).
# base_patch16 is the paper's; large_patch16 for users who scale up; tiny_patch8 for CPU runs on the tiny data.
VIT_SIZES = {
    "base_patch16": dict(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                         decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "large_patch16": dict(img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16,
                          decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "tiny_patch8": dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3,
                        decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4),
}


# where a MaskedAutoencoder keeps its encoder, and the keys of the timm / MAE encoder contract (the names a timm
# VisionTransformer and MAE's checkpoints use; detectron2's ViT loads them by suffix)
ENCODER_PREFIX = "encoder."
ENCODER_KEY = re.compile(r"^(cls_token|pos_embed|patch_embed\..*|blocks\.\d+\..*|norm\.(weight|bias))$")

def sincos_pos_embed_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[M] positions -> [M, dim]: first half sin, second half cos, frequencies 1 / 10000^(2i/dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = False) -> np.ndarray:
    """Fixed 2-D sin-cos embedding of a grid_size x grid_size patch grid, MAE layout.

    Returns [(cls_token + grid_size**2), dim]: half the channels encode the column (x), half the row (y),
    row-major patch order; the CLS row, when present, is all zeros.
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs dim divisible by 4, got {dim}")
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")
    emb = np.concatenate([sincos_pos_embed_1d(dim // 2, cols), sincos_pos_embed_1d(dim // 2, rows)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return emb


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, L, p*p*C], patches row-major, pixels (p, q, c) inside a patch (MAE's order)."""
    b, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image {h}x{w} is not divisible by patch size {p}")
    x = imgs.reshape(b, c, h // p, p, w // p, p)
    x = torch.einsum("bchpwq->bhwpqc", x)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify` for a square grid: [B, L, p*p*C] -> [B, C, H, W]."""
    b, n, _ = x.shape
    g = int(math.isqrt(n))
    if g * g != n:
        raise ValueError(f"unpatchify needs a square number of patches, got {n}")
    p = patch_size
    x = x.reshape(b, g, g, p, p, channels)
    x = torch.einsum("bhwpqc->bchpwq", x)
    return x.reshape(b, channels, g * p, g * p)


def random_masking(x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None):
    """MAE's per-sample random masking by argsort of uniform noise.

    x: [B, L, D]; noise: [B, L] in [0, 1) (drawn here when None). Keeps int(L * (1 - mask_ratio)) tokens.
    Returns (x_kept [B, K, D], mask [B, L] with 1 = masked in the original order, ids_restore [B, L],
    ids_keep [B, K]).
    """
    b, n, d = x.shape
    keep = int(n * (1 - mask_ratio))
    if noise is None:
        noise = torch.rand(b, n, device=x.device)
    elif noise.shape != (b, n):
        raise ValueError(f"masking noise must be [B, L] = {(b, n)}, got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise.to(x.device), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, n, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return x_kept, mask, ids_restore, ids_keep


def init_mae_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier_uniform Linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MaskedViTEncoder(nn.Module):
    """ViT encoder with MAE masking: patch embed + fixed sin-cos pos embed, mask, prepend CLS, blocks, norm."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0):
        super().__init__()
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim, self.depth, self.num_heads, self.mlp_ratio = embed_dim, depth, num_heads, mlp_ratio
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_patches = self.patch_embed.num_patches
        self.grid_size = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim), requires_grad=False)
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        pe = sincos_pos_embed_2d(self.embed_dim, self.grid_size, cls_token=True)
        self.pos_embed.data.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        # the patch projection is initialised like a Linear over flattened patches
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        self.blocks.apply(init_mae_weights)
        self.norm.apply(init_mae_weights)
        # The patch projection's bias keeps PyTorch's default Conv2d init, as in MAE and the GMAE authors' code
        # (their init touches only Linear and LayerNorm modules).

    def architecture(self) -> dict:
        """Plain-typed description used to rebuild the encoder (stored in checkpoints and exports)."""
        return dict(img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans,
                    embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio)

    def forward(self, imgs: torch.Tensor, mask_ratio: float = 0.0, noise: torch.Tensor | None = None,
                return_block_outputs: bool = False):
        """imgs [B, C, H, W] -> latent [B, 1 + K, D] (CLS first), mask [B, L], ids_restore [B, L], ids_keep [B, K].

        With ``return_block_outputs`` a fifth element lists every block's output [B, 1 + K, D].
        """
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        x, mask, ids_restore, ids_keep = random_masking(x, mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        outs = []
        for blk in self.blocks:
            x = blk(x)
            if return_block_outputs:
                outs.append(x)
        x = self.norm(x)
        if return_block_outputs:
            return x, mask, ids_restore, ids_keep, outs
        return x, mask, ids_restore, ids_keep

    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """All tokens, no masking: [B, 1 + L, D] after the final norm (CLS first)."""
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def decoder_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0) -> nn.ModuleList:
    """MAE's decoder blocks (qkv bias, LayerNorm eps 1e-6), shared by the GMAE and MAE decoders."""
    norm_layer = partial(nn.LayerNorm, eps=1e-6)
    return nn.ModuleList([Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                          for _ in range(depth)])
