"""SLURM jobs for ``gmae reproduce``: one sbatch script per step, a submit script that chains them, and a status
view from squeue / sacct and the run folders.

Every value that reaches a shell is quoted with ``shlex.quote`` (a path with a space or ``$(...)`` stays one
literal argument). ``#SBATCH`` lines are read by sbatch, not by a shell: their values are checked instead
(no spaces, quotes, ``#``, ``$``, backslashes or control characters), and paths never go there (``--chdir`` and
``--output`` are given, quoted, on the sbatch command line).

Preemption and time limits: each job asks for ``--requeue`` and ``--signal=B:USR1@<grace>``. On USR1 (sent
``grace`` seconds before the time limit, or by ``scancel --batch --signal=USR1``) the batch shell sends SIGTERM
to the step, which saves its checkpoint and exits 143 (gmae/engine/preempt.py), then the shell requeues the job.
A requeued job keeps its id, so the steps that depend on it (``afterok``) wait for it instead of failing.
SIGTERM from SLURM's own preemption is passed on the same way; SLURM requeues those jobs itself.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gmae.io import atomic_write_text

# the settings a user can give as flags (--partition ...) or in a small YAML file (--cluster FILE)
RESOURCE_KEYS = ("partition", "account", "qos", "constraint", "nodes", "gpus_per_node", "cpus_per_task", "time",
                 "signal_grace", "extra")
# sbatch reads these lines itself: allow SLURM's own syntax (constraints use & | [ ] * ( ) :) but nothing a
# shell or sbatch's line parser could split or expand
_SBATCH_VALUE = re.compile(r"^[A-Za-z0-9_.,:@%+=/&|\[\]*()!-]+$")
_SLURM_TIME = re.compile(r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+|\d+-\d+:\d{2}|\d+-\d+:\d{2}:\d{2})$")


class Raw(str):
    """A command-line piece written by this module that must reach the shell unquoted (``$MASTER_ADDR``)."""


@dataclass
class Job:
    name: str
    argv: list  # the step's command; Raw pieces are expanded by the job's shell, everything else is quoted
    needs: tuple = ()
    nodes: int = 1
    after_all: bool = False  # the report: runs after every other job has ended, whatever its outcome
    gpus: bool = True  # whether the job asks for the node's GPUs (the paper's steps; the tiny presets are CPU)
    torchrun: bool = True  # one process per GPU through torchrun, else one process (coco, recon, zero-shot)


@dataclass
class Resources:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    nodes: int = 8  # nodes for pretraining; every other step uses one
    gpus_per_node: int = 8
    cpus_per_task: int | None = None  # default: 10 per GPU (data.num_workers=10 per process), 1 without GPUs
    time: str = "24:00:00"  # per job; a step that needs longer is checkpointed and requeued at the limit
    signal_grace: int = 300  # seconds between the USR1 warning and the time limit: one step plus one save
    extra: list = field(default_factory=list)  # more '#SBATCH' lines, e.g. ["--mem=0", "--exclusive"]

    def cpus(self) -> int:
        return self.cpus_per_task if self.cpus_per_task is not None else max(1, 10 * self.gpus_per_node)


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("SLURM (paper preset, or --slurm)")
    g.add_argument("--cluster", default=None, metavar="YAML",
                   help=f"a file with any of {', '.join(RESOURCE_KEYS)}; flags override it")
    g.add_argument("--partition", default=None, help="default: the cluster's default partition")
    g.add_argument("--account", default=None, help="default: your default account")
    g.add_argument("--qos", default=None, help="default: the account's default QOS")
    g.add_argument("--constraint", default=None, help="node features, e.g. 'a100&ib'")
    g.add_argument("--nodes", type=int, default=None, help="nodes for pretraining (default 8 for paper, else 1)")
    g.add_argument("--gpus-per-node", type=int, default=None, help="default 8 for paper, 0 (CPU) for smoke/tiny")
    g.add_argument("--cpus-per-task", type=int, default=None, help="default 10 per GPU, 1 without GPUs")
    g.add_argument("--time", default=None, help="time limit per job (default 24:00:00; requeued at the limit)")
    g.add_argument("--signal-grace", type=int, default=None,
                   help="seconds before the time limit when the step is told to checkpoint (default 300)")
    g.add_argument("--sbatch-extra", action="append", default=None, metavar="FLAG",
                   help="another '#SBATCH FLAG' line (repeatable), e.g. --sbatch-extra=--mem=0")
    g.add_argument("--python", default=sys.executable, help="the Python that runs gmae in the jobs (default: this one)")
    g.add_argument("--status", action="store_true",
                   help="show each submitted step's state (pending, running, done, failed) and exit")


def _bad(key: str, why: str) -> SystemExit:
    print(f"gmae reproduce: {key}: {why}", file=sys.stderr)
    return SystemExit(2)


def resources_from_args(args: argparse.Namespace, preset: str) -> Resources:
    """Flags over the --cluster file over the preset's defaults; every value checked, naming the key."""
    values: dict = {}
    if args.cluster:
        try:
            loaded = yaml.safe_load(Path(args.cluster).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise _bad("--cluster", f"cannot read {args.cluster}: {e}") from None
        if not isinstance(loaded, dict):
            raise _bad("--cluster", f"{args.cluster} must hold a mapping of {', '.join(RESOURCE_KEYS)}")
        unknown = sorted(set(loaded) - set(RESOURCE_KEYS))
        if unknown:
            raise _bad(unknown[0], f"unknown key in {args.cluster}; known: {', '.join(RESOURCE_KEYS)}")
        values.update(loaded)
    flags = {"partition": args.partition, "account": args.account, "qos": args.qos,
             "constraint": args.constraint, "nodes": args.nodes, "gpus_per_node": args.gpus_per_node,
             "cpus_per_task": args.cpus_per_task, "time": args.time, "signal_grace": args.signal_grace,
             "extra": args.sbatch_extra}
    values.update({k: v for k, v in flags.items() if v is not None})
    if preset != "paper":  # the tiny presets are CPU jobs on one node
        values.setdefault("gpus_per_node", 0)
        values.setdefault("nodes", 1)
    res = Resources(**values)
    for key in ("partition", "account", "qos", "constraint"):
        v = getattr(res, key)
        if v is not None and not (isinstance(v, str) and _SBATCH_VALUE.match(v)):
            raise _bad(key, f"{v!r} is not a plain SLURM name (no spaces, quotes, $, # or backslashes)")
    for key, low in (("nodes", 1), ("gpus_per_node", 0), ("cpus_per_task", 1), ("signal_grace", 1)):
        v = getattr(res, key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
            raise _bad(key, f"must be an integer >= {low}, got {v!r}")
    if not (isinstance(res.time, str) and _SLURM_TIME.match(res.time)):
        # YAML reads an unquoted 24:00:00 as the number 86400 (base 60)
        hint = "; quote it in YAML: time: '24:00:00'" if isinstance(res.time, int) else ""
        raise _bad("time", f"{res.time!r} is not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS){hint}")
    if isinstance(res.extra, str) or not isinstance(res.extra, list):
        raise _bad("extra", "must be a list of sbatch flags")
    for line in res.extra:
        if not (isinstance(line, str) and line.startswith("-") and _SBATCH_VALUE.match(line)):
            raise _bad("extra", f"{line!r} is not one sbatch flag such as --mem=0 (no spaces or quotes)")
    return res


# -- writing ----------------------------------------------------------------------------------------------------
def shell_join(argv: list) -> str:
    return " ".join(a if isinstance(a, Raw) else shlex.quote(str(a)) for a in argv)


def _launcher(job: Job, res: Resources, python: str) -> list:
    """How the step starts: torchrun over the allocation's nodes (c10d rendezvous on the first node), torchrun
    on one node, or plain Python for CPU jobs."""
    gpus = res.gpus_per_node if job.gpus else 0
    if gpus == 0 or not job.torchrun:
        return [python]
    if job.nodes > 1:
        # one torchrun per node (srun), meeting at the first node of the allocation
        return ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1", python, "-m", "torch.distributed.run",
                f"--nnodes={job.nodes}", f"--nproc_per_node={gpus}", "--rdzv_backend=c10d",
                Raw('--rdzv_id="$SLURM_JOB_ID"'), Raw('--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT"')]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]


