"""Issue #15: no code from files, nothing lost, no silent wrong number, one clean line for every bad input.

Each test reproduces one reported case and asserts the behaviour that was missing.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from gmae.results import ResultsStore, make_record


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------

class _MakesDir:
    """Unpickling this creates a folder: proof that a loader ran code from the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _evil_pickle(path, marker):
    import pickle

    path.write_bytes(pickle.dumps(_MakesDir(marker)))


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


needs_d2 = pytest.mark.skipif(not _has("detectron2"), reason="detectron2 is not installed")


def _has_cuda():
    import torch

    return torch.cuda.is_available()


def _one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ----------------------------------------------------------------------------------------------------------
# Data loss: the results store
# ----------------------------------------------------------------------------------------------------------

def test_results_append_after_torn_line_keeps_the_new_record(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(make_record("knn", "top1", 10.0, model="a"))
    with open(store.path, "ab") as f:  # a killed writer's fragment, no newline
        f.write(b'{"protocol": "knn", "metric": "to')
    store.append(make_record("knn", "top1", 20.0, model="b"))
    with pytest.warns(UserWarning, match="corrupt"):
        recs = store.read()
    assert [(r["model"], r["value"]) for r in recs] == [("a", 10.0), ("b", 20.0)]


def test_results_failed_append_leaves_no_fragment(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    store.append(make_record("knn", "top1", 10.0, model="a"))
    before = store.path.read_bytes()
    real_write = os.write

    def disk_full(fd, data):  # writes a few bytes, then the disk is full (what a real ENOSPC append does)
        real_write(fd, bytes(data[:7]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError):
        store.append(make_record("knn", "top1", 20.0, model="b", payload="x" * 100))
    monkeypatch.setattr(os, "write", real_write)
    assert store.path.read_bytes() == before
    store.append(make_record("knn", "top1", 30.0, model="c"))
    assert [r["model"] for r in store.read()] == ["a", "c"]



def test_full_disk_during_checkpoint_save_is_reported_as_such(tmp_path, monkeypatch):
    import io

    import torch

    import gmae.io as gio

    path = tmp_path / "checkpoint.pth"
    gio.atomic_torch_save({"step": 1}, path)
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):  # accepts 1 kB, then the disk is full
        def __init__(self, fd):
            self.f, self.n = real_fdopen(fd, "wb"), 0

        def writable(self):
            return True

        def write(self, b):
            if self.n + len(b) > 1024:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.n += len(b)
            return self.f.write(b)

        def close(self):
            self.f.close()
            super().close()

        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(gio.os, "fdopen", lambda fd, mode: Full(fd))
    with pytest.raises(OSError) as info:
        gio.atomic_torch_save({"step": 2, "w": torch.zeros(100_000)}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


# ----------------------------------------------------------------------------------------------------------
# Security / sharing: written files respect the umask
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    from gmae.io import atomic_torch_save, atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.yaml", "a: 1\n")
        atomic_torch_save({"x": 1}, tmp_path / "checkpoint.pth")
    finally:
        os.umask(old)
    for name in ("config.yaml", "checkpoint.pth"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


# ----------------------------------------------------------------------------------------------------------
# Data loss: exports, concurrent runs, refused resumes
# ----------------------------------------------------------------------------------------------------------

def _tiny_pretrain_cfg(tiny_data, out, *extra):
    from gmae.config import load_config
    from gmae.engine.config import PretrainConfig

    return load_config(PretrainConfig, "pretrain/gmae_tiny", [
        f"data.root={tiny_data / 'imagenet'}", f"run.out_dir={out}", "optim.max_steps=2", "optim.batch_size=8",
        "optim.batch_per_device=8", "run.progress=false", "run.tensorboard=false", "run.device=cpu", *extra])


def test_export_refuses_to_replace_its_own_checkpoint(tiny_gmae_checkpoint, tmp_path, capsys):
    import shutil

    from gmae.cli import main

    ckpt = tmp_path / "checkpoint.pth"
    shutil.copy(tiny_gmae_checkpoint, ckpt)
    before = ckpt.read_bytes()
    for out in (ckpt, tmp_path / "." / "checkpoint.pth"):
        assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
        assert "refusing" in _one_line(capsys)
    other = tmp_path / "other.pth"  # another run's training checkpoint is protected too
    shutil.copy(tiny_gmae_checkpoint, other)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(other)]) == 2
    assert "training checkpoint" in _one_line(capsys)
    assert ckpt.read_bytes() == before and other.read_bytes() == before


def test_second_pretraining_into_one_folder_is_refused(tiny_data, tmp_path):
    from gmae.engine.train import Trainer
    from gmae.errors import InputError
    from gmae.io import run_dir_lock

    out = tmp_path / "run"
    with run_dir_lock(out, "pretraining"):  # a first pretraining in progress
        with pytest.raises(InputError, match="another pretrain run"):
            Trainer(_tiny_pretrain_cfg(tiny_data, out)).train()
        assert not (out / "checkpoint.pth").exists() and not (out / "config.yaml").exists()
    trainer = Trainer(_tiny_pretrain_cfg(tiny_data, out))
    trainer.train()  # the lock goes with its holder
    assert (out / "checkpoint.pth").is_file()
    # and a finished training releases it, even while its Trainer is still referenced
    Trainer(_tiny_pretrain_cfg(tiny_data, out)).train()
    assert trainer.step == 2


def test_refused_resume_keeps_the_runs_config(tiny_data, tmp_path):
    from gmae.engine.train import Trainer

    out = tmp_path / "run"
    Trainer(_tiny_pretrain_cfg(tiny_data, out)).train()
    before = (out / "config.yaml").read_text()
    with pytest.raises(ValueError, match="cannot resume"):
        Trainer(_tiny_pretrain_cfg(tiny_data, out, "model.mask_ratio=0.6")).train()
    assert (out / "config.yaml").read_text() == before


# ----------------------------------------------------------------------------------------------------------
# Data loss: what can be checked is checked before the expensive work
# ----------------------------------------------------------------------------------------------------------

def test_unwritable_results_refused_before_pretraining(tiny_data, tmp_path, capsys):
    from gmae.cli import main

    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    out = tmp_path / "run"
    code = main(["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(tiny_data / "imagenet"), "--out",
                 str(out), "--results", str(blocker / "store"), "optim.max_steps=2", "optim.batch_size=8",
                 "optim.batch_per_device=8", "run.progress=false", "run.tensorboard=false", "run.device=cpu"])
    line = _one_line(capsys)
    assert code == 2 and "--results" in line and "afile" in line, line
    assert not (out / "checkpoint.pth").exists()


@needs_d2
def test_coco_missing_val_image_and_bad_schema_refused_before_training(tiny_data, tiny_encoder, tmp_path):
    import shutil

    from eval.coco.train import RunSpec, check_inputs

    coco = tmp_path / "coco"
    shutil.copytree(tiny_data / "coco", coco)
    spec = RunSpec(config="mask_rcnn_vitdet_tiny", coco=str(coco), checkpoint=str(tiny_encoder["export"]),
                   out_dir=str(tmp_path / "out"))
    check_inputs(spec)  # the intact copy passes
    ann = coco / "annotations" / "instances_val2017.json"
    doc = json.loads(ann.read_text())
    gone = doc["images"][0]["file_name"]
    (coco / "val2017" / gone).unlink()
    with pytest.raises(FileNotFoundError, match=f"instances_val2017.json.*{gone}"):
        check_inputs(spec)
    shutil.copy(tiny_data / "coco" / "val2017" / gone, coco / "val2017" / gone)
    del doc["annotations"][0]["bbox"]
    ann.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"instances_val2017.json: annotations\[0\] lacks \['bbox'\]"):
        check_inputs(spec)


def test_malformed_bsds_mat_refused_before_inference(tiny_data, tiny_gmae_checkpoint, tmp_path, capsys):
    import shutil

    from gmae.cli import main

    bsds = tmp_path / "bsds"
    shutil.copytree(tiny_data / "bsds500", bsds)
    mat = sorted(bsds.rglob("*.mat"))[-1]
    mat.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    out = tmp_path / "edges"
    code = main(["eval", "edges", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(bsds), "--out", str(out),
                 "--levels", "4", "--workers", "1", "--figure-images", "0"])
    line = _one_line(capsys)
    assert code == 2 and mat.name in line, line
    assert not list(out.glob("*.png")) if out.exists() else True


# ----------------------------------------------------------------------------------------------------------
# Silent wrong results / value errors caught before the model and data are built
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, key", [
    ("model.mask_ratio=0", "model.mask_ratio"),  # masked loss over no masked patch: exactly 0
    ("model.mask_ratio=0.99", "model.mask_ratio"),  # 64 patches x 0.01 -> 0 visible: CLS alone
    ("model.mask_ratio=1.0", "mask_ratio"),
    ("model.name=gmae_vit_nonexistent", "model.name"),
    ("optim.blr=-1e-3", "optim.blr"),
    ("optim.lr=0", "optim.lr"),
    ("run.save_every_steps=0", "run.save_every_steps"),
    ("data.img_size=60", "data.img_size"),  # not a multiple of the 8 px patch
    ("optim.batch_size=4096", "optim.batch_size"),  # more than the tiny set's images
])
def test_pretrain_value_errors_refused_before_model_and_data(tiny_data, tmp_path, monkeypatch, capsys, override,
                                                             key):
    import gmae.engine.train as train
    from gmae.cli import main

    built = []
    real_create = train.create_model

    def spy(*a, **k):  # a real (not meta) model means the expensive part started
        m = real_create(*a, **k)
        if next(m.parameters()).device.type != "meta":
            built.append(a)
        return m

    monkeypatch.setattr(train, "create_model", spy)
    extra = [] if "batch_size" in override else ["optim.batch_size=8", "optim.batch_per_device=8"]
    code = main(["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(tiny_data / "imagenet"), "--out",
                 str(tmp_path / "run"), "optim.max_steps=1", "run.progress=false", "run.tensorboard=false",
                 *extra, override, *(["optim.batch_per_device=4096"] if "batch_size" in override else [])])
    line = _one_line(capsys)
    assert code == 2 and key in line, line
    assert not built and not (tmp_path / "run" / "config.yaml").exists()


