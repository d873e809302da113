"""Classification evaluations (eval/linprobe.py, eval/finetune.py, eval/knn.py) on the tiny data, on CPU.

Independent references: scikit-learn (multinomial logistic regression, weighted kNN), the closed forms of MAE's
layer decay and LARS update, and our own MaskedViTEncoder (features recomputed without timm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gmae.cli import main as cli_main
from gmae.config import load_config
from gmae.io import sha256_file
from gmae.results import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
QUIET = ["run.progress=false"]


def _run_cli(proto, ckpt, data, out, *overrides, config=None):
    args = ["eval", proto, "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out),
            "--config", config or f"{proto}/tiny", *QUIET, *overrides]
    return cli_main(args)


def _records(out):
    return ResultsStore(out).read()


def _check_records(recs, protocol, ckpt, n=2):
    best = [r for r in recs if r["metric"] == "best_top1"]
    recs = [r for r in recs if r["metric"] != "best_top1"]
    if protocol in ("linprobe", "finetune"):  # the best evaluated epoch beside the final one, as MAE reports
        assert len(best) == n // 2
        for b in best:
            final = next(r for r in recs if r["metric"] == "top1" and r.get("weights") == b.get("weights"))
            assert b["value"] >= final["value"] and b["n_evals"] >= 1
    else:
        assert not best
    assert len(recs) == n
    assert sorted(r["metric"] for r in recs) == sorted(["top1", "top5"] * (n // 2))
    for r in recs:
        assert r["protocol"] == protocol
        assert 0.0 <= r["value"] <= 100.0
        assert r["checkpoint"]["sha256"] == sha256_file(ckpt)
        assert r["config"]["data"]["img_size"] == 64
    by_metric = {r["metric"]: r["value"] for r in recs}
    assert by_metric["top5"] >= by_metric["top1"]


# --------------------------------------------------------------------------------------------------------------
# Features: timm model built from an export == our own encoder
# --------------------------------------------------------------------------------------------------------------

def test_features_match_our_encoder(tiny_encoder):
    from eval.classification import FrozenEncoder, pooled_features
    from gmae.engine.checkpoint import build_vit
    from gmae.engine.checkpoint import load_encoder_weights

    sd, arch = load_encoder_weights(tiny_encoder["export"])
    vit = build_vit(sd, arch, 64)
    frozen = FrozenEncoder(vit, "cls").train()  # asked for train mode, stays in eval mode and frozen
    assert not any(m.training for m in vit.modules()) and not any(p.requires_grad for p in vit.parameters())
    ours = tiny_encoder["module"]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), ours.forward_features(x)[:, 0], rtol=1e-4, atol=1e-4)
        # the authors' online-probe feature: mean over tokens of the last block output (token order is irrelevant)
        blocks = ours(x, 0.0, return_block_outputs=True)[4]
        torch.testing.assert_close(pooled_features(vit, x, "mean_tokens"), blocks[-1].mean(1), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------------------------

def test_lars_update_is_maes_rule():
    """One and two LARS steps on the probe head, against MAE's update written out by hand."""
    from eval.linprobe import LinearProbeHead, lars_optimizer

    torch.manual_seed(0)
    head = LinearProbeHead(6, 3)
    w0, b0 = head.linear.weight.detach().clone(), head.linear.bias.detach().clone()
    opt = lars_optimizer(head, lr=2.0, weight_decay=0.0, momentum=0.9, trust_coeff=0.001)
    g1w, g1b = torch.randn(3, 6), torch.randn(3)
    g2w, g2b = torch.randn(3, 6), torch.randn(3)

    def step(gw, gb):
        head.linear.weight.grad, head.linear.bias.grad = gw.clone(), gb.clone()
        opt.step()

    step(g1w, g1b)
    u1 = 0.001 * w0.norm() / g1w.norm() * g1w  # matrices: trust ratio; vectors: plain SGD
    torch.testing.assert_close(head.linear.weight.detach(), w0 - 2.0 * u1)
    torch.testing.assert_close(head.linear.bias.detach(), b0 - 2.0 * g1b)
    w1 = head.linear.weight.detach().clone()
    step(g2w, g2b)
    m_w = 0.9 * u1 + 0.001 * w1.norm() / g2w.norm() * g2w
    torch.testing.assert_close(head.linear.weight.detach(), w1 - 2.0 * m_w)
    torch.testing.assert_close(head.linear.bias.detach(), b0 - 2.0 * g1b - 2.0 * (0.9 * g1b + g2b))


