"""Train ViTDet Mask R-CNN from an encoder checkpoint with detectron2, evaluate box and mask AP, record them.

One run: build the config (file + overrides + the batch rule of :mod:`eval.coco.lazy_config`), check the
data, the encoder and the devices, then ``detectron2.engine.launch`` one process per GPU. Each process builds
the model, loads the encoder through :func:`eval.coco.checkpoint.load_backbone` (refusing a partial load),
trains with detectron2's (AMP)Trainer and hooks, and evaluates with COCOEvaluator (official pycocotools
COCOeval) at ``train.eval_period`` and after the last iteration. Rank 0 appends the final AP numbers
(percent, as detectron2 and the papers report them) to the results store: protocol ``coco``, metrics
``ap_box``, ``ap50_box``, ``ap75_box``, ``aps_box``, ``apm_box``, ``apl_box`` and the same with ``_mask``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger("eval.coco")

# COCOEvaluator task / metric names -> our record metric names
TASKS = {"bbox": "box", "segm": "mask"}
METRICS = {"AP": "ap", "AP50": "ap50", "AP75": "ap75", "APs": "aps", "APm": "apm", "APl": "apl"}


@dataclass
class RunSpec:
    """Everything a worker process needs, in plain types (it is pickled to spawned processes)."""
    config: str
    coco: str
    checkpoint: str
    out_dir: str
    overrides: list[str] = field(default_factory=list)
    num_gpus: int = 1
    ims_per_gpu: Optional[int] = None
    model_name: Optional[str] = None
    resume: bool = False
    dist_url: str = "auto"
    # what eval.coco.data.register_coco found in the json files (filled in once by run_coco)
    data_info: Optional[dict] = None


def build_config(spec: RunSpec):
    """Config file + overrides + output dir + data-derived settings + the batch rule -> (cfg, info dict).

    Raises (naming the key) on an impossible batch split or device setting; registers the data set.
    """
    import torch

    from eval.coco.data import register_coco
    from gmae.errors import Unavailable
    from eval.coco.lazy_config import load_config, resolve_config, scale_to_batch

    cfg = load_config(spec.config, spec.overrides)
    n = int(spec.num_gpus)
    if n < 1:
        raise ValueError(f"--num-gpus must be >= 1, got {n}")
    batch = n * int(spec.ims_per_gpu) if spec.ims_per_gpu else int(cfg.dataloader.train.total_batch_size)
    if batch % n:
        raise ValueError(f"dataloader.train.total_batch_size={batch} does not split over {n} processes")
    scaled = scale_to_batch(cfg, batch)

    device = str(cfg.train.device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise Unavailable("train.device=cuda but no CUDA device is visible (a ViT-B Mask R-CNN step at 1024 px "
                               "takes ~60 s on a CPU); for a CPU run pass train.device=cpu train.amp.enabled=False")
        if n > torch.cuda.device_count():
            raise Unavailable(f"--num-gpus {n} but only {torch.cuda.device_count()} CUDA devices are visible")
    elif device == "cpu":
        if cfg.train.amp.enabled:
            raise ValueError("train.amp.enabled=True needs CUDA (detectron2's AMPTrainer); pass "
                             "train.amp.enabled=False for a CPU run")
        cfg.train.ddp.fp16_compression = False
        cfg.train.ddp.device_ids = None  # CPU DDP takes no device ids
    else:
        raise ValueError(f"train.device must be cuda or cpu, got {device!r}")

    data = register_coco(spec.coco, spec.data_info)
    if int(cfg.model.roi_heads.num_classes) != data["num_classes"]:
        logger.info("model.roi_heads.num_classes: %s -> %d (the categories of %s)",
                    cfg.model.roi_heads.num_classes, data["num_classes"], spec.coco)
        cfg.model.roi_heads.num_classes = data["num_classes"]
    mapper = cfg.dataloader.train.mapper
    if data["rle_masks"] and mapper.get("instance_mask_format", "polygon") == "polygon":
        # detectron2 builds PolygonMasks only from polygons; RLE instance masks need the bitmask format
        logger.info("dataloader.train.mapper.instance_mask_format: polygon -> bitmask (RLE masks in %s)", spec.coco)
        mapper.instance_mask_format = "bitmask"
    cfg.train.output_dir = str(spec.out_dir)
    cfg.dataloader.evaluator.output_dir = str(Path(spec.out_dir) / "inference")
    info = {"config_file": str(resolve_config(spec.config)), "overrides": list(spec.overrides), "num_gpus": n,
            "ims_per_gpu": batch // n, **{("scaled." + k if "." in k else k): v for k, v in scaled.items()},
            "num_classes": data["num_classes"], "train_images": data["train"]["images"],
            "val_images": data["val"]["images"], "data": data}
    return cfg, info


def check_inputs(spec: RunSpec):
    """Everything that can be refused cheaply, in the launching process: config, data, devices, encoder shape.

    Returns (cfg, info, arch).
    """
    from eval.coco.checkpoint import check_architecture, resume_file
    from gmae.engine.checkpoint import load_encoder_weights

    cfg, info = build_config(spec)
    _, arch = load_encoder_weights(spec.checkpoint)
    check_architecture(arch, cfg.model.backbone.net, spec.checkpoint)
    if spec.resume:
        resume_file(spec.out_dir)  # a foreign last_checkpoint is refused before any work
    return cfg, info, arch


def _setup_logging(out_dir: str) -> None:
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    os.makedirs(out_dir, exist_ok=True)
    rank = comm.get_rank()
    setup_logger(out_dir, distributed_rank=rank, name="detectron2", abbrev_name="d2")
    setup_logger(out_dir, distributed_rank=rank, name="eval.coco")


def do_test(cfg, model) -> dict[str, Any]:
    """COCOEvaluator over ``dataloader.test``: {"bbox": {"AP", "AP50", ...}, "segm": {...}} (percent)."""
    from detectron2.config import instantiate
    from detectron2.evaluation import inference_on_dataset, print_csv_format

    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if results:
        print_csv_format(results)
    return results


def worker(spec: RunSpec) -> Optional[dict[str, Any]]:
    """One training process (called by detectron2's launch): train, evaluate, and on rank 0 write records."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.engine import AMPTrainer, SimpleTrainer, default_writers, hooks
    from detectron2.engine.defaults import create_ddp_model
    from detectron2.utils import comm
    from detectron2.utils.env import seed_all_rng

    from eval.coco.checkpoint import check_architecture, load_backbone, resume_file, safe_checkpointer
    from gmae.engine.checkpoint import load_encoder_weights

    _setup_logging(spec.out_dir)
    cfg, info = build_config(spec)
    seed = int(cfg.train.get("seed", -1))
    seed_all_rng(None if seed < 0 else seed + comm.get_rank())
    if comm.is_main_process():
        LazyConfig.save(cfg, str(Path(spec.out_dir) / "config.yaml"))
    logger.info("run: %s", {k: v for k, v in info.items() if k != "data"})

    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    checkpointer_dir = spec.out_dir
    resume_path = resume_file(checkpointer_dir) if spec.resume else None
    encoder, arch = load_encoder_weights(spec.checkpoint)
    check_architecture(arch, cfg.model.backbone.net, spec.checkpoint)
    backbone = load_backbone(model, encoder, source=spec.checkpoint)
    del encoder

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = safe_checkpointer(model, checkpointer_dir, trainer=trainer)

    final: dict[str, Any] = {}

    def test_and_keep():  # EvalHook's last call (after the last iteration) leaves the final numbers here
        final["results"] = do_test(cfg, model)
        return final["results"]

    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, test_and_keep),
        hooks.PeriodicWriter(default_writers(spec.out_dir, cfg.train.max_iter), period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])
    start_iter = 0
    if resume_path is not None:
        checkpointer.load(str(resume_path))
        start_iter = trainer.iter + 1
        logger.info("resuming from %s at iteration %d", resume_path, start_iter)
    trainer.train(start_iter, int(cfg.train.max_iter))

    if not comm.is_main_process():
        return None
    results = final.get("results") or {}
    if "bbox" not in results:
        raise RuntimeError(f"evaluation produced no box AP (got {sorted(results)}); see {spec.out_dir}/log.txt")
    records = write_records(results, spec, cfg, info, backbone)
    logger.info("wrote %d coco records to %s", len(records), Path(spec.out_dir) / RECORDS_FILE)
    return results