def test_mask_ratio_zero_is_fine_when_the_loss_covers_all_patches(tiny_data, tmp_path):
    from gmae.engine.train import validate

    cfg = _tiny_pretrain_cfg(tiny_data, tmp_path, "model.mask_ratio=0", "model.loss_type=all")
    assert validate(cfg) == 64



def test_one_class_data_refused_for_knn_and_linprobe(tiny_data, tiny_gmae_checkpoint, tmp_path, capsys):
    import shutil

    from gmae.cli import main

    data = tmp_path / "one"
    for split in ("train", "val"):
        first = sorted((tiny_data / "imagenet" / split).iterdir())[0]
        shutil.copytree(first, data / split / first.name)
    for protocol in ("knn", "linprobe"):
        code = main(["eval", protocol, "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(data), "--config",
                     f"{protocol}/tiny", "--out", str(tmp_path / protocol), "run.progress=false"])
        line = _one_line(capsys)
        assert code == 2 and ">= 2 classes" in line, line
        assert not (tmp_path / protocol / "results.jsonl").exists()


def test_16bit_png_loads_as_its_grey_levels(tmp_path):
    import numpy as np
    from PIL import Image

    from gmae.data.images import ImageListDataset
    from gmae.data.imagenet import ImageFolderDataset

    levels = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    path = tmp_path / "a" / "x.png"
    path.parent.mkdir()
    Image.fromarray(levels).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # PIL really reads it as 16-bit
    want = (levels.astype(np.float64) / 257).round().astype(np.uint8)  # 65535 -> 255
    for img in (ImageListDataset([path])[0], ImageFolderDataset(tmp_path)[0][0]):
        got = np.asarray(img)
        assert got.shape == (16, 16, 3) and (got == want[..., None]).all()


