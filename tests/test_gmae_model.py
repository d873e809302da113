"""GMAE model: sizes against closed forms, activations, masking, decoder sequence, and the masked loss."""

import math

import numpy as np
import pytest
import torch

from gmae.models import create_model, list_models
from gmae.models.base import imagenet_denormalize, normalize_patches
from gmae.models.gmae import gaussian_activations, shoemake_quaternion
from gmae.models.vit import (MaskedViTEncoder, patchify, random_masking, sincos_pos_embed_2d, unpatchify)


def block_params(d: int, mlp_ratio: int = 4) -> int:
    # norm1 + qkv (w, b) + proj (w, b) + norm2 + fc1 (w, b) + fc2 (w, b)
    h = mlp_ratio * d
    return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * h + h) + (h * d + d)


def encoder_params(d, depth, patch, tokens, chans=3) -> int:
    return (d * chans * patch * patch + d) + d + tokens * d + depth * block_params(d) + 2 * d


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_vit_b_encoder_matches_closed_form_and_mae_size():
    enc = MaskedViTEncoder(224, 16, 3, 768, 12, 12)
    expected = encoder_params(768, 12, 16, 197)
    assert count(enc) == expected
    assert abs(expected / 1e6 - 85.8) < 0.05  # the MAE ViT-B encoder size


def test_gmae_vit_b_matches_closed_form():
    model = create_model("gmae_vit_base_patch16")
    d, dd, k = 768, 512, 256
    decoder = (d * dd + dd) + 197 * dd + dd + k * dd + 8 * block_params(dd) + 2 * dd + dd * 14
    assert count(model.encoder) == encoder_params(d, 12, 16, 197)
    assert count(model.decoder) == decoder
    assert model.decoder.head.bias is None


def test_registry_lists_gmae_models():
    names = list_models()
    for n in ("gmae_vit_base_patch16", "gmae_vit_large_patch16", "gmae_vit_tiny_patch8"):
        assert n in names
    with pytest.raises(KeyError, match="unknown model"):
        create_model("gmae_vit_huge_nope")


def test_sincos_embedding_closed_form():
    dim, grid = 16, 4
    emb = sincos_pos_embed_2d(dim, grid, cls_token=True)
    assert emb.shape == (1 + grid * grid, dim) and np.all(emb[0] == 0)
    row, col = 2, 3
    token = 1 + row * grid + col
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    expected = np.concatenate([np.sin(col * omega), np.cos(col * omega), np.sin(row * omega), np.cos(row * omega)])
    np.testing.assert_allclose(emb[token], expected, atol=1e-12)


def test_patchify_round_trip_and_order():
    x = torch.randn(2, 3, 32, 32)
    p = patchify(x, 8)
    assert p.shape == (2, 16, 192)
    torch.testing.assert_close(unpatchify(p, 8), x)
    # patch 1 is the second patch of the first row; its first entry is pixel (0, 8), channel 0
    assert p[0, 1, 0] == x[0, 0, 0, 8] and p[0, 1, 1] == x[0, 1, 0, 8]


def test_random_masking_keeps_mae_count_and_follows_noise():
    x = torch.randn(3, 196, 8)
    noise = torch.rand(3, 196)
    kept, mask, ids_restore, ids_keep = random_masking(x, 0.75, noise)
    assert kept.shape == (3, 49, 8) and mask.sum(1).tolist() == [147.0] * 3
    # the kept tokens are those with the smallest noise
    for b in range(3):
        expected = torch.argsort(noise[b])[:49]
        assert torch.equal(ids_keep[b], expected)
        assert torch.equal(kept[b], x[b, expected])
        assert torch.all(mask[b, expected] == 0)


def test_activations_land_in_their_ranges():
    raw = torch.randn(4, 50, 14) * 20
    g = gaussian_activations(raw, max_scale=2.0)
    assert g.means.abs().max() <= 1 and g.scales.min() >= 0 and g.scales.max() <= 2.0
    assert torch.allclose(g.quats.norm(dim=-1), torch.ones(4, 50), atol=1e-5)
    assert g.colors.min() >= 0 and g.colors.max() <= 1 and g.opacities.min() >= 0 and g.opacities.max() <= 1
    # channel 9 is unused
    raw2 = raw.clone()
    raw2[..., 9] += 5.0
    g2 = gaussian_activations(raw2, max_scale=2.0)
    assert torch.equal(g.quats, g2.quats)