def job_script(job: Job, res: Resources, out: Path, python: str, preset: str) -> str:
    gpus = res.gpus_per_node if job.gpus else 0
    cpus = res.cpus() if gpus else (res.cpus_per_task or 1)
    head = ["#!/bin/bash",
            f"# gmae reproduce --preset {preset}: step {job.name}; needs: {', '.join(job.needs) or 'nothing'}.",
            "# Generated: change the flags of gmae reproduce rather than this file.",
            f"#SBATCH --job-name=gmae-{job.name}", f"#SBATCH --nodes={job.nodes}", "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --cpus-per-task={cpus}", f"#SBATCH --time={res.time}",
            "#SBATCH --requeue", "#SBATCH --open-mode=append", f"#SBATCH --signal=B:USR1@{res.signal_grace}"]
    if gpus:
        head.append(f"#SBATCH --gpus-per-node={gpus}")
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(res, key):
            head.append(f"#SBATCH --{key}={getattr(res, key)}")
    head += [f"#SBATCH {line}" for line in res.extra]
    name = job.name  # generated identifiers ([a-z0-9_.]), safe unquoted
    body = f"""
set -uo pipefail
OUT={shlex.quote(str(out))}
STATE="$OUT/slurm/state"
mkdir -p "$OUT/.steps" "$STATE"
export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
echo "[$(date -u +%FT%TZ)] {name}: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, restart ${{SLURM_RESTART_COUNT:-0}}"

# USR1 = the time limit is near or the job is being preempted: let the step checkpoint, then requeue it
preempted=0
trap 'preempted=1; kill -TERM "$child" 2>/dev/null' USR1
trap 'kill -TERM "$child" 2>/dev/null' TERM
{shell_join([*_launcher(job, res, python), *job.argv])} &
child=$!
# a trapped signal interrupts wait: keep waiting while the step runs, then read its saved exit status
while kill -0 "$child" 2>/dev/null; do wait "$child"; done
rc=0; wait "$child" || rc=$?

if [ "$rc" = 0 ]; then
    tmp="$(mktemp "$OUT/.steps/.{name}.XXXXXX")"
    printf '{{"step": "{name}", "job": "%s", "restarts": %s, "finished": "%s"}}\\n' "$SLURM_JOB_ID" \\
        "${{SLURM_RESTART_COUNT:-0}}" "$(date -u +%FT%TZ)" > "$tmp" && mv "$tmp" "$OUT/.steps/{name}.json"
    rm -f "$STATE/{name}.failed"
    exit 0
fi
if [ "$preempted" = 1 ]; then
    echo "[$(date -u +%FT%TZ)] {name}: step exited $rc after USR1; requeueing job $SLURM_JOB_ID"
    # SLURM ends this run now; the requeued job (same id) resumes from the checkpoint
    scontrol requeue "$SLURM_JOB_ID" && exit 0
fi
echo "$rc" > "$STATE/{name}.failed"
exit "$rc"
"""
    return "\n".join(head) + "\n" + body