def test_saliency_masks_stored_as_0_1_are_read_as_foreground(tmp_path):
    import numpy as np
    from PIL import Image

    from gmae.data.saliency import SaliencyDataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    fg = np.zeros((8, 8), np.uint8)
    fg[2:6, 3:7] = 1
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(fg).save(tmp_path / "masks" / "a.png")  # 0/1, not 0/255
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / "images" / "b.jpg")
    Image.fromarray(fg * 255).save(tmp_path / "masks" / "b.png")
    ds = SaliencyDataset(tmp_path)
    assert (ds[0][1] == fg).all() and (ds[1][1] == fg).all()


def test_corrupt_image_is_named_in_one_line(tiny_gmae_checkpoint, tmp_path, capsys):
    from gmae.cli import main

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(["export", "--checkpoint", str(tiny_gmae_checkpoint), "--gaussians", str(bad), "--out",
                 str(tmp_path / "ply")])
    line = _one_line(capsys)
    assert code == 2 and "broken.png" in line, line



def test_rerun_of_a_finished_pretraining_records_no_nan(tiny_data, tmp_path, capsys):
    import math

    from gmae.cli import main

    argv = ["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(tiny_data / "imagenet"), "--out",
            str(tmp_path / "run"), "optim.max_steps=2", "optim.batch_size=8", "optim.batch_per_device=8",
            "run.progress=false", "run.tensorboard=false", "run.device=cpu"]
    assert main(argv) == 0
    first = ResultsStore(tmp_path / "run").read()
    assert main(argv) == 0  # the same run again: finished, nothing to train
    assert "nothing to do" in capsys.readouterr().out
    records = ResultsStore(tmp_path / "run").read()
    assert records == first and all(math.isfinite(r["value"]) for r in records)


