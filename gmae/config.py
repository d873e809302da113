"""Typed configs: dataclass schemas, YAML files, ``key=value`` overrides, validated before any work starts.

A YAML file may start from another with ``_base_: relative/or/absolute.yaml`` and list only what differs
(that is how each ablation is one short file). Unknown keys and wrong types raise :class:`ConfigError`
naming the key and the file or override it came from.

    cfg = load_config(PretrainConfig, "configs/pretrain/gmae_vit_b16_400ep.yaml", ["optim.blr=2e-4"])
    save_config(cfg, out_dir / "config.yaml")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from gmae.io import atomic_write_text

T = TypeVar("T")
BASE_KEY = "_base_"
CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A config file or override that does not fit its schema; the message names the key and the source."""


def resolve_config_path(path: str | os.PathLike) -> Path:
    """Accept a path, or a name relative to the packaged ``configs/`` folder (``pretrain/gmae_tiny``)."""
    p = Path(path)
    # names like "pretrain/gmae_vit_b16_400ep_scale0.5" contain dots, so append ".yaml" rather than set a suffix
    candidates = [p, Path(f"{p}.yaml"), CONFIG_ROOT / p, Path(f"{CONFIG_ROOT / p}.yaml")]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"config file not found: {path} (also looked under {CONFIG_ROOT})")


def _read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: circular {BASE_KEY} chain {[str(s) for s in seen]}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    chain: list[tuple[Path, dict]] = []
    base = data.pop(BASE_KEY, None)
    if base is not None:
        base_path = Path(base)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY} file not found: {base_path}")
        chain.extend(_read_yaml_chain(base_path, seen + (path,)))
    chain.append((path, data))
    return chain


def _merge(cfg: DictConfig, update: Any, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, update)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"{source}: bad key {key!r}: {msg}") from None


def load_config(schema: type[T], path: str | os.PathLike | None = None,
                overrides: Sequence[str] = ()) -> T:
    """Schema defaults <- YAML chain <- ``key=value`` overrides; returns a schema (dataclass) instance."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"schema must be a dataclass, got {schema!r}")
    cfg = OmegaConf.structured(schema)
    if path is not None:
        for src, data in _read_yaml_chain(resolve_config_path(path)):
            cfg = _merge(cfg, data, str(src))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, _, value = item.partition("=")
        key = key.strip()
        parsed = yaml.safe_load(value) if value.strip() != "" else ""
        node: dict = {}
        cursor = node
        parts = key.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = parsed
        cfg = _merge(cfg, node, f"override {item!r}")
    try:
        return OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(f"config key {e.full_key!r} is required but not set (in {path or 'the defaults'})"
                          ) from None
    except OmegaConfBaseException as e:
        msg = (getattr(e, "msg", None) or str(e)).splitlines()[0]
        raise ConfigError(f"config key {getattr(e, 'full_key', '')!r}: {msg}") from None


def config_to_dict(cfg: Any) -> dict:
    """A plain dict of a config instance (for checkpoints and result records)."""
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def config_to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the effective config (atomically) next to a run's outputs."""
    return atomic_write_text(path, config_to_yaml(cfg))


def config_from_dict(schema: type[T], data: dict, source: str = "checkpoint") -> T:
    """Rebuild a typed config from a stored dict (e.g. the one saved inside a checkpoint)."""
    cfg = _merge(OmegaConf.structured(schema), data, source)
    return OmegaConf.to_object(cfg)
