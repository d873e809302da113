"""The shared pretraining engine: schedule, exact resume, DDP equivalence, NaN handling, export."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from gmae.config import load_config
from gmae.engine.checkpoint import export_encoder, load_checkpoint
from gmae.engine.config import PretrainConfig
from gmae.engine.data_order import GlobalBatchSampler
from gmae.engine.train import NonFiniteLossError, Trainer

SMALL_MODEL = ["model.kwargs={embed_dim: 32, depth: 1, num_heads: 2, decoder_embed_dim: 32, decoder_depth: 1,"
               " decoder_num_heads: 2}", "model.num_gaussians=16", "data.img_size=32"]


def _step_lines(path):
    """The per-step lines of a metrics.jsonl (the start / resume lines carry an ``event``)."""
    return [r for r in map(json.loads, open(path)) if "event" not in r]


def small_cfg(tiny_data, out, *extra):
    overrides = [f"data.root={tiny_data / 'imagenet'}", f"run.out_dir={out}", "run.progress=false",
                 "run.tensorboard=false", "optim.batch_size=8", "optim.batch_per_device=8", "optim.epochs=1",
                 "optim.warmup_epochs=0.25", "run.log_every_steps=2", *SMALL_MODEL, *extra]
    return load_config(PretrainConfig, "pretrain/gmae_tiny", overrides)


def weights(path):
    return load_checkpoint(path)["model"]


def test_global_batches_do_not_depend_on_world_size_or_accumulation():
    def global_batches(world, accum, micro, start=0):
        per_rank = [list(GlobalBatchSampler(100, micro, accum, world, r, seed=3, epoch=1, start_step=start))
                    for r in range(world)]
        steps = len(per_rank[0]) // accum
        return [sorted(i for r in range(world) for m in per_rank[r][s * accum:(s + 1) * accum] for i in m)
                for s in range(steps)]

    single = global_batches(1, 1, 12)
    assert len(single) == 100 // 12
    assert global_batches(2, 1, 6) == single
    assert global_batches(2, 3, 2) == single
    assert global_batches(1, 4, 3, start=3) == single[3:]


def test_lr_schedule_is_linear_warmup_then_half_cycle_cosine(tiny_data, tmp_path):
    cfg = small_cfg(tiny_data, tmp_path, "optim.epochs=4", "optim.warmup_epochs=1", "optim.min_lr=1e-6")
    tr = Trainer(cfg)
    peak, warm, total = cfg.optim.effective_lr(), tr.warmup_steps, tr.total_steps
    assert peak == pytest.approx(cfg.optim.blr * 8 / 256)
    for step in (0, warm // 2, warm, (warm + total) // 2, total - 1):
        tr.scheduler.step_update(num_updates=step)
        lr = tr.optimizer.param_groups[0]["lr"]
        if step < warm:
            expected = peak * step / warm
        else:
            expected = 1e-6 + (peak - 1e-6) * 0.5 * (1 + np.cos(np.pi * (step - warm) / (total - warm)))
        assert lr == pytest.approx(expected, rel=1e-6, abs=1e-12), step


def test_no_weight_decay_on_biases_and_1d_params(tiny_data, tmp_path):
    tr = Trainer(small_cfg(tiny_data, tmp_path))
    names = {id(p): n for n, p in tr.model.named_parameters()}
    for group in tr.optimizer.param_groups:
        for p in group["params"]:
            no_decay = p.ndim <= 1 or names[id(p)].endswith(".bias")
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), names[id(p)]


@pytest.mark.slow
def test_tiny_run_lowers_the_loss(tiny_data, tmp_path):
    cfg = small_cfg(tiny_data, tmp_path, "optim.epochs=12", "optim.blr=1.5e-3", "run.log_every_steps=8")
    summary = Trainer(cfg).train()
    log = _step_lines(tmp_path / "metrics.jsonl")
    first, last = log[0]["loss"], log[-1]["loss"]
    assert last < 0.8 * first, (first, last)
    assert summary["step"] == 12 * (256 // 8) and (tmp_path / "config.yaml").exists()
    assert {"loss", "lr", "grad_norm", "img_per_s"} <= set(log[-1])
    start = json.loads(open(tmp_path / "metrics.jsonl").readline())
    assert start["event"] == "start" and start["total_steps"] == summary["step"]


def test_resume_after_interruption_is_bitwise_identical(tiny_data, tmp_path):
    full = small_cfg(tiny_data, tmp_path / "full", "optim.max_steps=7", "run.save_every_steps=3")
    Trainer(full).train()
    # "killed" after step 5: the last checkpoint is from step 3, so steps 4-5 are redone after resuming
    part = small_cfg(tiny_data, tmp_path / "part", "optim.max_steps=7", "run.save_every_steps=3",
                     "run.stop_after_steps=5")
    assert Trainer(part).train() == {"stopped_at": 5}
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pth")["step"] == 3
    resumed = small_cfg(tiny_data, tmp_path / "part", "optim.max_steps=7", "run.save_every_steps=3")
    summary = Trainer(resumed).train()
    assert summary["resumed"] and summary["step"] == 7
    a, b = weights(tmp_path / "full" / "checkpoint.pth"), weights(tmp_path / "part" / "checkpoint.pth")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = load_checkpoint(tmp_path / "full" / "checkpoint.pth")["optimizer"]["state"]
    ob = load_checkpoint(tmp_path / "part" / "checkpoint.pth")["optimizer"]["state"]
    for k in oa:
        assert torch.equal(oa[k]["exp_avg_sq"], ob[k]["exp_avg_sq"])


KILL_SCRIPT = r"""
import sys
from gmae.config import load_config
from gmae.engine.config import PretrainConfig
from gmae.engine.train import Trainer
Trainer(load_config(PretrainConfig, "pretrain/gmae_tiny", sys.argv[1:])).train()
"""


def test_sigkill_at_a_random_point_then_resume_matches(tiny_data, tmp_path):
    """A real preemption: SIGKILL the training process whenever it has saved at least one checkpoint."""
    import time

    args = ["optim.max_steps=14", "run.save_every_steps=2"]
    Trainer(small_cfg(tiny_data, tmp_path / "full", *args)).train()
    killed = small_cfg(tiny_data, tmp_path / "killed", *args)
    from gmae.config import config_to_dict

    flat = [f"{sec}.{k}={json.dumps(v)}" for sec, d in config_to_dict(killed).items() for k, v in d.items()]
    # the same thread count as this process: CPU reductions are only bitwise-reproducible at equal thread counts
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *flat], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pth"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    step = load_checkpoint(ckpt)["step"]
    assert 2 <= step <= 14
    summary = Trainer(killed).train()
    assert summary["step"] == 14
    a, b = weights(tmp_path / "full" / "checkpoint.pth"), weights(ckpt)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_a_different_recipe(tiny_data, tmp_path):
    Trainer(small_cfg(tiny_data, tmp_path, "optim.max_steps=1")).train()
    with pytest.raises(ValueError, match="optim"):
        Trainer(small_cfg(tiny_data, tmp_path, "optim.max_steps=2", "optim.blr=0.5")).train()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_SCRIPT = r"""