def test_recon_out_inside_data_is_refused(tiny_data, tiny_gmae_checkpoint, tmp_path, capsys):
    import shutil

    from gmae.cli import main

    data = tmp_path / "photos"
    shutil.copytree(tiny_data / "photos", data)
    code = main(["eval", "recon", "--checkpoint", str(tiny_gmae_checkpoint), "--data", str(data), "--mask-ratio", "0",
                 "--out", str(data / "recon"), "fid.enabled=false", "data.max_images=2", "figure_images=0"])
    line = _one_line(capsys)
    assert code == 2 and "inside data.root" in line, line
    assert not (data / "recon").exists()


def test_nan_stop_is_one_line_naming_only_a_checkpoint_that_exists(tiny_data, tmp_path, capsys, monkeypatch):
    import re

    import gmae.engine.train as train
    from gmae.cli import main

    def nan_step(self, batches):  # every step non-finite, as with a diverged lr
        next(batches)
        self._skip(f"non-finite loss at step {self.step}")
        return {"loss": float("nan")}

    monkeypatch.setattr(train.Trainer, "train_step", nan_step)
    out = tmp_path / "run"
    code = main(["pretrain", "--config", "pretrain/gmae_tiny", "--data", str(tiny_data / "imagenet"), "--out",
                 str(out), "optim.max_steps=5", "optim.batch_size=8", "optim.batch_per_device=8",
                 "run.progress=false", "run.tensorboard=false", "run.max_consecutive_nonfinite=2"])
    line = _one_line(capsys)
    assert code == 1 and "non-finite" in line, line
    named = re.findall(r"(/\S+checkpoint\.pth)", line)
    assert all(os.path.isfile(p) for p in named), line
    assert named or "No checkpoint was written" in line


# ----------------------------------------------------------------------------------------------------------
# Security: no code from files
# ----------------------------------------------------------------------------------------------------------

@needs_d2
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
@pytest.mark.parametrize("name", ["evil.pkl", "../evil.pkl", "model_final.pth"])
def test_coco_resume_runs_no_code_from_the_run_folder(tmp_path, tiny_data, tiny_encoder, capsys, name):
    from gmae.cli import main

    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    _evil_pickle(out / name if "/" not in name else tmp_path / "evil.pkl", marker)
    (out / "last_checkpoint").write_text(name)
    code = main(["eval", "coco", "--checkpoint", str(tiny_encoder["export"]), "--coco", str(tiny_data / "coco"),
                 "--config", "mask_rcnn_vitdet_tiny", "--out", str(out), "--resume", "train.max_iter=2",
                 "lr_multiplier.milestones=[1]"])
    assert not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ("evil.pkl" in err[0] or "weights_only" in err[0]), err


