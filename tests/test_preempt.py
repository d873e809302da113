"""Stop signals (Ctrl-C, SIGTERM from a scheduler): the training loops save a checkpoint and exit 130 / 143
without a traceback, and the run resumes to the same weights as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gmae.engine.checkpoint import load_checkpoint

# a 1-block GMAE at 32 px: a step costs ~0.1 s, so the signal lands mid-run without slowing the suite
SMALL = ["model.kwargs={embed_dim: 32, depth: 1, num_heads: 2, decoder_embed_dim: 32, decoder_depth: 1,"
         " decoder_num_heads: 2}", "model.num_gaussians=16", "data.img_size=32", "optim.batch_size=8",
         "optim.batch_per_device=8", "optim.epochs=1", "optim.warmup_epochs=0.25", "optim.max_steps=30",
         "run.progress=false", "run.tensorboard=false", "run.log_every_steps=1", "run.save_every_steps=1000",
         "run.device=cpu"]


def _env():
    # equal thread counts: CPU reductions are only bitwise-reproducible at equal thread counts
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))


def _logged_steps(out):
    path = out / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in path.read_text().splitlines() if line.strip()]
    return max(steps, default=0)


def _signal_mid_run(argv, out, signum, after_steps=3, timeout=180, group=False):
    """Start ``gmae *argv`` in a subprocess, send ``signum`` once it logged ``after_steps`` steps (to its whole
    process group, DataLoader workers included, as SLURM and a terminal do, when ``group``), and return
    (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "gmae", *argv], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=group)
    deadline = time.time() + timeout
    while _logged_steps(out) < after_steps and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _pretrain_argv(tiny_data, out):
    return ["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(tiny_data / "imagenet"), "--out", str(out),
            *SMALL]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory):
    from gmae.cli import main as cli_main

    out = tmp_path_factory.mktemp("uninterrupted")
    assert cli_main(_pretrain_argv(tiny_data, out)) == 0
    return load_checkpoint(out / "checkpoint.pth")


@pytest.mark.parametrize("signum,code,workers", [(signal.SIGTERM, 143, 0), (signal.SIGINT, 130, 0),
                                                 (signal.SIGTERM, 143, 2)])
def test_pretraining_stop_signal_saves_exits_and_resumes_exactly(tiny_data, tmp_path, uninterrupted, signum, code,
                                                                 workers):
    """With loader workers the signal goes to the whole process group: a worker killed by it would make the
    main process fail before it saves."""
    cut = tmp_path / "cut"
    argv = [*_pretrain_argv(tiny_data, cut), f"data.num_workers={workers}"]
    rc, err = _signal_mid_run(argv, cut, signum, group=workers > 0)
    assert rc == code, err
    assert "Traceback" not in err and f"{signal.Signals(signum).name} received" in err, err
    ckpt = load_checkpoint(cut / "checkpoint.pth")
    # the loop finished the step in flight and saved it (no periodic save happens in 30 steps)
    assert 3 <= ckpt["step"] < 30 and not ckpt["finished"]
    assert not (cut / "results.jsonl").exists()  # no record for a run that did not finish

    rc2 = subprocess.run([sys.executable, "-m", "gmae", *argv], env=_env()).returncode
    assert rc2 == 0
    a, b = uninterrupted, load_checkpoint(cut / "checkpoint.pth")
    assert b["finished"] and b["step"] == 30
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_linprobe_sigterm_saves_and_resumes_exactly(tiny_data, tiny_gmae_checkpoint, tmp_path):
    from gmae.cli import main as cli_main

    def argv(out):
        return ["eval", "linprobe", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(tiny_data / "imagenet"),
                "--config", "linprobe/tiny", "--out", str(out), "optim.epochs=1", "run.progress=false",
                "run.log_every_steps=1", "run.device=cpu"]

    assert cli_main(argv(tmp_path / "full")) == 0
    cut = tmp_path / "cut"
    rc, err = _signal_mid_run(argv(cut), cut, signal.SIGTERM)
    assert rc == 143 and "Traceback" not in err, err
    ckpt = load_checkpoint(cut / "checkpoint.pth")
    assert ckpt["protocol"] == "linprobe" and 3 <= ckpt["step"] < 16 and not ckpt["finished"]
    assert subprocess.run([sys.executable, "-m", "gmae", *argv(cut)], env=_env()).returncode == 0
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.pth"), load_checkpoint(cut / "checkpoint.pth")
    assert b["finished"] and b["step"] == a["step"]
    for k in a["head"]:
        assert torch.equal(a["head"][k], b["head"][k]), k
