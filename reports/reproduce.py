"""Regenerate the paper's tables end to end: ``gmae reproduce --preset smoke|tiny|paper --out DIR``.

smoke  CI-sized (<= 5 min on 2 CPU cores): tiny data, a few pretraining steps of GMAE and MAE, every evaluation
       on the tiny data, the report. Checks that the whole pipeline runs; its numbers mean nothing.
tiny   (<= 30 min on 2 CPU cores): longer tiny pretraining plus the paper's ablation sweep at tiny scale
       (k in 64/128/256, c in 0.5/1/2, mask ratio 0.7/0.8, loss all/masked_norm), kNN and linear probes of
       every variant, reconstruction, zero-shot edges vs Sobel/Canny, the report. Shows whether the paper's trends
       appear at tiny scale.
paper  writes the full-scale torchrun / SLURM commands (one sbatch script per step, dependencies chained) with
       the paper's configs; ``--launch`` submits them with sbatch. ``--slurm`` does the same for smoke / tiny
       (CPU jobs). Resources come from flags or ``--cluster FILE`` (reports/slurm.py); ``--status`` shows
       which submitted steps are pending, running, done or failed.

Every step writes a marker in DIR/.steps when it finishes, so a second run of the same preset skips finished
steps (``--force STEP`` reruns one). All records go to DIR/results.jsonl; the report to DIR/report/.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gmae.errors import InputError
from gmae.io import atomic_write_json
from reports.slurm import Job, add_resource_arguments, print_status, resources_from_args, write_scripts

PRESETS = ("smoke", "tiny", "paper")


@dataclass
class Step:
    name: str
    argv: list[str] = field(default_factory=list)  # arguments of ``gmae``
    needs: tuple[str, ...] = ()
    always: bool = False  # cheap steps that read the others' outputs (the report) run every time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, required=True)
    parser.add_argument("--out", required=True, help="output dir (data, runs, results.jsonl, report/)")
    parser.add_argument("--force", nargs="*", default=[], metavar="STEP", help="rerun these steps even if done")
    parser.add_argument("--only", nargs="*", default=None, metavar="STEP", help="run only these steps")
    parser.add_argument("--list", action="store_true", help="list the steps and whether they are done, then exit")
    parser.add_argument("--keep-going", action="store_true", help="continue after a failed step (report at the end)")
    parser.add_argument("--data", default=None, help="paper preset: ImageNet root (train/, val/)")
    parser.add_argument("--coco", default=None, help="paper preset: COCO root")
    parser.add_argument("--bsds", default=None, help="paper preset: BSDS500 root")
    parser.add_argument("--saliency", default=None, help="paper preset: a saliency set (images/ + masks/)")
    parser.add_argument("--slurm", action="store_true", help="smoke / tiny: write sbatch scripts instead of running")
    parser.add_argument("--launch", action="store_true", help="submit the sbatch scripts (paper, or with --slurm)")
    add_resource_arguments(parser)


# -- the tiny presets -----------------------------------------------------------------------------------------
SMOKE = {"pretrain_steps": 24, "batch": 16, "knn": True, "linprobe_epochs": 2, "finetune_epochs": 1,
         "coco_iters": 10, "recon_images": 8, "ablations": False}
TINY = {"pretrain_steps": 200, "batch": 32, "knn": True, "linprobe_epochs": 30, "finetune_epochs": 10,
        "coco_iters": 40, "recon_images": 24, "ablations": True}
# the paper's ablation axes at tiny scale: (label, overrides); the tiny default is k = 96, c = 1, mask 0.75, masked
TINY_ABLATIONS = [
    ("k64", ["model.num_gaussians=64"]), ("k128", ["model.num_gaussians=128"]), ("k256", ["model.num_gaussians=256"]),
    ("scale0.5", ["model.max_scale=0.5"]), ("scale2", ["model.max_scale=2.0"]),
    ("mask0.7", ["model.mask_ratio=0.7"]), ("mask0.8", ["model.mask_ratio=0.8"]),
    ("loss_all", ["model.loss_type=all"]), ("loss_masked_norm", ["model.loss_type=masked_norm"]),
]


def tiny_steps(out: Path, p: dict) -> list[Step]:
    data = out / "data"
    res = ["--results", str(out)]
    pre = ["optim.epochs=1000", f"optim.max_steps={p['pretrain_steps']}", f"optim.batch_size={p['batch']}",
           f"optim.batch_per_device={p['batch']}", "optim.warmup_epochs=0.5", "run.progress=false",
           f"run.save_every_steps={max(10, p['pretrain_steps'] // 4)}"]
    # the schedule spans max_steps: epochs is set so that the cosine ends at the last step
    steps_per_epoch = 256 // p["batch"]
    pre[0] = f"optim.epochs={max(1, -(-p['pretrain_steps'] // steps_per_epoch))}"
    steps = [Step("data", ["data", "tiny", "--out", str(data), "--size", "64"])]
    models = {"gmae": ("pretrain/gmae_tiny", []), "mae": ("pretrain/mae_tiny", [])}
    if p["ablations"]:
        models.update({f"gmae_{label}": ("pretrain/gmae_tiny", ov) for label, ov in TINY_ABLATIONS})
    for name, (config, ov) in models.items():
        steps.append(Step(f"pretrain_{name}", ["pretrain", "--config", config, "--data", str(data / "imagenet"),
                                               "--out", str(out / "pretrain" / name), *res, *pre, *ov], needs=("data",)))
    ckpt = {name: str(out / "pretrain" / name / "checkpoint.pth") for name in models}
    img = str(data / "imagenet")
    for name in models:
        ev = str(out / "eval" / name)
        steps.append(Step(f"knn_{name}", ["eval", "knn", "--checkpoint", ckpt[name], "--data", img, "--config",
                                          "knn/tiny", "--out", f"{ev}/knn", *res], needs=(f"pretrain_{name}",)))
        steps.append(Step(f"linprobe_{name}", ["eval", "linprobe", "--checkpoint", ckpt[name], "--data", img,
                                               "--config", "linprobe/tiny", "--out", f"{ev}/linprobe", *res,
                                               f"optim.epochs={p['linprobe_epochs']}"], needs=(f"pretrain_{name}",)))
    for name in ("gmae", "mae"):
        ev = str(out / "eval" / name)
        steps.append(Step(f"finetune_{name}", ["eval", "finetune", "--checkpoint", ckpt[name], "--data", img,
                                               "--config", "finetune/tiny", "--out", f"{ev}/finetune", *res,
                                               f"optim.epochs={p['finetune_epochs']}"], needs=(f"pretrain_{name}",)))
        it = p["coco_iters"]
        steps.append(Step(f"coco_{name}", ["eval", "coco", "--checkpoint", ckpt[name], "--coco", str(data / "coco"),
                                           "--config", "mask_rcnn_vitdet_tiny", "--out", f"{ev}/coco", *res,
                                           f"train.max_iter={it}",
                                           f"lr_multiplier.milestones=[{int(it * 0.8)},{int(it * 0.9)}]"],
                          needs=(f"pretrain_{name}",)))
    # GMAE and MAE in one call: the same images and masks, one comparison grid (input, masked, GMAE, MAE)
    steps.append(Step("recon_gmae_mae", ["eval", "recon", "--checkpoint", ckpt["gmae"], "--checkpoint-mae",
                                         ckpt["mae"], "--data", str(data / "photos"), "--mask-ratio", "0", "0.75",
                                         "--out", str(out / "eval" / "gmae" / "recon"), *res],
                      needs=("pretrain_gmae", "pretrain_mae")))
    if p["ablations"]:
        for label, _ in TINY_ABLATIONS:
            if label.startswith(("k", "scale")):
                name = f"gmae_{label}"
                steps.append(Step(f"recon_{name}", ["eval", "recon", "--checkpoint", ckpt[name], "--data",
                                                    str(data / "photos"), "--mask-ratio", "0", "--out",
                                                    str(out / "eval" / name / "recon"), *res],
                                  needs=(f"pretrain_{name}",)))
    ev = out / "eval" / "gmae"
    steps += [
        Step("figure_ground_gmae", ["eval", "figure-ground", "--checkpoint", ckpt["gmae"], "--data",
                                    str(data / "saliency"), "--out", str(ev / "figure_ground"), *res],
             needs=("pretrain_gmae",)),
        Step("edges_gmae", ["eval", "edges", "--checkpoint", ckpt["gmae"], "--data", str(data / "bsds500"),
                            "--out", str(ev / "edges"), *res], needs=("pretrain_gmae",)),
        Step("layers_gmae", ["eval", "layers", "--checkpoint", ckpt["gmae"], "--data", str(data / "photos"),
                             "--out", str(ev / "layers" / "figures")], needs=("pretrain_gmae",)),
    ]
    for method in ("sobel", "canny"):
        pred = out / "eval" / method / "edges"
        steps.append(Step(f"edges_{method}", ["eval", "classic-edges", "--data", str(data / "bsds500"), "--method",
                                              method, "--out", str(pred)], needs=("data",)))
        steps.append(Step(f"bsds_{method}", ["eval", "bsds", "--pred", str(pred), "--gt",
                                             str(data / "bsds500" / "groundTruth"), "--out",
                                             str(out / "eval" / method), "--model-name", method, *res],
                          needs=(f"edges_{method}",)))
    figures = ["eval", "figures", "--checkpoint", ckpt["gmae"], "--data", str(data / "photos"), "--out",
               str(out / "eval" / "gmae" / "model_figures" / "figures")]
    needs = ("pretrain_gmae",)
    if p["ablations"]:
        scale = {"c = 0.5": ckpt["gmae_scale0.5"], "c = 1": ckpt["gmae"], "c = 2": ckpt["gmae_scale2"]}
        figures.append(f"scale_effect={json.dumps(scale)}")
        needs += ("pretrain_gmae_scale0.5", "pretrain_gmae_scale2")
    steps.append(Step("figures", figures, needs=needs))
    steps.append(Step("report", ["report", "--results", str(out), "--out", str(out / "report")], always=True))
    return steps


# -- the paper preset -------------------------------------------------------------------------------------------
PAPER_PRETRAIN = ["gmae_vit_b16_400ep"] + [f"gmae_vit_b16_400ep_{a}" for a in (
    "scale0.5", "scale2", "mask0.7", "mask0.8", "loss_all", "loss_masked_norm", "k64", "k128", "k512")] + [
    "mae_vit_b16_400ep", "mae_vit_b16_1600ep"]


def _abs(path: str) -> str:
    """Jobs start in another directory: user paths are made absolute (never expanded by a shell)."""
    return str(Path(path).expanduser().absolute())


def paper_jobs(out: Path, args: argparse.Namespace, nodes: int, gpus: int) -> list[Job]:
    """The full-scale runs as SLURM jobs: argument lists of ``gmae`` (launched by torchrun on the GPUs)."""
    need = {"--data": args.data, "--coco": args.coco}
    missing = [k for k, v in need.items() if not v]
    if missing:
        raise InputError(f"--preset paper needs {' and '.join(missing)} (real data roots)")
    data, coco = _abs(args.data), _abs(args.coco)
    res = ["--results", str(out)]
    jobs = []
    for name in PAPER_PRETRAIN:
        run_dir = out / "pretrain" / name
        jobs.append(Job(f"pretrain_{name}", ["-m", "gmae", "pretrain", "--config", f"pretrain/{name}", "--data", data,
                                             "--out", str(run_dir), *res], nodes=nodes))
        ck, ev = str(run_dir / "checkpoint.pth"), out / "eval" / name
        for proto in ("linprobe", "finetune"):
            jobs.append(Job(f"{proto}_{name}", ["-m", "gmae", "eval", proto, "--checkpoint", ck, "--data", data,
                                                "--config", f"{proto}/vit_b16", "--out", str(ev / proto), *res],
                            needs=(f"pretrain_{name}",)))
    # the reconstruction rows need an MAE that predicts plain pixels (the norm-pix MAE-400 above borrows each
    # patch's mean and variance from the ground truth): one more MAE pretraining, evaluated by recon only
    pixel = "mae_vit_b16_400ep_pixel"
    jobs.append(Job(f"pretrain_{pixel}", ["-m", "gmae", "pretrain", "--config", f"pretrain/{pixel}", "--data", data,
                                          "--out", str(out / "pretrain" / pixel), *res], nodes=nodes))
    single = {"torchrun": False}  # one process that uses the node's GPUs itself (or one of them)
    for name in ("gmae_vit_b16_400ep", "mae_vit_b16_400ep", "mae_vit_b16_1600ep"):
        ck, ev = str(out / "pretrain" / name / "checkpoint.pth"), out / "eval" / name
        jobs.append(Job(f"coco_{name}", ["-m", "gmae", "eval", "coco", "--checkpoint", ck, "--coco", coco,
                                         "--num-gpus", str(gpus), "--out", str(ev / "coco"), *res],
                        needs=(f"pretrain_{name}",), **single))
    for name in ("gmae_vit_b16_400ep", pixel):
        ck, ev = str(out / "pretrain" / name / "checkpoint.pth"), out / "eval" / name
        jobs.append(Job(f"recon_{name}", ["-m", "gmae", "eval", "recon", "--checkpoint", ck, "--data",
                                          str(Path(data) / "val"), "--mask-ratio", "0", "0.75", "--out",
                                          str(ev / "recon"), *res], needs=(f"pretrain_{name}",), **single))
    ck, ev = str(out / "pretrain" / "gmae_vit_b16_400ep" / "checkpoint.pth"), out / "eval" / "gmae_vit_b16_400ep"
    if args.bsds:
        jobs.append(Job("edges_gmae", ["-m", "gmae", "eval", "edges", "--checkpoint", ck, "--data", _abs(args.bsds),
                                       "--out", str(ev / "edges"), *res], needs=("pretrain_gmae_vit_b16_400ep",),
                        **single))
    if args.saliency:
        jobs.append(Job("figure_ground_gmae", ["-m", "gmae", "eval", "figure-ground", "--checkpoint", ck, "--data",
                                               _abs(args.saliency), "--out", str(ev / "figure_ground"), *res],
                        needs=("pretrain_gmae_vit_b16_400ep",), **single))
    jobs.append(Job("report", ["-m", "gmae", "report", "--results", str(out), "--out", str(out / "report")],
                    after_all=True, gpus=False))
    return jobs


def tiny_jobs(steps: list[Step]) -> list[Job]:
    """The smoke / tiny steps as SLURM jobs: each runs its own ``gmae`` command."""
    jobs = []
    for s in steps:
        jobs.append(Job(s.name, ["-m", "gmae", *s.argv], needs=s.needs, after_all=s.always, gpus=False))
    return jobs


# -- runner -----------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.status:
        return print_status(out.absolute())
    if args.preset == "paper" or args.slurm or args.launch:
        return run_slurm(out.absolute(), args)
    out.mkdir(parents=True, exist_ok=True)
    steps = tiny_steps(out, SMOKE if args.preset == "smoke" else TINY)
    return run_steps(steps, out, args)


def run_slurm(out: Path, args: argparse.Namespace) -> int:
    """Write one sbatch script per step and submit_all.sh (which chains them); submit it with --launch."""
    res = resources_from_args(args, args.preset)
    if args.preset == "paper":
        jobs = paper_jobs(out, args, res.nodes, res.gpus_per_node)
    else:
        jobs = tiny_jobs(tiny_steps(out, SMOKE if args.preset == "smoke" else TINY))
    names = [j.name for j in jobs]
    for n in list(args.only or []):
        if n not in names:
            raise InputError(f"unknown step {n!r}; steps: {names}")
    if args.only is not None:
        jobs = [j for j in jobs if j.name in args.only]
    out.mkdir(parents=True, exist_ok=True)
    submit = write_scripts(jobs, out, res, args.python, args.preset)
    print(f"wrote {len(jobs)} sbatch scripts and {submit}")
    if not args.launch:
        print(f"submit with: bash {shlex.quote(str(submit))}   then: gmae reproduce --preset {args.preset} "
              f"--out {shlex.quote(str(out))} --status")
        return 0
    if shutil.which("sbatch") is None:
        print("gmae reproduce: --launch needs SLURM's sbatch on PATH", file=sys.stderr)
        return 2
    return subprocess.run(["bash", str(submit)]).returncode


def run_steps(steps: list[Step], out: Path, args: argparse.Namespace) -> int:
    from gmae.cli import main as gmae_main

    marks = out / ".steps"
    marks.mkdir(parents=True, exist_ok=True)
    names = [s.name for s in steps]
    for n in list(args.force) + list(args.only or []):
        if n not in names:
            raise InputError(f"unknown step {n!r}; steps: {names}")
    if args.list:
        for s in steps:
            print(f"{'done' if (marks / f'{s.name}.json').exists() else 'todo':5} {s.name}")
        return 0
    failed: list[str] = []
    ran = 0
    t_start = time.perf_counter()
    for i, s in enumerate(steps, 1):
        if args.only is not None and s.name not in args.only:
            continue
        mark = marks / f"{s.name}.json"
        if mark.exists() and s.name not in args.force and not s.always:
            print(f"[{i}/{len(steps)}] {s.name}: done, skipped")
            continue
        blocked = [d for d in s.needs if d in failed]
        if blocked:
            print(f"[{i}/{len(steps)}] {s.name}: skipped, needs failed step(s) {blocked}")
            failed.append(s.name)
            continue
        print(f"[{i}/{len(steps)}] {s.name}: gmae {' '.join(s.argv)}", flush=True)
        t0 = time.perf_counter()
        ran += 1
        try:
            code = gmae_main(list(s.argv))
        except Exception as e:  # noqa: BLE001 - reported with the step's name, then raised or kept going
            if not args.keep_going:
                raise RuntimeError(f"reproduce step {s.name!r} failed: {e}") from e
            print(f"  FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
        if code != 0:
            failed.append(s.name)
            if not args.keep_going:
                print(f"gmae reproduce: step {s.name!r} exited {code}", file=sys.stderr)
                return code
            continue
        atomic_write_json(mark, {"step": s.name, "argv": s.argv, "seconds": round(time.perf_counter() - t0, 2),
                                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        print(f"  {s.name} finished in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"reproduce: ran {ran} step(s), {len(failed)} failed, in {time.perf_counter() - t_start:.0f} s; "
          f"{sum((marks / f'{s.name}.json').exists() for s in steps)} of {len(steps)} done; "
          f"report: {out / 'report' / 'report.md'}")
    if failed:
        print(f"failed steps: {failed}", file=sys.stderr)
        return 1
    return 0
