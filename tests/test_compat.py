"""The authors'-code mode and the other fidelity items of the README's deviation ledger.

Each test compares our code with an independent transcription of the rule as the authors' code (tekotan/video-gmae
@392b4bf, chewbacca/), MAE's repository or PyTorch itself computes it, written here from scratch.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms as T

from gmae.config import load_config
from gmae.data.transforms import TFRandomResizedCrop, pretrain_transform
from gmae.engine.config import PretrainConfig
from gmae.engine.train import Trainer, authors_epoch_lr_factor
from gmae.models import create_model
from gmae.models.gmae import GMAE
from gmae.models.vit import MaskedViTEncoder

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
            decoder_depth=1, decoder_num_heads=2, num_gaussians=12)


def tiny_pair():
    """A paper-mode and an authors-mode GMAE with the same weights."""
    torch.manual_seed(0)
    paper = GMAE(**TINY)
    authors = GMAE(**TINY, compat="authors")
    authors.load_state_dict(paper.state_dict())
    return paper.eval(), authors.eval()


# -- 1. decoder positions -----------------------------------------------------------------------------------------
def authors_decoder(dec, latent, ids_restore):
    """Transcription of the authors' forward_decoder up to the Gaussian head (models_mae.py l. 423-443)."""
    x_ = dec.decoder_embed(latent)
    ids_shuffle = torch.argsort(ids_restore, dim=1)[:, : x_.shape[1] - 1]
    table = dec.decoder_pos_embed.repeat(x_.shape[0], 1, 1)  # [B, 1 + L, d], row 0 = the CLS row
    p_ = torch.gather(table, 1, ids_shuffle.unsqueeze(-1).repeat(1, 1, table.shape[2]))
    x_ = torch.cat([x_[:, :1], x_[:, 1:] + p_], dim=1)
    queries = dec.mask_token.repeat(x_.shape[0], dec.num_gaussians, 1) + dec.query_embed
    x_ = torch.cat([x_, queries], dim=1)
    for blk in dec.decoder_blocks:
        x_ = blk(x_)
    return dec.head(dec.decoder_norm(x_)[:, -dec.num_gaussians:])


def test_authors_decoder_gathers_positions_with_the_cls_row():
    paper, authors = tiny_pair()
    imgs = torch.randn(2, 3, 32, 32)
    latent, _, ids_restore, ids_keep = authors.encoder(imgs, 0.75, torch.rand(2, 16))
    ours = authors.decoder(latent, ids_keep)
    torch.testing.assert_close(ours, authors_decoder(authors.decoder, latent, ids_restore), atol=1e-5, rtol=1e-5)
    # and it is not what the paper's rule gives with the same weights
    assert (paper.decoder(latent, ids_keep) - ours).abs().max() > 1e-3


# -- 7. the "all" loss -----------------------------------------------------------------------------------------------
def test_authors_all_loss_sums_the_per_image_means():
    torch.manual_seed(1)
    model = GMAE(**TINY, loss_type="all", compat="authors").eval()
    imgs = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)
    out = model(imgs, noise=noise)
    # forward_loss with "all-patch": loss += mean over patches of image i, for every image i
    target = model.loss_target(imgs)
    expected = sum(((out["patches"][i] - target[i]) ** 2).mean(-1).mean() for i in range(3))
    torch.testing.assert_close(out["loss"], expected, atol=1e-6, rtol=1e-5)
    # the masked loss is the same mean as ours: sum_i (l_i * m_i).sum() / m.sum() over the whole batch
    masked = GMAE(**TINY, compat="authors").eval()
    masked.load_state_dict(model.state_dict())
    out = masked(imgs, noise=noise)
    per_patch = ((out["patches"] - target) ** 2).mean(-1)
    expected = sum((per_patch[i] * out["mask"][i]).sum() / out["mask"].sum() for i in range(3))
    torch.testing.assert_close(out["loss"], expected, atol=1e-6, rtol=1e-5)


def test_compat_is_validated_and_reaches_the_registry():
    with pytest.raises(ValueError, match="compat"):
        GMAE(**TINY, compat="authorz")
    m = create_model("gmae_vit_tiny_patch8", compat="authors")
    assert m.compat == "authors" and m.decoder.shifted_positions and m.render_compat == "gsplat-0.1.0"
    assert m.render_backend == "torch"  # the backend with 0.1.0's culling and backward, on CPU and GPU alike
    assert create_model("gmae_vit_tiny_patch8").render_compat is None


