"""``gmae eval bsds``: score a folder of soft edge maps with the BSDS500 boundary benchmark
(:mod:`eval.bsds_benchmark`; design notes: docs/bsds.md).

    gmae eval bsds --pred PRED_DIR --gt GT_DIR --model-name NAME [--out DIR] [--config bsds/default]
                   [--results DIR] [key=value ...]

Writes OUT/bsds.json (atomically) with ods / ois / ap / r50 / n_images, the ODS and OIS thresholds, P and R, the
dataset P/R curve and counts per threshold, and a per-image table, and appends the four metrics to the results
store (``--results``, default OUT) as protocol ``bsds_edges``, labelled ``run.model_name``. Settings:
:class:`BsdsConfig` (``configs/bsds/default.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.bsds_benchmark import (BENCHMARK_SHORTCUTS, DEFAULT_MAX_DIST, DEFAULT_THRESHOLDS, bsds_line, bsds_records,
                                 evaluate_dir, json_safe, usable_workers, validate_benchmark)
from eval.command import EvalCommand, EvalRunConfig, Outcome, Shortcut


@dataclass
class BsdsDataConfig:
    root: str = "???"  # ground truth: folder of BSDS500 <id>.mat (--gt); "???" = must be given
    pred: str = "???"  # predictions: folder of <id>.png soft edge maps, 8-bit, value / 255 (--pred)


@dataclass
class BsdsConfig:
    thresholds: int = DEFAULT_THRESHOLDS  # number of thresholds, linspace(1/(n+1), n/(n+1), n)
    max_dist: float = DEFAULT_MAX_DIST  # matching radius as a fraction of the image diagonal
    workers: int = 0  # worker processes; 0: all usable CPUs
    data: BsdsDataConfig = field(default_factory=BsdsDataConfig)
    # run.model_name labels the records (required: there is no checkpoint to take a name from)
    run: EvalRunConfig = field(default_factory=lambda: EvalRunConfig(out_dir="runs/bsds"))


def validate(cfg: BsdsConfig) -> None:
    from gmae.errors import InputError

    validate_benchmark(cfg)
    for key, folder in (("data.pred", cfg.data.pred), ("data.root", cfg.data.root)):
        if not Path(folder).is_dir():
            raise InputError(f"{key}: folder not found: {folder}")
    if not cfg.run.model_name:
        raise InputError("run.model_name (--model-name NAME) is required: it labels the bsds_edges records")


def evaluate(cfg: BsdsConfig, ctx) -> Any:
    """Score the predictions against the ground truth, write OUT/bsds.json; records of ODS / OIS / AP / R50."""
    from gmae.io import atomic_write_json

    res = json_safe(evaluate_dir(cfg.data.pred, cfg.data.root, cfg.thresholds, cfg.max_dist,
                                 usable_workers(cfg.workers), progress=cfg.run.progress))
    result_file = atomic_write_json(ctx.out_dir / "bsds.json", res)
    records = bsds_records(ctx, res, data=str(Path(cfg.data.root).resolve()),
                           result_file=str(result_file.resolve()))
    return Outcome(records, f"{bsds_line(res)} in {res['seconds']:.1f} s -> {result_file}", res)


command = EvalCommand(
    "bsds", BsdsConfig, evaluate, validate=validate, checkpoint="none",
    shortcuts=(Shortcut("--pred", "data.pred", "folder of <id>.png soft edge maps (8-bit, value/255)"),
               Shortcut("--gt", "data.root", "folder of BSDS500 <id>.mat ground truth"),
               *BENCHMARK_SHORTCUTS,
               Shortcut("--quiet", "run.progress", "no progress bar", switch=True, sets="false")),
    data_help="folder of BSDS500 <id>.mat ground truth (sets data.root, as --gt)",
    config_help="(bsds/default)")
