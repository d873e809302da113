"""``create_model(name, **overrides)``: one registry for GMAE, the MAE baseline and the tiny CPU models."""

from __future__ import annotations

import importlib
from typing import Callable

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
# modules that register models when imported (the MAE baseline lives outside gmae/)
_PROVIDERS = ("gmae.models.gmae_variants", "baselines.mae")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _REGISTRY and _REGISTRY[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def _load_providers() -> None:
    for mod in _PROVIDERS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a provider that exists but fails to import is a real error
                raise


def list_models() -> list[str]:
    _load_providers()
    return sorted(_REGISTRY)


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace its constructor defaults (e.g. num_gaussians=64)."""
    _load_providers()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**overrides)