def submit_script(jobs: list[Job], out: Path, sdir: Path, preset: str) -> str:
    lines = ["#!/bin/bash", f"# Submit the steps of gmae reproduce --preset {preset} with their dependencies.",
             "# Steps already done (OUT/.steps/STEP.json) are not submitted again; their dependents start at once.",
             "set -euo pipefail", f"OUT={shlex.quote(str(out))}", f"SDIR={shlex.quote(str(sdir))}",
             'mkdir -p "$SDIR/logs"', ': > "$SDIR/jobs.tsv"', "declare -A JOB=()", "",
             "submit() {  # submit NAME DEPENDENCY-TYPE NEEDED-STEP...",
             '    local name=$1 kind=$2 dep="" j id; shift 2',
             '    if [ -e "$OUT/.steps/$name.json" ]; then echo "$name: done, not submitted"; return; fi',
             '    for j in "$@"; do [ -n "${JOB[$j]:-}" ] && dep="$dep:${JOB[$j]}"; done',
             "    local flags=()",
             # without --kill-on-invalid-dep a job whose dependency failed would stay pending for ever
             '    [ -n "$dep" ] && flags=(--dependency="$kind${dep}" --kill-on-invalid-dep=yes)',
             '    id=$(sbatch --parsable "${flags[@]}" --chdir="$OUT" --output="$SDIR/logs/$name-%j.out" '
             '"$SDIR/$name.sbatch")',
             '    JOB[$name]=${id%%;*}',
             '    printf "%s\\t%s\\n" "$name" "${JOB[$name]}" >> "$SDIR/jobs.tsv"',
             '    echo "$name: job ${JOB[$name]}${dep:+ (after ${dep#:})}"',
             "}", ""]
    names = [j.name for j in jobs]
    for j in jobs:
        needs = [n for n in names if n != j.name] if j.after_all else [n for n in j.needs if n in names]
        lines.append(f"submit {j.name} {'afterany' if j.after_all else 'afterok'} {' '.join(needs)}".rstrip())
    return "\n".join(lines) + "\n"


