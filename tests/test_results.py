"""The results store: records with provenance, concurrent appends lose nothing, corrupt lines are skipped."""

import json
import multiprocessing as mp

import pytest

from gmae.results import REQUIRED_KEYS, ResultsStore, make_record, read_stores


def test_record_has_provenance(tmp_path):
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"weights")
    rec = make_record("linprobe", "top1", 61.9, model="gmae_vit_base_patch16", checkpoint=ckpt,
                      config={"epochs": 90}, data="imagenet/val", notes="x")
    for key in REQUIRED_KEYS:
        assert key in rec
    import hashlib
    assert rec["checkpoint"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert rec["notes"] == "x" and rec["value"] == 61.9


def test_unknown_protocol_rejected():
    with pytest.raises(ValueError, match="unknown protocol"):
        make_record("imagenet", "top1", 1.0, model="m")


def _append_many(path, worker, n):
    store = ResultsStore(path)
    for i in range(n):
        store.append(make_record("knn", "top1", float(i), model=f"w{worker}", payload="x" * 5000))


def test_concurrent_appends_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(tmp_path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    recs = ResultsStore(tmp_path).read()
    assert len(recs) == 160
    for w in range(4):
        assert sorted(r["value"] for r in recs if r["model"] == f"w{w}") == [float(i) for i in range(40)]


def test_corrupt_line_is_skipped_with_warning(tmp_path):
    store = ResultsStore(tmp_path)
    store.append(make_record("recon", "psnr", 18.7, model="a"))
    with open(store.path, "a") as f:
        f.write('{"protocol": "recon", "metric": "ps\n')  # a torn write
        f.write("[1, 2]\n")
    store.append(make_record("recon", "rfid", 89.4, model="a"))
    with pytest.warns(UserWarning, match=r"results\.jsonl:2"):
        recs = store.read()
    assert [r["metric"] for r in recs] == ["psnr", "rfid"]


def test_merge_several_stores(tmp_path):
    for job in ("job1", "job2"):
        ResultsStore(tmp_path / job).append(make_record("coco", "ap_box", 50.2, model=job))
    recs = read_stores([tmp_path])
    assert sorted(r["model"] for r in recs) == ["job1", "job2"]
    assert all(json.dumps(r) for r in recs)


def test_record_missing_keys_rejected(tmp_path):
    with pytest.raises(ValueError, match="lacks keys"):
        ResultsStore(tmp_path).append({"protocol": "knn", "metric": "top1", "value": 1})
