"""COCO detection: ViTDet Mask R-CNN in detectron2 on a GMAE / MAE encoder; box and mask AP.

  gmae eval coco --checkpoint CKPT --coco DIR [--config FILE] [--num-gpus N] [--ims-per-gpu b]
                 [--out DIR] [--results DIR] [--model-name NAME] [--resume] [key=value ...]

Batch rule: B = N * b (--num-gpus N, --ims-per-gpu b); when B != 64 the lr is scaled by B / 64 and every
iteration count by 64 / B. Needs detectron2 (`bash scripts/install_detectron2.sh`). Design notes: docs/coco.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from eval.command import Context, EvalCommand, EvalRunConfig, Outcome, Shortcut

DEFAULT_CONFIG = "mask_rcnn_vitdet_b_100ep"
# keys of CocoConfig; every other key=value is a detectron2 LazyConfig override (train.max_iter=..., ...)
OWN_KEYS = ("data.", "run.", "detectron2_config=", "lazy_overrides=")


@dataclass
class CocoDataConfig:
    root: str = "???"  # COCO 2017 root: annotations/instances_{train,val}2017.json, train2017/, val2017/


@dataclass
class CocoRunConfig(EvalRunConfig):
    out_dir: str = ""  # "" = runs/coco/<config name>
    num_gpus: int = 1  # processes, one per GPU
    # images per process: the batch becomes num_gpus x ims_per_gpu, lr and iterations rescaled (module docstring)
    ims_per_gpu: Optional[int] = None
    resume: bool = False  # continue from the last checkpoint in the output dir
    dist_url: str = "auto"  # torch.distributed init url for num_gpus > 1


@dataclass
class CocoConfig:
    """The shell's view of a COCO run; the detector itself is the LazyConfig ``detectron2_config`` plus
    ``lazy_overrides`` (detectron2's keys, in reference-batch units)."""
    detectron2_config: str = DEFAULT_CONFIG
    lazy_overrides: List[str] = field(default_factory=list)
    data: CocoDataConfig = field(default_factory=CocoDataConfig)
    run: CocoRunConfig = field(default_factory=CocoRunConfig)


def configure(command: EvalCommand, config_file: Optional[str], overrides: list[str]) -> CocoConfig:
    """--config names the LazyConfig; key=value pairs go to CocoConfig when they are its keys, else to detectron2."""
    own = [o for o in overrides if o.startswith(OWN_KEYS)]
    lazy = [o for o in overrides if not o.startswith(OWN_KEYS)]
    if config_file is not None:
        own.append(f"detectron2_config={config_file}")
    cfg = EvalCommand.config(command, None, own)
    cfg.lazy_overrides = list(cfg.lazy_overrides) + lazy
    if not cfg.run.out_dir:
        cfg.run.out_dir = str(Path("runs") / "coco" / Path(cfg.detectron2_config).stem)
    return cfg


def validate(cfg: CocoConfig) -> None:
    if cfg.run.num_gpus < 1:
        raise ValueError(f"run.num_gpus must be >= 1, got {cfg.run.num_gpus}")
    if cfg.run.ims_per_gpu is not None and cfg.run.ims_per_gpu < 1:
        raise ValueError(f"run.ims_per_gpu must be >= 1 or null, got {cfg.run.ims_per_gpu}")


def evaluate(cfg: CocoConfig, ctx: Context) -> Outcome:
    """Train + evaluate ViTDet on ``run.num_gpus`` processes (eval/coco/train.py); the records come back from
    rank 0 through OUT/records.json, also when the processes were spawned."""
    from eval.coco.install import require_detectron2

    require_detectron2()
    from eval.coco.train import RunSpec, read_records, run_coco

    spec = RunSpec(config=cfg.detectron2_config, coco=cfg.data.root, checkpoint=str(ctx.checkpoint),
                   out_dir=str(ctx.out_dir), overrides=list(cfg.lazy_overrides), num_gpus=cfg.run.num_gpus,
                   ims_per_gpu=cfg.run.ims_per_gpu, model_name=ctx.model_label(), resume=cfg.run.resume,
                   dist_url=cfg.run.dist_url)
    run_coco(spec)
    records = read_records(spec.out_dir)
    values = {r["metric"]: (float("nan") if r["value"] is None else r["value"]) for r in records}
    line = (f"box AP {values.get('ap_box', float('nan')):.2f}  mask AP {values.get('ap_mask', float('nan')):.2f}"
            f"  ({ctx.out_dir})")
    return Outcome(records, line, values)


class _CocoCommand(EvalCommand):
    def config(self, config_file=None, overrides=()):
        return configure(self, config_file, list(overrides))


command = _CocoCommand(
    "coco", CocoConfig, evaluate, validate=validate, saves_config=True,
    data_help="COCO root with annotations/, train2017/, val2017/ (sets data.root)",
    config_help=f"(a detectron2 LazyConfig file or name under configs/coco/; default {DEFAULT_CONFIG})",
    shortcuts=[Shortcut("--coco", "data.root", "COCO root (same as --data)"),
               Shortcut("--num-gpus", "run.num_gpus", "processes, one per GPU (default 1)"),
               Shortcut("--ims-per-gpu", "run.ims_per_gpu",
                        "images per process; sets the batch to N x b and rescales lr and iterations"),
               Shortcut("--resume", "run.resume", "continue from the last checkpoint in --out", switch=True),
               Shortcut("--dist-url", "run.dist_url", "torch.distributed init url for --num-gpus > 1")])