def metric_values(results: dict[str, dict[str, float]]) -> dict[str, Optional[float]]:
    """COCOEvaluator output -> {"ap_box": .., "ap50_box": .., ..., "apl_mask": ..}; NaN (no such objects) -> None."""
    out: dict[str, Optional[float]] = {}
    for task, suffix in TASKS.items():
        if task not in results:
            continue
        for src, name in METRICS.items():
            v = results[task].get(src)
            out[f"{name}_{suffix}"] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return out


RECORDS_FILE = "records.json"


def write_records(results, spec: RunSpec, cfg, info, backbone) -> list[dict]:
    """The records of rank 0's final evaluation, written to OUT/records.json for the launching process (the
    eval shell appends them to the results store)."""
    import detectron2

    from gmae.engine.checkpoint import stored_model_name
    from gmae.io import atomic_write_json
    from gmae.results import make_record

    name = spec.model_name or stored_model_name(spec.checkpoint)
    config = {"file": info["config_file"], "overrides": info["overrides"], "saved": str(Path(spec.out_dir) /
              "config.yaml"), "batch": int(cfg.dataloader.train.total_batch_size), "num_gpus": info["num_gpus"],
              "lr": float(cfg.optimizer.lr), "max_iter": int(cfg.train.max_iter),
              "milestones": list(cfg.lr_multiplier.milestones), "warmup_iters": int(cfg.lr_multiplier.warmup_iters),
              "amp": bool(cfg.train.amp.enabled), "reference_batch": int(cfg.train.reference_batch_size)}
    records = [make_record("coco", metric, value, model=name, checkpoint=spec.checkpoint, config=config,
                           data=str(spec.coco), split="val2017", out_dir=str(spec.out_dir),
                           detectron2=detectron2.__version__, evaluator="pycocotools COCOeval (official)",
                           backbone_tensors_loaded=backbone["loaded"])
               for metric, value in metric_values(results).items()]
    atomic_write_json(Path(spec.out_dir) / RECORDS_FILE, records)
    return records


def read_records(out_dir: str | Path) -> list[dict]:
    import json

    path = Path(out_dir) / RECORDS_FILE
    if not path.is_file():
        raise RuntimeError(f"the COCO run wrote no {path}; see {Path(out_dir) / 'log.txt'}")
    return json.loads(path.read_text())


def run_coco(spec: RunSpec) -> Optional[dict[str, Any]]:
    """Check the inputs, then train + evaluate on ``spec.num_gpus`` processes; returns rank 0's results."""
    from detectron2.engine import launch

    _, info, _ = check_inputs(spec)
    spec = replace(spec, data_info=info["data"])
    (Path(spec.out_dir) / RECORDS_FILE).unlink(missing_ok=True)  # never hand back an earlier run's numbers
    if spec.num_gpus == 1:
        return worker(spec)
    launch(worker, spec.num_gpus, num_machines=1, machine_rank=0, dist_url=spec.dist_url, args=(spec,))
    return None