def write_scripts(jobs: list[Job], out: Path, res: Resources, python: str, preset: str) -> Path:
    """Write OUT/slurm/{STEP.sbatch, submit_all.sh, steps.tsv}; returns submit_all.sh."""
    sdir = out / "slurm"
    sdir.mkdir(parents=True, exist_ok=True)
    for j in jobs:
        atomic_write_text(sdir / f"{j.name}.sbatch", job_script(j, res, out, python, preset))
    atomic_write_text(sdir / "steps.tsv", "".join(f"{j.name}\t{','.join(j.needs)}\n" for j in jobs))
    submit = sdir / "submit_all.sh"
    atomic_write_text(submit, submit_script(jobs, out, sdir, preset))
    submit.chmod(0o755)
    return submit


# -- status -----------------------------------------------------------------------------------------------------
def _scheduler_states(ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id -> (state, reason) from squeue (jobs the controller still holds), then sacct where accounting is
    configured (older jobs); either may be missing, which is not an error."""
    states: dict[str, tuple[str, str]] = {}
    if not ids:
        return states
    if shutil.which("sacct"):
        r = subprocess.run(["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,ExitCode"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[0] in ids:
                    states[parts[0]] = (parts[1].split()[0], f"exit {parts[2]}")
    if shutil.which("squeue"):
        r = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%r"], capture_output=True, text=True)
        if r.returncode == 0:
            for line in r.stdout.splitlines():
                parts = line.split("|")
                if len(parts) == 3 and parts[0] in ids:
                    states[parts[0]] = (parts[1], parts[2])
    return states


def status(out: Path) -> list[dict]:
    """Each step's state: done (its marker in OUT/.steps), pending / running (the scheduler), failed (the
    scheduler, or the exit status the job left in OUT/slurm/state), unknown, or not submitted."""
    sdir = out / "slurm"
    manifest = sdir / "steps.tsv"
    if not manifest.exists():
        raise _bad("--status", f"no {manifest}: write the scripts first (gmae reproduce ... without --status)")
    names = [line.split("\t")[0] for line in manifest.read_text().splitlines() if line.strip()]
    ids: dict[str, str] = {}
    if (sdir / "jobs.tsv").exists():
        for line in (sdir / "jobs.tsv").read_text().splitlines():
            if "\t" in line:
                name, job_id = line.split("\t", 1)
                ids[name] = job_id.strip()
    sched = _scheduler_states(list(ids.values()))
    rows = []
    for name in names:
        job_id = ids.get(name, "")
        state, detail = sched.get(job_id, ("", ""))
        failed = sdir / "state" / f"{name}.failed"
        if (out / ".steps" / f"{name}.json").exists():
            row = ("done", "")
        elif state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING"):
            row = ("pending", detail)
        elif state in ("RUNNING", "COMPLETING", "STAGE_OUT", "SUSPENDED"):
            row = ("running", detail if detail != "None" else "")
        elif state and state != "COMPLETED":
            row = ("failed", f"{state} {detail}".strip())
        elif failed.exists():
            row = ("failed", f"exit {failed.read_text().strip()}")
        elif job_id:
            row = ("unknown", "no longer known to the scheduler, no marker")
        else:
            row = ("not submitted", "")
        rows.append({"step": name, "state": row[0], "job": job_id, "detail": row[1]})
    return rows


def print_status(out: Path) -> int:
    rows = status(out)
    width = max(len(r["step"]) for r in rows) if rows else 4
    for r in rows:
        print(f"{r['step']:<{width}}  {r['state']:<13} {r['job']:>8}  {r['detail']}".rstrip())
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "running", "pending", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(rows)} steps")
    return 0