@pytest.mark.skipif(not _has("torch_fidelity"), reason="torch-fidelity is not installed")
def test_fid_inception_weights_are_never_unpickled(tmp_path, monkeypatch):
    from eval import fid as fidlib

    marker = tmp_path / "pwned"
    weights = tmp_path / fidlib.TFID_WEIGHTS_NAME
    _evil_pickle(weights, marker)
    # a forged file whose sha256 starts with the published 8 hex digits (32 bits: forgeable offline)
    monkeypatch.setattr(fidlib, "file_digest", lambda p, algo="sha256": "6726825d" + "0" * 56)
    with pytest.raises((ValueError, fidlib.FidUnavailableError), match="weights_only"):
        fidlib.resolve_extractor("torch-fidelity", str(weights)).build("cpu")
    assert not marker.exists()


@pytest.mark.skipif(not _has("torch_fidelity"), reason="torch-fidelity is not installed")
def test_fid_inception_tensors_are_handed_over_intact(tmp_path, monkeypatch):
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    from eval import fid as fidlib

    # a randomly initialised Inception of torch-fidelity's architecture stands in for the official weights
    with monkeypatch.context() as m:
        m.setattr(tfi.torch, "load", lambda *a, **k: None)
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        ref = tfi.FeatureExtractorInceptionV3("ref", ["2048"], feature_extractor_weights_path="unused")
    state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    torch.save(state, tmp_path / fidlib.TFID_WEIGHTS_NAME)
    ex = fidlib.resolve_extractor("torch-fidelity", str(tmp_path / fidlib.TFID_WEIGHTS_NAME)).build("cpu")
    got = ex.state_dict()
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)


# ----------------------------------------------------------------------------------------------------------
# One clean line: every command turns bad input into one line naming the file or key, exit 2
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, names", [
    (["export", "--checkpoint", "{tmp}/missing.pth", "--out", "{tmp}/enc.pth"], "missing.pth"),
    (["report", "--results", "{tmp}/nowhere", "--out", "{tmp}/report"], "nowhere"),
    (["eval", "bsds", "--pred", "{tmp}/nopred", "--gt", "{tmp}/nogt", "--out", "{tmp}/bsds"], "nopred"),
    (["pretrain", "--config", "{tmp}/nothere.yaml"], "nothere.yaml"),
    (["pretrain", "--config", "pretrain/gmae_tiny", "--data", "{tmp}", "run.device=cuda"], "run.device=cuda"),
    (["eval", "knn", "--checkpoint", "{tmp}/missing.pth", "--data", "{tmp}"], "missing.pth"),
    # the checkpoint file exists (its contents are read last): the config, devices and data are checked first
    pytest.param(["eval", "coco", "--checkpoint", "{tmp}/unread.pth", "--coco", "{tmp}/nococo", "--config",
                  "mask_rcnn_vitdet_tiny"], "nococo", marks=needs_d2),
    pytest.param(["eval", "coco", "--checkpoint", "{tmp}/unread.pth", "--coco", "{tmp}", "--config",
                  "mask_rcnn_vitdet_tiny", "train.max_iters=3"], "train.max_iters", marks=needs_d2),
    pytest.param(["eval", "coco", "--checkpoint", "{tmp}/unread.pth", "--coco", "{tmp}"], "CUDA",
                 marks=[needs_d2, pytest.mark.skipif(_has_cuda(), reason="needs a machine without CUDA")]),
])
def test_commands_turn_bad_input_into_one_line(tmp_path, capsys, argv, names):
    from gmae.cli import main

    (tmp_path / "unread.pth").write_bytes(b"not a checkpoint")

    code = main([a.format(tmp=tmp_path) for a in argv])
    line = _one_line(capsys)
    assert code == 2 and "error" in line and names in line, line


def test_disk_full_is_one_line_saying_no_space_left(tmp_path, capsys, monkeypatch):
    import torch

    from gmae.cli import main

    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 192)}}, ckpt)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "enc.pth"))

    monkeypatch.setattr("gmae.engine.checkpoint.atomic_torch_save", full)
    monkeypatch.setattr("gmae.engine.checkpoint.load_encoder_weights", lambda p: ({}, {}))
    code = main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "enc.pth")])
    line = _one_line(capsys)
    assert code == 1 and "no space left" in line and "enc.pth" in line, line