def _blobs(n_per, dim, classes, sep, means_seed, noise_seed):
    means = torch.randn(classes, dim, generator=torch.Generator().manual_seed(means_seed)) * sep
    y = torch.arange(classes).repeat_interleave(n_per)
    x = means[y] + torch.randn(len(y), dim, generator=torch.Generator().manual_seed(noise_seed)) + 3.0
    return x, y


def test_linear_probe_agrees_with_sklearn(tmp_path):
    """The probe (BN + linear, LARS at the protocol's lr 6.4, cosine schedule) on fixed features of an easy
    8-class set lands within a few points of scikit-learn's multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from torch.utils.data import TensorDataset

    from eval.linprobe import LinprobeConfig, LinprobeTrainer
    from gmae.engine.distributed import DistInfo

    xtr, ytr = _blobs(50, 32, 8, 0.6, 1, 2)
    xte, yte = _blobs(50, 32, 8, 0.6, 1, 3)
    ref = LogisticRegression(max_iter=5000).fit(xtr.numpy(), ytr.numpy())
    ref_acc = 100.0 * (ref.predict(xte.numpy()) == yte.numpy()).mean()
    cfg = load_config(LinprobeConfig, None, [
        "data.root=unused", f"run.out_dir={tmp_path}", *QUIET, "data.num_workers=0", "data.eval_batch_per_device=400",
        "optim.epochs=40", "optim.warmup_epochs=4", "optim.batch_size=50", "optim.batch_per_device=50",
        "optim.lr=6.4", "run.save_every_steps=100000"])
    trainer = LinprobeTrainer(cfg, torch.nn.Identity(), TensorDataset(xtr, ytr), TensorDataset(xte, yte),
                              num_classes=8, feature_dim=32, dist_info=DistInfo())
    out = trainer.train()
    assert ref_acc > 80.0  # the set is easy, yet not trivially separable
    assert abs(out["top1"] - ref_acc) <= 5.0, (out["top1"], ref_acc)


def test_linprobe_end_to_end_resume_and_record(tiny_data, tiny_encoder, tmp_path):
    """CLI run on the tiny data; a run killed mid-way and resumed ends at the same head; the recorded top-1 equals
    an independent evaluation (our encoder + the saved head + torchvision's eval transform)."""
    from torchvision.datasets import ImageFolder

    from eval.linprobe import LinprobeConfig
    from gmae.data.transforms import eval_transform

    data = tiny_data / "imagenet"
    # 8 steps of 32 images, each 2 accumulated micro-batches of 16
    common = ["optim.epochs=1", "optim.warmup_epochs=0.5", "optim.batch_size=32", "optim.batch_per_device=16"]
    assert _run_cli("linprobe", tiny_encoder["export"], data, tmp_path / "a", *common) == 0
    # killed after step 3; the last checkpoint is from step 2
    drill = [*common, "run.save_every_steps=2"]
    assert _run_cli("linprobe", tiny_encoder["export"], data, tmp_path / "b", *drill, "run.stop_after_steps=3") == 0
    assert not (tmp_path / "b" / "results.jsonl").exists()
    assert torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)["step"] == 2
    assert _run_cli("linprobe", tiny_encoder["export"], data, tmp_path / "b", *drill) == 0
    a = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    assert a["finished"] and b["finished"] and a["step"] == b["step"] == 8
    for k in a["head"]:
        torch.testing.assert_close(a["head"][k], b["head"][k], rtol=0, atol=0)

    recs = _records(tmp_path / "a")
    _check_records(recs, "linprobe", tiny_encoder["export"])
    assert all(r["effective_lr"] == pytest.approx(409.6 * 32 / 256) for r in recs)  # blr x batch / 256
    assert all(r["accum_steps"] == 2 for r in recs)
    saved = load_config(LinprobeConfig, tmp_path / "a" / "config.yaml")
    assert saved.optim.batch_size == 32 and saved.head.features == "cls"
    metrics = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["effective_lr"] == pytest.approx(51.2)

    enc = tiny_encoder["module"]
    head_bn = torch.nn.BatchNorm1d(192, affine=False, eps=1e-6).eval()
    head_bn.load_state_dict({k[3:]: v for k, v in a["head"].items() if k.startswith("bn.")})
    val = ImageFolder(data / "val", transform=eval_transform(64))
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor(val.targets)
    with torch.no_grad():
        logits = head_bn(enc.forward_features(x)[:, 0]) @ a["head"]["linear.weight"].T + a["head"]["linear.bias"]
    top1 = 100.0 * (logits.argmax(1) == y).float().mean().item()
    assert {r["metric"]: r["value"] for r in recs}["top1"] == pytest.approx(top1, abs=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------------------------

def _layer_id(name: str, depth: int) -> int:
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def test_layer_decay_scales_vit_b_closed_form():
    """MAE's convention on ViT-B (global pool + fc_norm): scale = 0.65^(13 - layer_id); no decay on 1-D params,
    pos_embed, cls_token; the scheduler multiplies every group's lr by its scale."""
    from gmae.engine.loop import cosine_schedule
    from eval.finetune import layer_decay_param_groups
    from gmae.engine.checkpoint import build_timm_vit

    arch = dict(img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0)
    model = build_timm_vit(arch, num_classes=1000, global_pool="avg", fc_norm=True, drop_path_rate=0.1)
    groups = layer_decay_param_groups(model, weight_decay=0.05, layer_decay=0.65)
    where = {id(p): g for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert set(where) == {id(p) for p in names.values()}
    for name, p in names.items():
        g = where[id(p)]
        assert g["lr_scale"] == pytest.approx(0.65 ** (12 + 1 - _layer_id(name, 12))), name
        no_decay = p.ndim == 1 or name in ("pos_embed", "cls_token")
        assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
    assert where[id(names["head.weight"])]["lr_scale"] == 1.0
    assert where[id(names["blocks.11.mlp.fc1.weight"])]["lr_scale"] == pytest.approx(0.65)
    assert where[id(names["patch_embed.proj.weight"])]["lr_scale"] == pytest.approx(0.65 ** 13)

    opt = torch.optim.AdamW(groups, lr=2e-3)
    sched = cosine_schedule(opt, total_steps=100, warmup_steps=10, min_lr=1e-6)
    sched.step_update(num_updates=55)  # half-way through the cosine
    expected = 1e-6 + 0.5 * (2e-3 - 1e-6) * (1 + np.cos(np.pi * 45 / 90))
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(expected * g["lr_scale"], rel=1e-6)


def test_posterize_at_zero_bits_gives_black():
    """RandAugment inc1 at magnitude 10 asks for 0-bit posterize, which Pillow >= 13 rejects; ours returns the
    black image older Pillow produced."""
    from PIL import Image

    from eval.finetune import FinetuneConfig, train_transform

    cfg = load_config(FinetuneConfig, None, ["data.root=unused", "data.img_size=64"])
    tf = train_transform(cfg)
    ops = [op for t in tf.transforms for op in getattr(t, "ops", []) if op.name == "PosterizeIncreasing"]
    assert ops, "the MAE recipe's RandAugment should hold PosterizeIncreasing"
    img = Image.new("RGB", (8, 8), (200, 100, 50))
    assert np.asarray(ops[0].aug_fn(img, 0)).max() == 0
    assert np.asarray(ops[0].aug_fn(img, 2)).tolist() == np.asarray(img.point(lambda v: v & 0xC0)).tolist()


def test_linprobe_records_the_best_epoch_and_keeps_it_across_a_resume(tiny_data, tiny_encoder, tmp_path):
    """Evaluated after every epoch: best_top1 is the maximum of the logged evaluations (final one included) and
    a run killed in its last epoch and resumed records the same best, epoch and number of evaluations."""
    data = tiny_data / "imagenet"
    common = ["optim.epochs=3", "optim.warmup_epochs=0.5", "optim.batch_size=32", "optim.batch_per_device=32",
              "eval_every_epochs=1", "run.save_every_steps=4"]
    assert _run_cli("linprobe", tiny_encoder["export"], data, tmp_path / "a", *common) == 0
    evals = [json.loads(x) for x in open(tmp_path / "a" / "metrics.jsonl")]
    evals = [e for e in evals if e.get("event") == "eval"]
    assert len(evals) == 3
    recs = {r["metric"]: r for r in _records(tmp_path / "a")}
    tops = [e["top1"] for e in evals]
    assert recs["best_top1"]["value"] == max(tops) and recs["top1"]["value"] == tops[-1]
    assert recs["best_top1"]["best_epoch"] == int(np.argmax(tops)) and recs["best_top1"]["n_evals"] == 3

    steps = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=True)["step"]
    assert _run_cli("linprobe", tiny_encoder["export"], data, tmp_path / "b", *common,
                    f"run.stop_after_steps={steps - 1}") == 0
    assert _run_cli("linprobe", tiny_encoder["export"], data, tmp_path / "b", *common) == 0
    again = {r["metric"]: r for r in _records(tmp_path / "b")}
    for key in ("value", "best_epoch", "n_evals"):
        assert again["best_top1"][key] == recs["best_top1"][key], key


def test_finetune_end_to_end_and_resumed_mid_epoch(tiny_data, tiny_encoder, tmp_path):
    """The recipe's records (final and EMA weights); a run killed mid-epoch and resumed ends at the same weights
    and records as an uninterrupted one (mixup draws from numpy, drop path from torch: every RNG is seeded and
    saved, and making a loader draws from none of them)."""
    from eval.finetune import FinetuneConfig

    data = tiny_data / "imagenet"
    common = ["optim.epochs=1", "optim.warmup_epochs=0.5", "optim.max_steps=4", "ema.enabled=true", "ema.decay=0.5"]
    assert _run_cli("finetune", tiny_encoder["export"], data, tmp_path, *common) == 0
    drill = [*common, "run.save_every_steps=2"]
    assert _run_cli("finetune", tiny_encoder["export"], data, tmp_path / "b", *drill, "run.stop_after_steps=3") == 0
    assert _run_cli("finetune", tiny_encoder["export"], data, tmp_path / "b", *drill) == 0
    a = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=True)
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert [r["value"] for r in _records(tmp_path)] == [r["value"] for r in _records(tmp_path / "b")]
    recs = _records(tmp_path)
    _check_records(recs, "finetune", tiny_encoder["export"], n=4)
    assert sorted(r["weights"] for r in recs) == ["ema", "ema", "ema", "final", "final", "final"]
    assert all(r["effective_lr"] == pytest.approx(2e-3 * 32 / 256) and r["layer_decay"] == 0.65 for r in recs)
    ck = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert ck["finished"] and ck["step"] == 4
    sd = ck["model"]
    assert "fc_norm.weight" in sd and "norm.weight" not in sd and sd["head.weight"].shape == (8, 192)
    enc = torch.load(tiny_encoder["export"], weights_only=True)["model"]
    assert not torch.equal(sd["blocks.0.attn.qkv.weight"], enc["blocks.0.attn.qkv.weight"])  # trained end to end
    cfg = load_config(FinetuneConfig, tmp_path / "config.yaml")
    assert cfg.aug.mixup == 0.8 and cfg.aug.auto_augment == "rand-m9-mstd0.5-inc1"


