"""One fixture per test artefact, built once per test session: the tiny data set, a random tiny encoder (as a
training checkpoint and as its `gmae export`), and tiny GMAE / MAE checkpoints from the real pretraining engine.

The pretrained checkpoints prove the plumbing (our checkpoint layout, stored config and arch), not representation
quality: a few steps on the tiny set leave the encoder close to its initialisation.
"""

import os

# Nothing may download at run time: a stray pretrained=True fails in 0.2 s instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", os.path.join(os.path.dirname(__file__), ".torch_home_unused"))

import pytest  # noqa: E402

# The tiny encoder: 64 px, patch 8, width 192 (the tiny COCO config's backbone; the tiny presets' encoder).
TINY_ENCODER_ARCH = dict(img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The embedded tiny multi-task data set (64 px), generated once per test session."""
    from gmae.data.tiny import generate_tiny

    root = tmp_path_factory.mktemp("tiny")
    generate_tiny(root, seed=0, size=64)
    return root


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A random tiny encoder (seed 0; LayerNorms and biases perturbed so a swapped weight / bias would show):
    {"module": the encoder in eval mode, "arch", "train_ckpt": a training-checkpoint layout ("encoder.*" keys
    + stored arch), "export": its `gmae export` file, "dir"}."""
    import torch

    from gmae.engine.checkpoint import export_encoder
    from gmae.models.vit import MaskedViTEncoder

    torch.manual_seed(0)
    enc = MaskedViTEncoder(**TINY_ENCODER_ARCH)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    d = tmp_path_factory.mktemp("tiny_encoder")
    train_ckpt = d / "checkpoint.pth"
    torch.save({"model": {"encoder." + k: v for k, v in enc.state_dict().items()},
                "arch": {"encoder": enc.architecture()}}, train_ckpt)
    export = export_encoder(train_ckpt, d / "encoder.pth")
    return {"module": enc.eval(), "arch": dict(TINY_ENCODER_ARCH), "train_ckpt": train_ckpt, "export": export,
            "dir": d}


def _pretrain_tiny(tiny_data, out, config):
    """``checkpoint.pth`` after 4 optimizer steps (batch 16) of a tiny preset on the tiny data."""
    from gmae.config import load_config
    from gmae.engine.config import PretrainConfig
    from gmae.engine.train import Trainer

    cfg = load_config(PretrainConfig, config, [
        f"data.root={tiny_data / 'imagenet'}", f"run.out_dir={out}", "optim.max_steps=4", "optim.batch_size=16",
        "optim.batch_per_device=16", "run.progress=false", "run.tensorboard=false", "run.device=cpu"])
    Trainer(cfg).train()
    return out / "checkpoint.pth"


@pytest.fixture(scope="session")
def tiny_gmae_checkpoint(tiny_data, tmp_path_factory):
    """A GMAE training checkpoint of configs/pretrain/gmae_tiny.yaml (4 steps)."""
    return _pretrain_tiny(tiny_data, tmp_path_factory.mktemp("tiny_gmae"), "pretrain/gmae_tiny")


@pytest.fixture(scope="session")
def tiny_mae_checkpoint(tiny_data, tmp_path_factory):
    """An MAE training checkpoint of configs/pretrain/mae_tiny.yaml (4 steps)."""
    return _pretrain_tiny(tiny_data, tmp_path_factory.mktemp("tiny_mae"), "pretrain/mae_tiny")
