"""The results store: append-only JSON Lines that every evaluation writes and the report reads.

One record = one number: ``{"protocol", "metric", "value", "model", "checkpoint": {"path", "sha256"},
"config", "git_commit", "data", "hardware", "time", ...extra}``. Appends take an exclusive ``flock`` and
write whole lines, so several processes (DDP ranks, parallel jobs) appending to one store lose nothing; an
append starts on a fresh line even after a torn one, and a failed append (full disk) is truncated away.
A corrupt line is reported and skipped on read, never fatal.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from gmae.io import sha256_file

RESULTS_FILE = "results.jsonl"

PROTOCOLS = ("pretrain", "linprobe", "finetune", "knn", "coco", "recon", "figure_ground", "bsds_edges")
REQUIRED_KEYS = ("protocol", "metric", "value", "model", "checkpoint", "config", "git_commit", "data",
                 "hardware", "time")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree this code runs from, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return commit + ("-dirty" if dirty else "")


@lru_cache(maxsize=1)
def hardware() -> str:
    """A short human-readable description of where the numbers were produced."""
    parts = [platform.machine(), f"{os.cpu_count()} cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            parts.append(f"{n}x {torch.cuda.get_device_name(0)}")
        parts.append(f"torch {torch.__version__}")
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return ", ".join(parts)


@lru_cache(maxsize=64)
def _checkpoint_hash(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def checkpoint_info(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """``{"path", "sha256"}`` for a checkpoint file (hash cached per path/mtime/size)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        return {"path": str(p), "sha256": None}
    st = p.stat()
    return {"path": str(p.resolve()), "sha256": _checkpoint_hash(str(p.resolve()), st.st_mtime_ns, st.st_size)}


def make_record(protocol: str, metric: str, value: float | int | None, *, model: str,
                checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
                config: Mapping[str, Any] | str | None = None, data: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """Build one result record; ``extra`` keys (e.g. ``mask_ratio``, ``split``, ``notes``) are kept as given."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if isinstance(checkpoint, Mapping):
        ckpt = dict(checkpoint)
    else:
        ckpt = checkpoint_info(checkpoint)
    if value is not None:
        value = float(value)
    rec = {
        "protocol": protocol,
        "metric": metric,
        "value": value,
        "model": model,
        "checkpoint": ckpt,
        "config": config,
        "git_commit": git_commit(),
        "data": data,
        "hardware": hardware(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    rec.update(extra)
    return rec


class ResultsStore:
    """``<root>/results.jsonl``; ``root`` may also name the .jsonl file itself."""

    def __init__(self, root: str | os.PathLike):
        root = Path(root)
        self.path = root if root.suffix == ".jsonl" else root / RESULTS_FILE

    def append(self, records: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> None:
        if isinstance(records, Mapping):
            records = [records]
        lines = []
        for r in records:
            missing = [k for k in REQUIRED_KEYS if k not in r]
            if missing:
                raise ValueError(f"result record lacks keys {missing}: {r}")
            lines.append(json.dumps(r, sort_keys=False, default=str) + "\n")
        if not lines:
            return
        payload = "".join(lines).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                # a torn last line (killed writer, damaged copy) would swallow our first record: start afresh
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    payload = b"\n" + payload
                try:
                    view = memoryview(payload)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    os.fsync(fd)
                except BaseException:
                    # e.g. a full disk mid-write: leave no partial record behind (we hold the lock)
                    os.ftruncate(fd, size)
                    raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """All well-formed records; corrupt lines are warned about (file and line number) and skipped."""
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    warnings.warn(f"{self.path}:{lineno}: skipping corrupt record ({e.msg})", stacklevel=2)
                    continue
                if not isinstance(rec, dict) or "protocol" not in rec or "metric" not in rec:
                    warnings.warn(f"{self.path}:{lineno}: skipping record without protocol/metric", stacklevel=2)
                    continue
                out.append(rec)
        return out


def read_stores(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Merge several stores (e.g. one per cluster job) into one list of records."""
    records: list[dict[str, Any]] = []
    for p in paths:
        p = Path(p)
        if p.is_dir() and not (p / RESULTS_FILE).exists():
            for sub in sorted(p.rglob(RESULTS_FILE)):
                records.extend(ResultsStore(sub).read())
        else:
            records.extend(ResultsStore(p).read())
    return records