# --------------------------------------------------------------------------------------------------------------
# kNN
# --------------------------------------------------------------------------------------------------------------

def test_knn_scores_match_sklearn():
    from sklearn.neighbors import KNeighborsClassifier

    from eval.knn import knn_scores

    xtr, ytr = _blobs(40, 16, 5, 0.5, 4, 5)
    xte, _ = _blobs(20, 16, 5, 0.5, 4, 6)
    xtr, xte = xtr - 3.0, xte - 3.0  # centred, so cosine similarity carries the class structure
    ref = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1.0 - d) / 0.07)).fit(xtr.numpy(), ytr.numpy())
    scores = knn_scores(xtr, ytr, xte, num_classes=5, k=20, temperature=0.07, chunk=7)
    torch.testing.assert_close(scores / scores.sum(1, keepdim=True),
                               torch.from_numpy(ref.predict_proba(xte.numpy())).float(), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def knn_run(tiny_data, tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("knn")
    assert _run_cli("knn", tiny_encoder["export"], tiny_data / "imagenet", out) == 0
    return out


def test_knn_end_to_end_and_cached_resume(tiny_data, tiny_encoder, knn_run, tmp_path):
    import shutil

    data = tiny_data / "imagenet"
    shutil.copytree(knn_run, tmp_path, dirs_exist_ok=True)
    first = _records(tmp_path)
    _check_records(first, "knn", tiny_encoder["export"])
    assert all(r["k"] == 20 and r["temperature"] == 0.07 for r in first)
    cache = tmp_path / "features_train.pth"
    stamp = cache.stat().st_mtime_ns
    assert _run_cli("knn", tiny_encoder["export"], data, tmp_path) == 0  # reuses the cached features
    second = _records(tmp_path)[2:]
    assert cache.stat().st_mtime_ns == stamp
    assert [r["value"] for r in second] == [r["value"] for r in first]


# --------------------------------------------------------------------------------------------------------------
# Bad input fails before any work, naming the culprit
# --------------------------------------------------------------------------------------------------------------

def _bad_case(kind, tmp_path, tiny_data, enc_file):
    data, ckpt = tiny_data / "imagenet", enc_file
    if kind == "missing_checkpoint":
        ckpt, needle = tmp_path / "nope.pth", "checkpoint not found"
    elif kind == "no_encoder_keys":
        ckpt = tmp_path / "decoder_only.pth"
        torch.save({"model": {"decoder.weight": torch.zeros(2, 2)}}, ckpt)
        needle = "no ViT encoder weights"
    elif kind == "no_classes":
        data = tmp_path / "empty"
        (data / "train").mkdir(parents=True)
        (data / "val").mkdir()
        needle = "no class folders"
    else:  # val classes != train classes
        import shutil

        data = tmp_path / "mismatch"
        shutil.copytree(tiny_data / "imagenet", data)
        shutil.rmtree(data / "val" / "star")
        needle = "different classes"
    return ckpt, data, needle


@pytest.mark.parametrize("proto", ["linprobe", "finetune", "knn"])
@pytest.mark.parametrize("kind", ["missing_checkpoint", "no_encoder_keys", "no_classes", "class_mismatch"])
def test_bad_input_fails_fast(kind, proto, tmp_path, tiny_data, tiny_encoder, capsys):
    ckpt, data, needle = _bad_case(kind, tmp_path, tiny_data, tiny_encoder["export"])
    out = tmp_path / "out"
    assert _run_cli(proto, ckpt, data, out) == 2
    err = capsys.readouterr().err
    assert needle in err and f"gmae eval {proto}: error" in err
    assert not (out / "checkpoint.pth").exists() and not (out / "results.jsonl").exists()


# --------------------------------------------------------------------------------------------------------------
# torchrun: 2 processes give the single-process kNN result
# --------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_knn_two_processes_match_one(tiny_data, tiny_encoder, knn_run, tmp_path):
    data = tiny_data / "imagenet"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gmae", "eval",
           "knn", "--checkpoint", str(tiny_encoder["export"]), "--data", str(data), "--out", str(tmp_path / "two"),
           "--config", "knn/tiny", *QUIET, "run.device=cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _records(knn_run)[:2], _records(tmp_path / "two")
    assert len(two) == 2  # rank 0 only
    assert [r["value"] for r in two] == pytest.approx([r["value"] for r in one], abs=1e-9)
    assert two[0]["n_train"] == one[0]["n_train"] == 256


# --------------------------------------------------------------------------------------------------------------
# Our training checkpoint works as well as its export
# --------------------------------------------------------------------------------------------------------------

def test_training_checkpoint_equals_its_export(tiny_data, tiny_gmae_checkpoint, tmp_path):
    """kNN on a pretraining checkpoint.pth (encoder.* keys, stored arch and model name) and on its `gmae export`
    file give the same numbers; the record names the pretrained model."""
    from gmae.engine.checkpoint import export_encoder

    data = tiny_data / "imagenet"
    exported = export_encoder(tiny_gmae_checkpoint, tmp_path / "encoder.pth")
    assert _run_cli("knn", tiny_gmae_checkpoint, data, tmp_path / "ckpt") == 0
    assert _run_cli("knn", exported, data, tmp_path / "export") == 0
    a, b = _records(tmp_path / "ckpt"), _records(tmp_path / "export")
    assert [r["value"] for r in a] == [r["value"] for r in b]
    assert a[0]["model"] == "gmae_vit_tiny_patch8" and b[0]["model"] == "encoder"


@pytest.mark.slow
def test_tiny_pretrained_gmae_beats_random_init(tmp_path_factory):
    """Pretraining must make the encoder's features more useful than a random encoder's (kNN and linear probe).

    Uses the "plain" style of the tiny set (one grey shape per image, 8 classes, 160 train / 16 val per class):
    at CPU scale, GMAE pretraining does not learn the default cluttered set's classes (measured: chance after
    1,000 steps). 128 val images: one image is 0.8 points, and the standard error of an accuracy of 20-50 % is
    3.5-4.4 points, so the margins below are about 3 standard errors of the difference or more.
    """
    from gmae.cli import main
    from gmae.data.tiny import generate_tiny
    from gmae.results import ResultsStore

    root = tmp_path_factory.mktemp("plain")
    generate_tiny(root, seed=0, size=64, train_per_class=160, val_per_class=16, coco_train=1, coco_val=1, bsds=1,
                  saliency=1, photos=1, imagenet_style="plain")
    data = root / "imagenet"
    common = ["optim.epochs=25", "optim.warmup_epochs=1", "run.progress=false", "run.tensorboard=false"]
    assert main(["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(data), "--out", str(root / "pre"),
                 "optim.max_steps=1000", "optim.lr=1.5e-3", *common]) == 0
    assert main(["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(data), "--out", str(root / "rand"),
                 "optim.max_steps=1", "optim.lr=1e-12", *common]) == 0
    for name in ("pre", "rand"):
        for protocol in ("knn", "linprobe"):
            assert main(["eval", protocol, "--checkpoint", str(root / name / "checkpoint.pth"), "--data", str(data),
                         "--config", f"{protocol}/tiny", "--out", str(root / f"{protocol}_{name}"), "--results",
                         str(root / "store"), "run.progress=false", f"run.model_name={name}"]) == 0
    top1 = {(r["protocol"], r["model"]): r["value"] for r in ResultsStore(root / "store").read()
            if r["metric"] == "top1"}
    print("pretrained vs random top-1:", top1)
    assert top1[("knn", "pre")] >= top1[("knn", "rand")] + 15
    assert top1[("linprobe", "pre")] >= top1[("linprobe", "rand")] + 10
