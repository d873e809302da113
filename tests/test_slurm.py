"""`gmae reproduce` on SLURM: quoting and resources of the generated scripts (stub commands), then the chain on a
real one-node SLURM cluster on localhost (slurmctld + slurmd + munge from Debian): submitted, chained, one
pretraining job preempted mid-run, requeued and resumed to the same weights as an uninterrupted run."""

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gmae.cli import main
from gmae.engine.checkpoint import load_checkpoint
from gmae.results import ResultsStore

NASTY = "my runs/$(touch PWNED)"  # a space splits an unquoted argument; $(...) would run at job time


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_scripts_quote_every_path_and_run_the_exact_command(tmp_path):
    """Submit and run one job script with stub sbatch / scontrol / python: the step gets its arguments intact,
    nothing in a path is executed, and a successful step leaves its marker."""
    out, data = tmp_path / NASTY, tmp_path / "data $(touch PWNED)" / "in 'quotes'"
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.jsonl"
    record = f"{sys.executable} -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {log}\n"
    _stub(bin_ / "sbatch", record + "echo $((RANDOM + 1))\n")
    _stub(bin_ / "scontrol", "echo node1\n")
    _stub(bin_ / "fakepython", record)
    assert main(["reproduce", "--preset", "paper", "--out", str(out), "--data", str(data), "--coco", "/c",
                 "--python", str(bin_ / "fakepython"), "--gpus-per-node", "0", "--only", "pretrain_gmae_vit_b16_400ep",
                 "linprobe_gmae_vit_b16_400ep", "report"]) == 0
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", SLURM_JOB_ID="42", SLURM_JOB_NODELIST="node1")
    sdir = out / "slurm"
    subprocess.run(["bash", str(sdir / "submit_all.sh")], env=env, cwd=tmp_path, check=True, capture_output=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 3 and calls[0][-1] == str(sdir / "pretrain_gmae_vit_b16_400ep.sbatch")
    assert f"--chdir={out}" in calls[0] and any(a.startswith("--dependency=afterok:") for a in calls[1])
    assert any(a.startswith("--dependency=afterany:") for a in calls[2])

    log.unlink()
    subprocess.run(["bash", str(sdir / "pretrain_gmae_vit_b16_400ep.sbatch")], env=env, cwd=tmp_path, check=True,
                   capture_output=True)
    (argv,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert argv == ["-m", "gmae", "pretrain", "--config", "pretrain/gmae_vit_b16_400ep", "--data", str(data),
                    "--out", str(out / "pretrain" / "gmae_vit_b16_400ep"), "--results", str(out)]
    assert json.loads((out / ".steps" / "pretrain_gmae_vit_b16_400ep.json").read_text())["job"] == "42"
    assert not list(tmp_path.rglob("PWNED")), "a path was executed by the shell"


def test_resources_flags_file_and_defaults(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("partition: gpu\naccount: proj1\ntime: '2-00:00:00'\nextra: ['--mem=0', '--exclusive']\n")
    out = tmp_path / "p"
    assert main(["reproduce", "--preset", "paper", "--out", str(out), "--data", "/d", "--coco", "/c", "--cluster",
                 str(cluster), "--qos", "high", "--nodes", "2", "--gpus-per-node", "4", "--signal-grace", "120"]) == 0
    pre = (out / "slurm" / "pretrain_gmae_vit_b16_400ep.sbatch").read_text()
    for line in ("--partition=gpu", "--account=proj1", "--qos=high", "--time=2-00:00:00", "--mem=0", "--exclusive",
                 "--nodes=2", "--gpus-per-node=4", "--cpus-per-task=40", "--requeue", "--signal=B:USR1@120"):
        assert f"#SBATCH {line}\n" in pre, line
    assert "--rdzv_backend=c10d" in pre and '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT"' in pre
    lin = (out / "slurm" / "linprobe_gmae_vit_b16_400ep.sbatch").read_text()
    assert "#SBATCH --nodes=1\n" in lin and "--standalone --nproc_per_node=4" in lin
    # defaults: the cluster's partition / account, 8 GPUs, 10 CPUs per GPU, 24 h, 300 s warning
    main(["reproduce", "--preset", "paper", "--out", str(tmp_path / "d"), "--data", "/d", "--coco", "/c"])
    dflt = (tmp_path / "d" / "slurm" / "pretrain_gmae_vit_b16_400ep.sbatch").read_text()
    assert "--partition" not in dflt and "--account" not in dflt
    for line in ("--nodes=8", "--gpus-per-node=8", "--cpus-per-task=80", "--time=24:00:00", "--signal=B:USR1@300"):
        assert f"#SBATCH {line}\n" in dflt, line


@pytest.mark.parametrize("flags,key", [(["--partition", "a b"], "partition"), (["--time", "1 day"], "time"),
                                       (["--sbatch-extra=--mem=0\n#SBATCH --x"], "extra"), (["--nodes", "0"], "nodes")])
def test_bad_resource_fails_naming_the_key(tmp_path, capsys, flags, key):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--preset", "paper", "--out", str(tmp_path), "--data", "/d", "--coco", "/c", *flags])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"gmae reproduce: {key}:")
    assert not (tmp_path / "slurm").exists()


def test_status_reads_markers_the_scheduler_and_failed_exits(tmp_path, monkeypatch, capsys):
    out = tmp_path / "paper"
    assert main(["reproduce", "--preset", "paper", "--out", str(out), "--data", "/d", "--coco", "/c", "--only",
                 "pretrain_gmae_vit_b16_400ep", "linprobe_gmae_vit_b16_400ep", "finetune_gmae_vit_b16_400ep",
                 "recon_gmae_vit_b16_400ep", "coco_gmae_vit_b16_400ep", "report"]) == 0
    sdir = out / "slurm"
    (sdir / "jobs.tsv").write_text("pretrain_gmae_vit_b16_400ep\t11\nlinprobe_gmae_vit_b16_400ep\t12\n"
                                   "finetune_gmae_vit_b16_400ep\t13\nrecon_gmae_vit_b16_400ep\t14\n"
                                   "coco_gmae_vit_b16_400ep\t15\n")
    (out / ".steps").mkdir()
    (out / ".steps" / "pretrain_gmae_vit_b16_400ep.json").write_text("{}")
    (sdir / "state").mkdir()
    (sdir / "state" / "recon_gmae_vit_b16_400ep.failed").write_text("1\n")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    _stub(bin_ / "squeue", "printf '11|COMPLETED|None\\n12|RUNNING|None\\n13|PENDING|Dependency\\n"
                           "15|CANCELLED|DependencyNeverSatisfied\\n99|RUNNING|None\\n'\n")
    _stub(bin_ / "sacct", "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    capsys.readouterr()
    assert main(["reproduce", "--preset", "paper", "--out", str(out), "--status"]) == 0
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[:-1]}
    assert lines["pretrain_gmae_vit_b16_400ep"][:2] == ["done", "11"]
    assert lines["linprobe_gmae_vit_b16_400ep"][:2] == ["running", "12"]
    assert lines["finetune_gmae_vit_b16_400ep"] == ["pending", "13", "Dependency"]
    assert lines["recon_gmae_vit_b16_400ep"] == ["failed", "14", "exit", "1"]
    assert lines["coco_gmae_vit_b16_400ep"][:3] == ["failed", "15", "CANCELLED"]
    assert lines["report"] == ["not", "submitted"]


# -- a real scheduler ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    from slurm_cluster import LocalSlurm, missing_binaries

    missing = missing_binaries()
    if missing:
        script = Path(__file__).resolve().parent.parent / "scripts" / "install_slurm.sh"
        subprocess.run(["bash", str(script)], capture_output=True)
        missing = missing_binaries()
    why = None
    if missing:
        why = f"SLURM is not installed and cannot be installed here (missing {missing}; scripts/install_slurm.sh)"
    elif os.geteuid() != 0:
        why = "a local SLURM cluster needs root (SlurmUser=root)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run this test")
        pytest.skip(why)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _jobs(out: Path) -> dict:
    return dict(line.split("\t") for line in (out / "slurm" / "jobs.tsv").read_text().splitlines())


def _wait(cond, timeout, what, cluster):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            log = (cluster.root / "log" / "slurmctld.log")
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tail}")
        time.sleep(0.1)


@pytest.mark.slow
def test_chain_on_real_slurm_with_preemption_and_requeue(slurm_cluster, tmp_path, monkeypatch, capsys):
    out = tmp_path / "smoke run"
    threads = str(torch.get_num_threads())  # the same in the jobs and the reference run: bitwise comparison
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    t0 = time.time()
    steps = ["data", "pretrain_gmae", "knn_gmae", "report"]
    assert main(["reproduce", "--preset", "smoke", "--slurm", "--launch", "--out", str(out), "--only", *steps]) == 0
    jobs = _jobs(out)
    assert sorted(jobs) == sorted(steps)

    # the uninterrupted reference, on the data the chain's first job writes
    _wait(lambda: (out / ".steps" / "data.json").exists(), 120, "the data job", slurm_cluster)
    from reports.reproduce import SMOKE, tiny_steps

    (pre,) = [s for s in tiny_steps(out, SMOKE) if s.name == "pretrain_gmae"]
    argv = list(pre.argv)
    argv[argv.index("--out") + 1] = str(tmp_path / "reference")
    argv[argv.index("--results") + 1] = str(tmp_path / "reference")
    reference = subprocess.Popen([sys.executable, "-m", "gmae", *argv], stdout=subprocess.DEVNULL)

    # preempt the pretraining job once it saved its first checkpoint (step 10 of 24)
    ckpt = out / "pretrain" / "gmae" / "checkpoint.pth"
    _wait(ckpt.exists, 180, "the first checkpoint of pretrain_gmae", slurm_cluster)
    subprocess.run(["scancel", "--batch", "--signal=USR1", jobs["pretrain_gmae"]], check=True)

    def all_ended():
        q = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(jobs.values())], capture_output=True,
                           text=True)
        return q.returncode == 0 and not q.stdout.strip()

    _wait(all_ended, 240, "every job to end", slurm_cluster)
    assert reference.wait(timeout=240) == 0
    elapsed = time.time() - t0

    capsys.readouterr()
    assert main(["reproduce", "--preset", "smoke", "--out", str(out), "--status"]) == 0
    assert "4 done, 0 running, 0 pending, 0 failed of 4 steps" in capsys.readouterr().out
    log = next((out / "slurm" / "logs").glob("pretrain_gmae-*.out")).read_text()
    cut = re.search(r"SIGTERM received; checkpoint saved at step (\d+)", log)
    assert cut and 10 <= int(cut.group(1)) < 24, log
    assert "requeueing job" in log and "restart 1" in log, log
    marks = {s: json.loads((out / ".steps" / f"{s}.json").read_text()) for s in steps}
    assert marks["pretrain_gmae"]["restarts"] == 1
    # the dependent step waited for the requeued job instead of failing or starting early
    knn_start = re.search(r"^\[(\S+)\] knn_gmae", next((out / "slurm" / "logs").glob("knn_gmae-*.out")).read_text(),
                          re.M).group(1)
    assert knn_start >= marks["pretrain_gmae"]["finished"]

    records = ResultsStore(out).read()
    assert {"pretrain", "knn"} <= {r["protocol"] for r in records}
    assert (out / "report" / "report.md").exists()
    a, b = load_checkpoint(tmp_path / "reference" / "checkpoint.pth"), load_checkpoint(ckpt)
    assert a["finished"] and b["finished"] and a["step"] == b["step"] == 24
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    print(f"SLURM chain with one preemption: {elapsed:.0f} s")
