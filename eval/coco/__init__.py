"""COCO detection: ViTDet Mask R-CNN in detectron2 on a GMAE / MAE encoder; box and mask AP.

  gmae eval coco --checkpoint CKPT --coco DIR [--config FILE] [--num-gpus N] [--ims-per-gpu b]
                 [--out DIR] [--results DIR] [--model NAME] [--resume] [key=value ...]

CKPT: our training checkpoint, a `gmae export` file, an official MAE checkpoint or timm weights; the encoder is
taken out on the fly (gmae.engine.checkpoint.load_encoder_weights), renamed to detectron2's ViT
(backbone.net.*), loaded through detectron2's checkpointer and refused unless every ViT weight but the
zero-initialised relative-position tables came from it.
DIR: COCO 2017 layout, DIR/annotations/instances_{train2017,val2017}.json + DIR/{train2017,val2017}/.
--config: a detectron2 LazyConfig file or a name under configs/coco/ (default mask_rcnn_vitdet_b_100ep;
also mask_rcnn_vitdet_l_100ep, and mask_rcnn_vitdet_tiny for CPU smoke runs). key=value overrides use
detectron2's LazyConfig keys (train.max_iter=1000, optimizer.lr=2e-4, ...), in reference-batch units.
Batch rule: the config's schedule is for train.reference_batch_size = 64 (ViTDet: 64 GPUs x 1 image). With
N processes x b images (--num-gpus N --ims-per-gpu b) the batch is B = N * b; when B != 64 the lr is
multiplied by B / 64 and every iteration count (max_iter, lr milestones, warmup, eval and checkpoint periods)
by 64 / B. Without --ims-per-gpu the config's batch (64) is split over the N processes and nothing is scaled.
Outputs under --out (default runs/coco/<config name>): log.txt, metrics.json, config.yaml, model_final.pth,
inference/coco_instances_results.json; records (protocol coco: ap_box, ap50_box, ap75_box, aps_box, apm_box,
apl_box and *_mask, in percent) go to --results (default: --out).
Needs detectron2: `bash scripts/install_detectron2.sh` (see eval/coco/install.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = "mask_rcnn_vitdet_b_100ep"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="encoder checkpoint: checkpoint.pth, a `gmae export` file, official MAE or timm weights")
    parser.add_argument("--coco", required=True, help="COCO root with annotations/, train2017/, val2017/")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"LazyConfig file or name under configs/coco/ (default {DEFAULT_CONFIG})")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (one per GPU; default 1)")
    parser.add_argument("--ims-per-gpu", type=int, default=None,
                        help="images per process; sets the batch to N x b and rescales lr and iterations")
    parser.add_argument("--out", default=None, help="output dir (default runs/coco/<config name>)")
    parser.add_argument("--results", default=None, help="results store (dir or .jsonl); default: the output dir")
    parser.add_argument("--model", default=None, help="model label of the records (default: from the checkpoint)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--dist-url", default="auto", help="torch.distributed init url for --num-gpus > 1")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="LazyConfig overrides")


def run(args: argparse.Namespace) -> int:
    from eval.coco.install import require_detectron2

    require_detectron2()
    from eval.coco.train import RunSpec, run_coco

    out = args.out or str(Path("runs") / "coco" / Path(args.config).stem)
    spec = RunSpec(config=args.config, coco=args.coco, checkpoint=args.checkpoint, out_dir=out,
                   overrides=list(args.overrides), num_gpus=args.num_gpus, ims_per_gpu=args.ims_per_gpu,
                   results=args.results, model_name=args.model, resume=args.resume, dist_url=args.dist_url)
    results = run_coco(spec)
    if results:
        box, mask = results.get("bbox", {}), results.get("segm", {})
        print(f"box AP {box.get('AP', float('nan')):.2f}  mask AP {mask.get('AP', float('nan')):.2f}  ({out})")
    return 0
