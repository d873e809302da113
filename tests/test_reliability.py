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
