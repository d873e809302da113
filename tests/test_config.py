"""Typed configs: YAML chains, overrides, and errors that name the key before any work starts."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pytest

from gmae.config import ConfigError, config_to_dict, load_config, save_config
from gmae.engine.config import PretrainConfig

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class Inner:
    lr: float = 0.1
    steps: int = 10
    name: Optional[str] = None


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    sizes: List[int] = field(default_factory=lambda: [1, 2])
    flag: bool = False


def test_defaults_yaml_and_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("inner:\n  lr: 0.5\n  steps: 3\nflag: true\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\ninner:\n  steps: 7\n")
    cfg = load_config(Outer, child, ["inner.name=run1", "sizes=[4, 5, 6]"])
    assert cfg.inner.lr == 0.5 and cfg.inner.steps == 7 and cfg.inner.name == "run1"
    assert cfg.flag is True and cfg.sizes == [4, 5, 6]


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner:\n  lrr: 0.5\n")
    with pytest.raises(ConfigError, match=r"inner\.lrr") as e:
        load_config(Outer, bad)
    assert str(bad) in str(e.value)


@pytest.mark.parametrize("override,key", [("inner.steps=ten", "inner.steps"), ("nope=1", "nope"),
                                          ("inner.unknown=2", "inner.unknown")])
def test_bad_override_names_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(Outer, None, [override])


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, None, ["inner.lr"])


def test_missing_mandatory_value_is_named():
    with pytest.raises(ConfigError, match=r"data\.root"):
        load_config(PretrainConfig, CONFIGS / "pretrain" / "gmae_vit_b16_400ep.yaml")


def test_effective_config_round_trips(tmp_path):
    cfg = load_config(PretrainConfig, "pretrain/gmae_vit_b16_400ep_scale0.5", ["data.root=/data/imagenet"])
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(PretrainConfig, path)
    assert config_to_dict(again) == config_to_dict(cfg)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, "no/such/file.yaml")


def test_paper_recipe_defaults():
    """The ViT-B config carries the paper's recipe (../shared/spec/gmae-method.md)."""
    cfg = load_config(PretrainConfig, "pretrain/gmae_vit_b16_400ep", ["data.root=/x"])
    assert cfg.model.name == "gmae_vit_base_patch16"
    assert (cfg.model.num_gaussians, cfg.model.max_scale, cfg.model.mask_ratio) == (256, 1.0, 0.75)
    assert cfg.model.loss_type == "masked"
    assert (cfg.optim.batch_size, cfg.optim.epochs, cfg.optim.warmup_epochs) == (4096, 400, 5)
    assert cfg.optim.effective_lr() == pytest.approx(1.6e-3)
    assert cfg.optim.betas == [0.9, 0.95] and cfg.optim.weight_decay == 0.05 and cfg.optim.clip_grad == 2.0
    assert cfg.data.crop_scale == [0.08, 1.0] and cfg.data.img_size == 224


@pytest.mark.parametrize("name,key,value", [
    ("scale0.5", "max_scale", 0.5), ("scale2", "max_scale", 2.0), ("mask0.7", "mask_ratio", 0.7),
    ("mask0.8", "mask_ratio", 0.8), ("loss_all", "loss_type", "all"), ("loss_masked_norm", "loss_type", "masked_norm"),
    ("k64", "num_gaussians", 64), ("k128", "num_gaussians", 128), ("k512", "num_gaussians", 512)])
def test_ablation_files_change_one_thing(name, key, value):
    base = config_to_dict(load_config(PretrainConfig, "pretrain/gmae_vit_b16_400ep", ["data.root=/x"]))
    abl = config_to_dict(load_config(PretrainConfig, f"pretrain/gmae_vit_b16_400ep_{name}", ["data.root=/x"]))
    assert abl["model"][key] == value
    base["model"][key] = value
    base["run"]["out_dir"] = abl["run"]["out_dir"]
    assert abl == base


def _schema_for(folder: str) -> type:
    """The dataclass a configs/<folder>/ YAML fills: PretrainConfig, or the `gmae eval <folder>` command's schema."""
    import importlib

    from gmae.cli import COMMANDS

    if folder == "pretrain":
        return PretrainConfig
    module = {words[-1]: mod for words, mod, _ in COMMANDS}[folder.replace("_", "-")]
    return importlib.import_module(module).command.schema


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_yaml_fits_its_schema(path):
    """Each file under configs/ loads into its command's dataclass: a stray key (e.g. an old `reference:` block)
    fails here; only values a user must supply (data.root, a checkpoint) may still be missing."""
    try:
        load_config(_schema_for(path.parent.name), path)
    except ConfigError as e:
        assert "is required but not set" in str(e), str(e)