# -- 8. patch-embed bias ---------------------------------------------------------------------------------------------
def test_patch_embed_bias_keeps_pytorchs_default_init():
    """MAE and the authors initialise only Linear/LayerNorm (and the projection's weight): the conv bias keeps
    nn.Conv2d's own draw, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    torch.manual_seed(3)
    enc = MaskedViTEncoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 32, kernel_size=8, stride=8)  # the first draw of the encoder's constructor
    torch.testing.assert_close(enc.patch_embed.proj.bias, conv.bias)
    assert enc.patch_embed.proj.bias.abs().max() <= 1 / math.sqrt(3 * 8 * 8)


# -- 4. per-epoch schedule -------------------------------------------------------------------------------------------
def test_authors_epoch_schedule_matches_a_lambdalr_stepped_per_epoch():
    epochs, warmup, peak = 400, 5, 1.6e-3

    def lam(epoch):  # gmae.py warm_start_and_cosine_annealing
        if epoch < warmup:
            return (epoch + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * ((epoch + 1) - warmup) / (epochs - warmup)))

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=peak)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lam)
    for epoch in range(epochs):
        assert opt.param_groups[0]["lr"] == pytest.approx(peak * authors_epoch_lr_factor(epoch, warmup, epochs),
                                                          rel=1e-12, abs=1e-15), epoch
        opt.step()
        sched.step()
    assert authors_epoch_lr_factor(0, warmup, epochs) == pytest.approx(0.2)
    assert authors_epoch_lr_factor(epochs - 1, warmup, epochs) == pytest.approx(0.0, abs=1e-12)


SMALL = ["model.kwargs={embed_dim: 32, depth: 2, num_heads: 2, decoder_embed_dim: 32, decoder_depth: 1,"
         " decoder_num_heads: 2}", "model.num_gaussians=16", "data.img_size=32"]


def small_cfg(tiny_data, out, *extra):
    return load_config(PretrainConfig, "pretrain/gmae_tiny", [
        f"data.root={tiny_data / 'imagenet'}", f"run.out_dir={out}", "run.progress=false", "run.tensorboard=false",
        "optim.batch_size=8", "optim.batch_per_device=8", "run.log_every_steps=1", *SMALL, *extra])


def test_epoch_interval_holds_the_lr_for_a_whole_epoch(tiny_data, tmp_path):
    tr = Trainer(small_cfg(tiny_data, tmp_path, "optim.epochs=4", "optim.warmup_epochs=2",
                           "optim.lr_interval=epoch"))
    spe, peak = tr.steps_per_epoch, tr.lr
    for step in range(0, 4 * spe, max(1, spe // 3)):
        tr.step = step
        tr.set_lr()
        expected = peak * {0: 0.5, 1: 1.0, 2: 0.5 * (1 + math.cos(math.pi / 2)), 3: 0.0}[step // spe]
        assert all(g["lr"] == pytest.approx(expected, abs=1e-15) for g in tr.optimizer.param_groups), step


def test_bad_compat_keys_fail_before_work(tiny_data, tmp_path):
    for bad, key in (("model.compat=author", "model.compat"), ("optim.lr_interval=iter", "optim.lr_interval"),
                     ("data.crop=tv", "data.crop"), ("run.probe_optimizer=own", "run.probe_optimizer")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            Trainer(small_cfg(tiny_data, tmp_path, bad))


# -- 6. online probes in the main optimiser and clip -------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_shared_probes_sit_inside_the_optimizer_and_the_clip(tiny_data, tmp_path, mode):
    tr = Trainer(small_cfg(tiny_data, tmp_path, "run.online_probe=true", f"run.probe_optimizer={mode}",
                           "optim.clip_grad=1e-6", "optim.warmup_epochs=0", "optim.epochs=1",
                           "optim.max_steps=1", "optim.lr=1e-3"))
    probe_ids = {id(p) for p in tr.probes.parameters()}
    in_main = {id(p) for g in tr.optimizer.param_groups for p in g["params"]} & probe_ids
    assert (in_main == probe_ids) if mode == "shared" else not in_main
    assert (tr.probe_optimizer is None) == (mode == "shared")
    if mode == "shared":  # the probe weights decay like every other matrix, their biases do not
        for g in tr.optimizer.param_groups:
            for p in g["params"]:
                if id(p) in probe_ids:
                    assert g["weight_decay"] == (0.05 if p.ndim == 2 else 0.0)
    captured = {}
    step = tr.optimizer.step

    def spy(*a, **k):  # the gradients the optimiser is about to apply, after the clip
        encoder = [p.grad for n, p in tr.model.named_parameters() if p.grad is not None]
        probes = [p.grad for p in tr.probes.parameters() if p.grad is not None]
        captured["enc"] = torch.linalg.vector_norm(torch.stack([g.norm() for g in encoder]))
        captured["all"] = torch.linalg.vector_norm(torch.stack([g.norm() for g in encoder + probes]))
        return step(*a, **k)

    tr.optimizer.step = spy
    tr.train()
    if mode == "shared":  # one global clip over encoder, decoder and probes
        assert float(captured["all"]) == pytest.approx(1e-6, rel=1e-3)
    else:  # the model alone is clipped; the probes keep their own, larger gradients
        assert float(captured["enc"]) == pytest.approx(1e-6, rel=1e-3)
        assert float(captured["all"]) > 1e-3


# -- 5. MAE's TF-style crop ------------------------------------------------------------------------------------------
def mae_crop_params(width, height, scale, ratio):
    """Transcription of MAE util/crop.py RandomResizedCrop.get_params (torch's generator, same draw order)."""
    area = height * width
    target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
    log_ratio = torch.log(torch.tensor(ratio))
    aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    w, h = min(w, width), min(h, height)
    i = torch.randint(0, height - h + 1, size=(1,)).item()
    j = torch.randint(0, width - w + 1, size=(1,)).item()
    return i, j, h, w


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (64, 64), (1000, 120)])
def test_tf_crop_draws_what_maes_crop_draws(size):
    img = Image.new("RGB", size)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    torch.manual_seed(7)
    ours = [TFRandomResizedCrop.get_params(img, scale, ratio) for _ in range(300)]
    torch.manual_seed(7)
    ref = [mae_crop_params(*size, scale, ratio) for _ in range(300)]
    assert ours == ref


