"""The MAE baseline: architecture size, decoder and loss against hand computations, a run through the shared
engine, the official MAE checkpoint layouts, reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmae.models.mae import MAE, NORM_PIX_EPS
from gmae.models.mae_checkpoint import export_official_mae, from_official_mae, load_official_mae, to_official_mae
from gmae.models import create_model
from gmae.models.base import IMAGENET_MEAN, IMAGENET_STD

# names in github.com/facebookresearch/mae models_mae.py (timm Block names inside each block)
BLOCK_PARAMS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                "mlp.fc2.weight", "mlp.fc2.bias")


def _block_shapes(d: int, hidden: int) -> list[tuple[int, ...]]:
    return [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (hidden, d), (hidden,), (d, hidden), (d,)]


def official_layout_shapes(img=64, p=8, d=192, depth=4, dd=128, ddepth=2, mlp=4.0, full=True) -> dict:
    """Key -> shape of an official MAE checkpoint, written out from the MAE repository's module structure."""
    n = (img // p) ** 2
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, n + 1, d),
              "patch_embed.proj.weight": (d, 3, p, p), "patch_embed.proj.bias": (d,)}
    for i in range(depth):
        shapes.update({f"blocks.{i}.{k}": s for k, s in zip(BLOCK_PARAMS, _block_shapes(d, int(d * mlp)))})
    shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    if full:
        shapes.update({"mask_token": (1, 1, dd), "decoder_pos_embed": (1, n + 1, dd),
                       "decoder_embed.weight": (dd, d), "decoder_embed.bias": (dd,)})
        for i in range(ddepth):
            block = zip(BLOCK_PARAMS, _block_shapes(dd, int(dd * mlp)))
            shapes.update({f"decoder_blocks.{i}.{k}": s for k, s in block})
        shapes.update({"decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,),
                       "decoder_pred.weight": (p * p * 3, dd), "decoder_pred.bias": (p * p * 3,)})
    return shapes


def random_official(seed=0, **kw) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in official_layout_shapes(**kw).items()}


def small_mae(**kw) -> MAE:
    args = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, decoder_embed_dim=8,
                decoder_depth=1, decoder_num_heads=2)
    torch.manual_seed(0)
    return MAE(**{**args, **kw})


# -- architecture ----------------------------------------------------------------------------------------------