import sys
from gmae.config import load_config
from gmae.engine.config import PretrainConfig
from gmae.engine.train import Trainer
cfg = load_config(PretrainConfig, "pretrain/gmae_tiny", sys.argv[1:])
Trainer(cfg).train()
"""


def test_two_process_gloo_ddp_matches_single_process(tiny_data, tmp_path):
    common = [f"data.root={tiny_data / 'imagenet'}", "run.progress=false", "run.tensorboard=false",
              "optim.batch_size=8", "optim.epochs=1", "optim.max_steps=3", "optim.warmup_epochs=0", "optim.lr=1e-3",
              "run.device=cpu", *SMALL_MODEL]
    Trainer(load_config(PretrainConfig, "pretrain/gmae_tiny",
                        common + [f"run.out_dir={tmp_path / 'single'}", "optim.batch_per_device=8"])).train()
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        args = common + [f"run.out_dir={tmp_path / 'ddp'}", "optim.batch_per_device=4"]
        procs.append(subprocess.Popen([sys.executable, "-c", DDP_SCRIPT, *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()[-3000:]
    a, b = weights(tmp_path / "single" / "checkpoint.pth"), weights(tmp_path / "ddp" / "checkpoint.pth")
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pth")["world_size"] == 2
    init = Trainer(load_config(PretrainConfig, "pretrain/gmae_tiny",
                               common + [f"run.out_dir={tmp_path / 'init'}", "optim.batch_per_device=8"])).model.state_dict()
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-3 and gap < 1e-2 * moved, (moved, gap)


def test_nonfinite_losses_are_skipped_then_stop(tiny_data, tmp_path, monkeypatch):
    cfg = small_cfg(tiny_data, tmp_path, "optim.max_steps=10", "run.save_every_steps=2",
                    "run.max_consecutive_nonfinite=3")
    tr = Trainer(cfg)
    forward = tr.model.forward
    calls = {"n": 0}

    def flaky(*a, **kw):
        out = forward(*a, **kw)
        calls["n"] += 1
        if calls["n"] in (2,) or calls["n"] >= 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(tr.model, "forward", flaky)
    with pytest.warns(UserWarning, match="non-finite loss"):
        with pytest.raises(NonFiniteLossError, match="max_consecutive_nonfinite"):
            tr.train()
    ckpt = load_checkpoint(tmp_path / "checkpoint.pth")
    assert ckpt["step"] == 6 and ckpt["nonfinite_skipped"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_export_loads_into_timm_strictly(tmp_path):
    import timm

    from gmae.engine.checkpoint import save_checkpoint
    from gmae.models import create_model

    model = create_model("gmae_vit_base_patch16")
    save_checkpoint({"model": model.state_dict(), "arch": {"encoder": model.encoder.architecture()}},
                    tmp_path / "ckpt.pth")
    export_encoder(tmp_path / "ckpt.pth", tmp_path / "encoder.pth")
    exported = torch.load(tmp_path / "encoder.pth", weights_only=True)
    assert exported["model"]["pos_embed"].shape == (1, 197, 768)
    vit = timm.create_model("vit_base_patch16_224", num_classes=0, pretrained=False)
    vit.load_state_dict(exported["model"], strict=True)
    x = torch.randn(1, 3, 224, 224)
    model.eval()
    with torch.no_grad():
        ours = model.encoder.forward_features(x)
        theirs = vit.forward_features(x)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_pretrain_cli_writes_records_and_ply(tiny_data, tmp_path):
    from gmae.cli import main
    from gmae.results import ResultsStore

    out = tmp_path / "run"
    code = main(["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(tiny_data / "imagenet"), "--out",
                 str(out), "optim.max_steps=2", "optim.batch_size=8", "optim.batch_per_device=8",
                 "run.progress=false", *SMALL_MODEL])
    assert code == 0
    recs = ResultsStore(out).read()
    assert {(r["protocol"], r["metric"]) for r in recs} == {("pretrain", "loss"), ("pretrain", "img_per_s")}
    assert recs[0]["checkpoint"]["sha256"] and recs[0]["config"]["model"]["num_gaussians"] == 16

    img = sorted((tiny_data / "photos").iterdir())[0]
    assert main(["export", "--checkpoint", str(out / "checkpoint.pth"), "--gaussians", str(img),
                 "--out", str(tmp_path / "ply")]) == 0
    ply = (tmp_path / "ply" / f"{img.stem}.ply").read_bytes()
    header, _, body = ply.partition(b"end_header\n")
    assert b"element vertex 16" in header and header.count(b"property float") == 17
    data = np.frombuffer(body, dtype="<f4").reshape(16, 17)
    assert np.all(np.abs(data[:, :3]) < 1)  # centres in (-1, 1)
    raw = json.loads((tmp_path / "ply" / f"{img.stem}.json").read_text())["raw"]
    assert np.array(raw).shape == (16, 14)
    # log-scale and logit-opacity columns invert to the model's activations
    sig = 1 / (1 + np.exp(-np.array(raw)))
    np.testing.assert_allclose(np.exp(data[:, 10:13]), sig[:, 3:6], rtol=1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-data[:, 9])), sig[:, 13], rtol=1e-4, atol=1e-6)


def test_bad_data_root_fails_before_work(tmp_path):
    cfg = load_config(PretrainConfig, "pretrain/gmae_tiny", [f"data.root={tmp_path / 'missing'}"])
    with pytest.raises(FileNotFoundError, match="data.root"):
        Trainer(cfg)


def test_online_probes_log_accuracy_and_leave_the_encoder_alone(tiny_data, tmp_path):
    """The authors' diagnostic: probes train on detached features, so the encoder's update is unchanged."""
    base = ["optim.max_steps=3", "optim.warmup_epochs=0", "optim.lr=1e-3"]
    with_probe = Trainer(small_cfg(tiny_data, tmp_path / "probe", *base, "run.online_probe=true",
                                   "run.log_every_steps=1"))
    assert len(with_probe.probes.heads) == 1 and with_probe.probes.heads[0][1].out_features == 8
    with_probe.train()
    Trainer(small_cfg(tiny_data, tmp_path / "plain", *base)).train()
    log = _step_lines(tmp_path / "probe" / "metrics.jsonl")
    assert all(0.0 <= rec["probe_acc_block0"] <= 1.0 for rec in log)
    a, b = weights(tmp_path / "probe" / "checkpoint.pth"), weights(tmp_path / "plain" / "checkpoint.pth")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert load_checkpoint(tmp_path / "probe" / "checkpoint.pth")["probes"] is not None
