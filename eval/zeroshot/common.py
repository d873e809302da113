"""What the zero-shot commands (``gmae eval layers / figure-ground / edges``) share around their protocols:
the checks of the keys every one of them has, the GMAE model on the shell's device, and 8-bit map files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from eval.command import Shortcut
from gmae.errors import InputError

BACKENDS = ("auto", "torch", "dense", "gsplat")
DEVICES = ("auto", "cpu", "cuda")

# the flags every zero-shot command has had; each only names a config key
SHORTCUTS = (
    Shortcut("--device", "run.device", "auto | cpu | cuda"),
    Shortcut("--backend", "backend", "rendering backend: auto | torch | dense | gsplat"),
)


def validate_device(cfg) -> None:
    if cfg.run.device not in DEVICES:
        raise InputError(f"run.device must be one of {DEVICES}, got {cfg.run.device!r}")


def validate_run(cfg) -> None:
    """``run.device`` and ``backend``, naming the key."""
    validate_device(cfg)
    if cfg.backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {cfg.backend!r}")


def at_least(cfg, keys: tuple[str, ...], low: int) -> None:
    """Every named key (``a.b`` paths allowed; None is skipped) must be >= ``low``."""
    for key in keys:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value is not None and value < low:
            raise InputError(f"{key} must be >= {low}, got {value}")


def load_model(ctx):
    """(model, its PretrainConfig): the GMAE of the shell's checkpoint, in eval mode on the shell's device."""
    from gmae.engine.checkpoint import load_pretrained_model

    model, cfg = load_pretrained_model(ctx.checkpoint, needs="predict_gaussians")
    return model.to(ctx.device), cfg


def map_png(arr: np.ndarray) -> bytes:
    """A map in [0, 1] as an 8-bit single-channel PNG (value round(255 x))."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.rint(np.clip(arr, 0, 1) * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_map(path: Path, arr: np.ndarray) -> Path:
    from gmae.io import atomic_write

    data = map_png(arr)
    return atomic_write(path, lambda f: f.write(data))