def test_shoemake_map_values():
    q = shoemake_quaternion(torch.tensor([[0.0, 0.25, 0.0], [1.0, 0.0, 0.125]]))
    torch.testing.assert_close(q[0], torch.tensor([1.0, 0.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    s = math.sqrt(0.5)
    torch.testing.assert_close(q[1], torch.tensor([0.0, 0.0, s, s]), atol=1e-6, rtol=0)


def tiny_gmae(**kw):
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                decoder_depth=1, decoder_num_heads=2, num_gaussians=12)
    args.update(kw)
    return create_model("gmae_vit_tiny_patch8", **args)


def test_decoder_outputs_k_gaussians_whatever_the_mask():
    model = tiny_gmae(num_gaussians=7)
    imgs = torch.randn(2, 3, 32, 32)
    for ratio in (0.0, 0.75):
        latent, _, _, ids_keep = model.encoder(imgs, ratio)
        assert model.decoder(latent, ids_keep).shape == (2, 7, 14)
    q = model.decoder.query_embed
    assert q.min() >= 0 and q.max() < 1


def test_visible_tokens_get_their_own_position():
    """Decoding with a permuted order of visible tokens (and their positions) gives the same Gaussians."""
    model = tiny_gmae().eval()
    imgs = torch.randn(1, 3, 32, 32)
    latent, _, _, ids_keep = model.encoder(imgs, 0.5, torch.rand(1, 16))
    perm = torch.randperm(ids_keep.shape[1])
    latent_p = torch.cat([latent[:, :1], latent[:, 1:][:, perm]], dim=1)
    out = model.decoder(latent, ids_keep)
    out_p = model.decoder(latent_p, ids_keep[:, perm])
    torch.testing.assert_close(out, out_p, atol=1e-5, rtol=1e-5)


def test_loss_equals_hand_computation_and_ignores_visible_patches():
    model = tiny_gmae().eval()
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    out = model(imgs, noise=noise)
    target = patchify(imagenet_denormalize(imgs), 8)
    pred = patchify(out["rgb"], 8)
    per_patch = ((pred - target) ** 2).mean(-1)
    mask = out["mask"]
    hand = (per_patch * mask).sum() / mask.sum()
    torch.testing.assert_close(out["loss"], hand)

    # changing the render inside visible patches leaves the loss unchanged; inside masked ones it does not
    original_render = model.render
    visible = (1 - mask).reshape(2, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3)

    def perturbed(region):
        def render(g, h, w):
            return original_render(g, h, w) + 0.5 * region
        return render

    model.render = perturbed(visible)
    assert torch.equal(model(imgs, noise=noise)["loss"], out["loss"])
    model.render = perturbed(1 - visible)
    assert not torch.allclose(model(imgs, noise=noise)["loss"], out["loss"])


def test_loss_variants():
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    out_all = tiny_gmae(loss_type="all")(imgs, noise=noise)
    target = patchify(imagenet_denormalize(imgs), 8)
    torch.testing.assert_close(out_all["loss"], ((patchify(out_all["rgb"], 8) - target) ** 2).mean())
    out_norm = tiny_gmae(loss_type="masked_norm")(imgs, noise=noise)
    t = target
    tn = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, keepdim=True, unbiased=True) + 1e-6)
    torch.testing.assert_close(normalize_patches(t), tn)
    m = out_norm["mask"]
    hand = (((patchify(out_norm["rgb"], 8) - tn) ** 2).mean(-1) * m).sum() / m.sum()
    torch.testing.assert_close(out_norm["loss"], hand)


def test_reconstruct_pastes_visible_patches():
    model = tiny_gmae().eval()
    imgs = torch.randn(2, 3, 32, 32)
    out = model.reconstruct(imgs, mask_ratio=0.75, noise=torch.rand(2, 16), paste_visible=True)
    rgb = out["rgb"]
    assert rgb.shape == (2, 3, 32, 32) and rgb.min() >= 0 and rgb.max() <= 1
    vis = (1 - out["mask"]).bool()
    src = patchify(imagenet_denormalize(imgs).clamp(0, 1), 8)
    torch.testing.assert_close(patchify(rgb, 8)[vis], src[vis])


def test_gradients_reach_every_trainable_parameter():
    model = tiny_gmae()
    out = model(torch.randn(2, 3, 32, 32))
    out["loss"].backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
