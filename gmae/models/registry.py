"""``create_model(name, **overrides)``: one registry for GMAE, the MAE baseline and the tiny CPU models.

A model registers itself where it is defined (``@register_model`` on its constructor function), as timm's
models do; importing :mod:`gmae.models` imports every module that defines one.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _REGISTRY and _REGISTRY[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace its constructor defaults (e.g. num_gaussians=64)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**overrides)