def test_tf_crop_is_larger_on_average_than_torchvisions():
    """On a 500 x 375 image at scale (0.08, 1): mean area fraction 0.518 (TF) vs 0.435 (torchvision)."""
    img = Image.new("RGB", (500, 375))
    torch.manual_seed(0)

    def mean_area(get_params):
        fr = [h * w / (500 * 375) for _, _, h, w in (get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
                                                      for _ in range(20000))]
        return float(np.mean(fr))

    tf, tv = mean_area(TFRandomResizedCrop.get_params), mean_area(T.RandomResizedCrop.get_params)
    assert tf == pytest.approx(0.518, abs=0.01) and tv == pytest.approx(0.435, abs=0.01)


def test_pretrain_transform_uses_the_tf_crop_by_default():
    assert isinstance(pretrain_transform(32).transforms[0], TFRandomResizedCrop)
    crop = pretrain_transform(32, crop="torchvision").transforms[0]
    assert type(crop) is T.RandomResizedCrop
    with pytest.raises(ValueError, match="crop"):
        pretrain_transform(32, crop="tpu")


# -- configs ----------------------------------------------------------------------------------------------------------
def test_authors_configs_state_every_switch():
    def load(name):
        return load_config(PretrainConfig, name, ["data.root=/data/imagenet"])

    cfg = load("pretrain/gmae_vit_b16_400ep_authors")
    assert (cfg.model.compat, cfg.optim.lr_interval, cfg.run.online_probe, cfg.run.probe_optimizer,
            cfg.data.crop, cfg.optim.batch_per_device) == ("authors", "epoch", True, "shared", "tf", 16)
    assert cfg.optim.effective_lr() == pytest.approx(1.6e-3)
    small = load("pretrain/gmae_vit_b16_400ep_authors_bs1024")
    assert small.optim.batch_size == 1024 and small.optim.effective_lr() == pytest.approx(4e-4)
    mae = load("pretrain/mae_vit_b16_400ep")
    assert (mae.model.loss_type, mae.data.crop) == ("masked_norm", "torchvision")
    assert load("pretrain/mae_vit_b16_400ep_pixel").model.loss_type == "masked"
    assert load("pretrain/mae_tiny").model.loss_type == "masked"


def test_authors_model_renders_with_gsplat_010_rules():
    from gmae.render import render

    _, authors = tiny_pair()
    imgs = torch.randn(2, 3, 32, 32)
    latent, _, _, ids_keep = authors.encoder(imgs, 0.75, torch.rand(2, 16))
    g = authors.decode_gaussians(latent, ids_keep)
    ours = authors.render(g, 32, 32)
    ref = render(g, 32, 32, backend="torch", compat="gsplat-0.1.0").rgb.permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert (ours - render(g, 32, 32, backend="torch").rgb.permute(0, 3, 1, 2)).abs().max() > 1e-3


def test_authors_config_trains_from_the_cli(tiny_data, tmp_path):
    """The done-when of the fidelity issue: the authors' preset builds and trains (tiny overrides, CPU)."""
    from gmae.cli import main as cli_main
    from gmae.engine.checkpoint import load_checkpoint

    rc = cli_main(["pretrain", "--config", "pretrain/gmae_vit_b16_400ep_authors", "--data", str(tiny_data / "imagenet"),
                   "--out", str(tmp_path), "model.name=gmae_vit_tiny_patch8", "model.num_gaussians=32",
                   "data.img_size=64", "data.num_workers=0", "optim.batch_size=16", "optim.max_steps=3",
                   "run.device=cpu", "run.progress=false", "run.tensorboard=false", "run.log_every_steps=1"])
    assert rc == 0
    ck = load_checkpoint(tmp_path / "checkpoint.pth")
    assert ck["step"] == 3 and ck["config"]["model"]["compat"] == "authors" and ck["probes"] is not None
    log = [r for r in map(json.loads, open(tmp_path / "metrics.jsonl")) if "event" not in r]
    peak = 1e-4 * 16 / 256  # the authors' epoch 0 runs at a fifth of the peak from its first step
    assert all(r["lr"] == pytest.approx(peak * authors_epoch_lr_factor(r["epoch"], 5, 400)) for r in log)
    assert all(np.isfinite(r["loss"]) and "probe_acc_block0" in r for r in log)
