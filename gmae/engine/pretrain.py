"""Pretrain GMAE or the MAE baseline: ``gmae pretrain --config FILE [--out DIR] [key=value ...]``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node=8 [--nnodes=N ...] -m gmae pretrain --config ...``.
The effective batch (optim.batch_size) is kept on any number of processes by gradient accumulation.
A run whose out dir holds checkpoint.pth resumes from it (``--no-resume`` starts over, refusing to overwrite).
At the end a ``pretrain`` record (metrics ``loss``, ``img_per_s``) is appended to the results store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gmae.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML file, or a name under configs/ (pretrain/gmae_tiny)")
    parser.add_argument("--out", default=None, help="output dir (overrides run.out_dir)")
    parser.add_argument("--data", default=None, help="ImageFolder root (overrides data.root)")
    parser.add_argument("--results", default=None,
                        help="results store (dir or .jsonl) for the pretrain record; default: the output dir")
    parser.add_argument("--no-resume", action="store_true", help="fail instead of resuming an existing run")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.blr=2e-4")


def run(args: argparse.Namespace) -> int:
    from gmae.engine.config import PretrainConfig

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"run.out_dir={args.out}")
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    cfg = load_config(PretrainConfig, args.config, overrides)
    out_dir = Path(cfg.run.out_dir)
    if args.no_resume and (out_dir / "checkpoint.pth").exists():
        print(f"gmae pretrain: {out_dir / 'checkpoint.pth'} exists and --no-resume was given", file=sys.stderr)
        return 2
    summary = pretrain(cfg, results=args.results, config_source=str(args.config))
    if summary.get("stopped_at") is None and summary.get("rank", 0) == 0:
        if summary.get("steps_run") == 0:
            print(f"pretrain: nothing to do, {summary['checkpoint']} is already at step {summary['step']} "
                  "(its records were written when it finished)")
        else:
            print(f"pretrain done: step {summary['step']}, loss {summary['loss']:.4f}, "
                  f"{summary['img_per_s']:.1f} img/s, checkpoint {summary['checkpoint']}")
    return 0


def pretrain(cfg, results: str | None = None, config_source: str | None = None) -> dict:
    """Train (or resume) and append the ``pretrain`` records; returns the run summary."""
    from gmae.config import config_to_dict
    from gmae.engine.distributed import cleanup
    from gmae.engine.train import Trainer
    from gmae.results import ResultsStore, make_record

    trainer = Trainer(cfg)
    try:
        summary = trainer.train(resume=True)
        summary["rank"] = trainer.dist.rank
        # a rerun of a finished run trains no step: its loss would be NaN, so it records nothing new
        if "stopped_at" not in summary and summary.get("steps_run") != 0 and trainer.dist.is_main:
            store = ResultsStore(results or cfg.run.out_dir)
            common = dict(model=cfg.model.name, checkpoint=summary["checkpoint"], config=config_to_dict(cfg),
                          data=cfg.data.root, config_file=config_source, steps=summary["step"],
                          world_size=trainer.dist.world_size)
            store.append([make_record("pretrain", "loss", summary["loss"], **common),
                          make_record("pretrain", "img_per_s", summary["img_per_s"], **common)])
        return summary
    finally:
        cleanup()