def _closed_form(img, p, d, depth, dd, ddepth, mlp=4.0):
    """Parameter count of the MAE pretraining model from its architecture (biases, LayerNorms and the fixed
    position embeddings included, as in the MAE paper's count)."""
    n = (img // p) ** 2

    def block(w):
        h = int(w * mlp)
        return 2 * 2 * w + (3 * w * w + 3 * w) + (w * w + w) + (w * h + h) + (h * w + w)

    enc = (p * p * 3 * d + d) + d + (n + 1) * d + depth * block(d) + 2 * d
    dec = (d * dd + dd) + dd + (n + 1) * dd + ddepth * block(dd) + 2 * dd + (dd * p * p * 3 + p * p * 3)
    return enc, dec


@pytest.fixture(scope="module")
def vit_b():
    torch.manual_seed(0)
    return create_model("mae_vit_base_patch16")


def test_vit_b_parameter_count_matches_closed_form(vit_b):
    model = vit_b
    enc, dec = _closed_form(224, 16, 768, 12, 512, 8)
    n_enc = sum(t.numel() for t in model.encoder.parameters())
    n_all = sum(t.numel() for t in model.parameters())
    assert n_enc == enc
    assert n_all == enc + dec
    assert round(n_enc / 1e6, 1) == 85.8 and round(n_all / 1e6, 1) == 111.9  # the MAE paper's figures
    # MAE's decoder: 8 blocks of 512 with 16 heads, per-patch Linear(512 -> 768) with bias
    assert len(model.decoder.decoder_blocks) == 8 and model.decoder.decoder_blocks[0].attn.num_heads == 16
    assert model.decoder.decoder_pred.weight.shape == (768, 512) and model.decoder.decoder_pred.bias is not None


def test_tiny_mae_shares_the_tiny_gmae_encoder():
    mae, gmae = create_model("mae_vit_tiny_patch8"), create_model("gmae_vit_tiny_patch8")
    assert mae.encoder.architecture() == gmae.encoder.architecture()
    assert {k: v.shape for k, v in mae.encoder.state_dict().items()} == \
        {k: v.shape for k, v in gmae.encoder.state_dict().items()}
    dec = mae.decoder
    assert dec.decoder_embed.out_features == 128 and len(dec.decoder_blocks) == 2
    assert dec.decoder_blocks[0].attn.num_heads == 4


def test_mae_init(vit_b):
    model = small_mae()
    dec = model.decoder
    # fixed sin-cos decoder position embedding, CLS row zero, not trained
    assert not dec.decoder_pos_embed.requires_grad and torch.all(dec.decoder_pos_embed[0, 0] == 0)
    assert torch.allclose(dec.decoder_pos_embed[0, 1, :4], torch.tensor([0.0, 0.0, 1.0, 1.0]))  # patch (0, 0)
    # xavier_uniform on the pixel head: |w| <= sqrt(6 / (fan_in + fan_out)), zero bias
    w = dec.decoder_pred.weight
    assert w.abs().max() <= (6 / sum(w.shape)) ** 0.5 and torch.all(dec.decoder_pred.bias == 0)
    assert abs(float(vit_b.decoder.mask_token.detach().std()) - 0.02) < 0.004  # N(0, 0.02) over 512 values


# -- decoder and loss ------------------------------------------------------------------------------------------

def test_decoder_places_mask_tokens_like_the_reference():
    """Rebuild MAE's decoder input token by token (visible token at its patch, the mask token elsewhere)."""
    model = small_mae().eval()
    imgs = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        latent, mask, ids_restore, ids_keep = model.encoder(imgs, 0.75, noise)
        got = model.decoder(latent, ids_restore)
        dec = model.decoder
        emb = dec.decoder_embed(latent)
        seqs = []
        for b in range(2):
            kept = ids_keep[b].tolist()
            rows = [emb[b, 0]]
            for patch in range(16):
                rows.append(emb[b, 1 + kept.index(patch)] if patch in kept else dec.mask_token[0, 0])
            seqs.append(torch.stack(rows))
        x = torch.stack(seqs) + dec.decoder_pos_embed
        for blk in dec.decoder_blocks:
            x = blk(x)
        want = dec.decoder_pred(dec.decoder_norm(x))[:, 1:]
    assert got.shape == (2, 16, 4 * 4 * 3)
    torch.testing.assert_close(got, want)
    assert int(mask.sum()) == 2 * (16 - int(16 * 0.25))


def _hand_target(imgs: np.ndarray, p: int) -> np.ndarray:
    """[B, C, H, W] -> [B, L, p*p*C] with explicit loops: patches row-major, pixels (row, col, channel)."""
    b, c, h, w = imgs.shape
    out = np.zeros((b, (h // p) * (w // p), p * p * c))
    for n in range(b):
        for i in range(h // p):
            for j in range(w // p):
                vals = [imgs[n, ch, i * p + r, j * p + q] for r in range(p) for q in range(p) for ch in range(c)]
                out[n, i * (w // p) + j] = vals
    return out


@pytest.mark.parametrize("loss_type", ["masked", "masked_norm"])
def test_loss_equals_hand_computation(loss_type):
    model = small_mae(loss_type=loss_type)
    imgs = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    out = model(imgs, noise=noise)
    pred = out["patches"].detach().double().numpy()
    target = _hand_target(imgs.double().numpy(), 4)  # ImageNet-normalised pixels, as MAE
    if loss_type == "masked_norm":
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, ddof=1, keepdims=True)  # unbiased, as torch.var in MAE
        target = (target - mean) / np.sqrt(var + 1e-6)
    # mask from the noise: the 4 lowest-noise patches of each image are kept
    mask = np.ones((2, 16))
    for b in range(2):
        mask[b, np.argsort(noise[b].numpy(), kind="stable")[:4]] = 0
    np.testing.assert_array_equal(out["mask"].numpy(), mask)
    per_patch = ((pred - target) ** 2).mean(-1)
    want = (per_patch * mask).sum() / mask.sum()
    assert abs(float(out["loss"].detach()) - want) < 1e-5 * max(1.0, want)
    assert model.norm_pix == (loss_type == "masked_norm")
    assert NORM_PIX_EPS == 1e-6


# -- the shared engine -----------------------------------------------------------------------------------------

def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_tiny_config_matches_gmae_tiny():
    from gmae.config import config_to_dict, load_config
    from gmae.engine.config import PretrainConfig

    mae = _flat(config_to_dict(load_config(PretrainConfig, "pretrain/mae_tiny.yaml", ["data.root=x"])))
    gmae = _flat(config_to_dict(load_config(PretrainConfig, "pretrain/gmae_tiny.yaml", ["data.root=x"])))
    differ = {k for k in mae if mae[k] != gmae[k]}
    # only the model / loss and what MAE's recipe changes (documented in mae_tiny.yaml)
    assert differ == {"model.name", "model.num_gaussians", "model.max_scale", "data.crop_scale", "data.crop",
                      "optim.blr", "optim.clip_grad", "run.out_dir"}
    assert mae["data.crop_scale"] == [0.2, 1.0] and mae["optim.clip_grad"] is None
    assert (mae["data.crop"], gmae["data.crop"]) == ("torchvision", "tf")  # MAE's main_pretrain vs the authors
    assert mae["optim.blr"] / gmae["optim.blr"] == pytest.approx(1.5e-4 / 1e-4)
    def flat_cfg(name):
        return _flat(config_to_dict(load_config(PretrainConfig, f"pretrain/{name}.yaml", ["data.root=x"])))

    full = flat_cfg("mae_vit_b16_400ep")
    assert (full["optim.blr"], full["optim.warmup_epochs"], full["optim.batch_size"], full["optim.clip_grad"],
            full["data.crop_scale"], full["model.mask_ratio"], full["model.loss_type"]) == \
        (1.5e-4, 40, 4096, None, [0.2, 1.0], 0.75, "masked_norm")  # MAE's recipe: norm_pix_loss=True
    long = flat_cfg("mae_vit_b16_1600ep")
    assert (long["optim.epochs"], long["model.loss_type"], long["optim.warmup_epochs"]) == (1600, "masked_norm", 40)


def test_tiny_run_through_the_shared_engine_lowers_the_loss(tiny_data, tmp_path):
    from gmae.config import load_config
    from gmae.engine.checkpoint import load_checkpoint
    from gmae.engine.config import PretrainConfig
    from gmae.engine.train import Trainer

    cfg = load_config(PretrainConfig, "pretrain/mae_tiny.yaml", [
        f"data.root={tiny_data / 'imagenet'}", f"run.out_dir={tmp_path / 'run'}", "run.device=cpu",
        "optim.batch_size=16", "optim.batch_per_device=16", "optim.max_steps=12", "optim.warmup_epochs=0.1",
        "run.progress=false", "run.tensorboard=false", "run.log_every_steps=4"])
    trainer = Trainer(cfg)
    assert isinstance(trainer.model, MAE)
    imgs = torch.stack([trainer.dataset[i][0] for i in range(16)])
    noise = torch.rand(16, trainer.model.encoder.num_patches, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = float(trainer.model.eval()(imgs, noise=noise)["loss"])
    summary = trainer.train(resume=False)
    with torch.no_grad():
        after = float(trainer.model.eval()(imgs, noise=noise)["loss"])
    assert summary["step"] == 12
    print(f"fixed-batch loss {before:.4f} -> {after:.4f}")
    assert after < 0.85 * before, (before, after)
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["arch"]["model"] == "mae_vit_tiny_patch8"
    # the training checkpoint converts to the official full layout, key for key
    assert set(to_official_mae(ckpt["model"], full=True)) == set(official_layout_shapes())


# -- official checkpoint layouts -------------------------------------------------------------------------------

def test_official_full_layout_loads_and_round_trips(tmp_path):
    official = random_official()
    path = tmp_path / "mae_pretrain_vit_tiny_full.pth"
    torch.save({"model": official}, path)
    model = create_model("mae_vit_tiny_patch8")
    report = load_official_mae(model, path)
    assert report == {"layout": "full", "decoder_initialised": False}
    # every official tensor landed in the matching parameter (a strict load of the converted dict agrees)
    res = model.load_state_dict(from_official_mae(official), strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    back = to_official_mae(model.state_dict(), full=True)
    assert set(back) == set(official)
    for k, v in official.items():
        torch.testing.assert_close(back[k], v, rtol=0, atol=0)
    # the model init option does the same
    model2 = create_model("mae_vit_tiny_patch8", official_checkpoint=str(path))
    torch.testing.assert_close(model2.decoder.decoder_pred.weight, official["decoder_pred.weight"], rtol=0, atol=0)


def test_official_encoder_only_layout(tmp_path):
    official = random_official(full=False)
    model = create_model("mae_vit_tiny_patch8")
    dec_before = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    assert load_official_mae(model, official) == {"layout": "encoder", "decoder_initialised": True}
    for k, v in model.decoder.state_dict().items():
        torch.testing.assert_close(v, dec_before[k], rtol=0, atol=0)
    enc = to_official_mae(model.state_dict(), full=False)
    assert set(enc) == set(official)
    for k, v in official.items():
        torch.testing.assert_close(enc[k], v, rtol=0, atol=0)
    # the encoder-only layout is timm's ViT naming: a strict load into timm's VisionTransformer
    from gmae.engine.checkpoint import build_timm_vit

    vit = build_timm_vit(model.encoder.architecture(), num_classes=0)
    res = vit.load_state_dict(enc, strict=True)
    assert not res.missing_keys and not res.unexpected_keys


def test_official_layout_errors():
    model = create_model("mae_vit_tiny_patch8")
    official = random_official()
    with pytest.raises(ValueError, match="head.weight"):
        load_official_mae(model, {**official, "head.weight": torch.zeros(10, 192)})
    partial = {k: v for k, v in official.items() if k != "decoder_pred.bias"}
    with pytest.raises(ValueError, match="partial decoder"):
        load_official_mae(model, partial)
    with pytest.raises(ValueError, match="encoder weights missing"):
        load_official_mae(model, {k: v for k, v in official.items() if k != "norm.weight"})
    with pytest.raises(ValueError, match="shapes"):
        load_official_mae(create_model("mae_vit_tiny_patch8", img_size=32), official)
    gmae = create_model("gmae_vit_tiny_patch8")
    with pytest.raises(ValueError, match="no place in the official MAE layout"):
        to_official_mae(gmae.state_dict(), full=True)
    assert set(to_official_mae(gmae.state_dict(), full=False)) == set(official_layout_shapes(full=False))


def test_export_cli_writes_the_full_layout(tmp_path):
    from gmae.cli import main
    from gmae.io import safe_torch_load

    model = create_model("mae_vit_tiny_patch8")
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "arch": {"model": "mae_vit_tiny_patch8"}}, ckpt)
    out = tmp_path / "mae_full.pth"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--format", "mae_full"]) == 0
    written = safe_torch_load(out)
    assert set(written) == {"model"} and set(written["model"]) == set(official_layout_shapes())
    reloaded = create_model("mae_vit_tiny_patch8")
    load_official_mae(reloaded, out)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[k], v, rtol=0, atol=0)
    gmae_ckpt = tmp_path / "gmae.pth"
    torch.save({"model": create_model("gmae_vit_tiny_patch8").state_dict()}, gmae_ckpt)
    with pytest.raises(ValueError, match="gmae.pth"):
        export_official_mae(gmae_ckpt, tmp_path / "x.pth")


# -- reconstruction --------------------------------------------------------------------------------------------

def test_reconstruct_pastes_visible_patches():
    model = small_mae().eval()
    imgs = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    out = model.reconstruct(imgs, mask_ratio=0.75, noise=noise, paste_visible=True)
    raw = model.reconstruct(imgs, mask_ratio=0.75, noise=noise, paste_visible=False)
    assert out["denorm_uses_gt_stats"] is False and out["rgb"].shape == (2, 3, 16, 16)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for b in range(2):
        for l in range(16):
            i, j = divmod(l, 4)
            cell = (b, slice(None), slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4))
            # the prediction, pixel (r, q, c) at r*12 + q*3 + c, un-normalised with ImageNet mean / std
            pred = (out["patches"][b, l].view(4, 4, 3).permute(2, 0, 1) * std + mean).clamp(0, 1)
            torch.testing.assert_close(raw["rgb"][cell], pred)
            if out["mask"][b, l] == 0:  # visible: the input itself
                torch.testing.assert_close(out["rgb"][cell], (imgs[cell] * std + mean).clamp(0, 1))
            else:
                torch.testing.assert_close(out["rgb"][cell], pred)


def test_norm_pix_reconstruction_uses_ground_truth_statistics():
    model = small_mae(loss_type="masked_norm").eval()
    imgs = torch.rand(2, 3, 16, 16)  # in the [0, 1]-preimage: denormalised input stays inside [0, 1] mostly
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    # a perfect norm-pix prediction (the hand-normalised target) de-normalises to the input exactly
    t = torch.from_numpy(_hand_target(imgs.double().numpy(), 4))
    t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()
    out = {"patches": t.float()}
    rgb = model.to_rgb01(out, imgs)
    assert out["denorm_uses_gt_stats"] is True
    torch.testing.assert_close(rgb, imgs * std + mean, rtol=1e-5, atol=1e-5)
    rec = model.reconstruct(imgs, mask_ratio=0.75)
    assert rec["denorm_uses_gt_stats"] is True and rec["rgb"].shape == (2, 3, 16, 16)
