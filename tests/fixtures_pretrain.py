"""Shared pretraining fixture: a GMAE training checkpoint from the real engine (configs/pretrain/gmae_tiny.yaml),
cut to a few optimizer steps so it costs seconds. Imported by conftest.py.

It proves the plumbing (our checkpoint layout, stored config and arch), not representation quality: a few steps
on the tiny set leave the encoder close to its initialisation.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_gmae_checkpoint(tiny_data, tmp_path_factory):
    """Path of ``checkpoint.pth`` after 4 steps (batch 16) of the tiny GMAE preset on the tiny data."""
    from gmae.config import load_config
    from gmae.engine.config import PretrainConfig
    from gmae.engine.train import Trainer

    out = tmp_path_factory.mktemp("tiny_gmae")
    cfg = load_config(PretrainConfig, "pretrain/gmae_tiny", [
        f"data.root={tiny_data / 'imagenet'}", f"run.out_dir={out}", "optim.max_steps=4", "optim.batch_size=16",
        "optim.batch_per_device=16", "run.progress=false", "run.tensorboard=false", "run.device=cpu"])
    Trainer(cfg).train()
    return out / "checkpoint.pth"
