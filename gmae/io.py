"""Atomic file writes and safe loads.

Everything the suite writes that a later step depends on (checkpoints, result files, configs) goes through
these helpers, so a run killed mid-write leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it and put it back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would, so teammates can read it
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # so "no space left on device" can say where
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


class _ErrorRecordingFile:
    """A write-only file wrapper that keeps the OSError its writes raised: torch.save reports a full disk only
    as ``RuntimeError: ... unexpected pos``, and we want to say "no space left on device"."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    def write(f):
        rec = _ErrorRecordingFile(f)
        try:
            torch.save(obj, rec)
        except RuntimeError:
            if rec.error is not None:
                raise rec.error from None
            raise

    return atomic_write(path, write)


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """Load a checkpoint without executing code from it (``weights_only=True``).

    Raises FileNotFoundError / ValueError naming the file, so a bad path fails before expensive work.
    ``mmap=True`` checks a large file cheaply (the pickle is vetted, the tensors are not read).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"cannot load checkpoint {path} with weights_only=True: {e}") from e


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_dir_lock(out_dir: str | os.PathLike, what: str = "run", enabled: bool = True):
    """Hold an exclusive lock on ``out_dir`` inside the ``with`` block (``enabled=False``: no lock, e.g. on the
    ranks other than 0, which write nothing there).

    Two runs writing one folder would overwrite each other's checkpoints and config; the second is refused,
    naming the folder. The kernel drops the lock when the holder dies (kill -9 included), so no stale lock.
    """
    from gmae.errors import InputError

    if not enabled:
        yield
        return
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_NAME, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise InputError(f"{out_dir}: another {what} is writing this folder (locked); wait for it or use "
                                 "another --out") from None
            raise
        yield


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name one existing file (links and relative spellings included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Refuse, before any work, an output path (file or folder, existing or not) that cannot be written.

    Tries a real write (a temp file in the nearest existing folder) rather than os.access, which says yes to
    root even on a read-only mount; creates nothing that stays.
    """
    from gmae.errors import InputError

    p = Path(path)
    if p.is_file():
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_APPEND))
        except OSError as e:
            raise InputError(f"{what} {p}: not writable ({e.strerror})") from None
        return
    folder = p
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{what} {p}: {folder} is not a folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise InputError(f"{what} {p}: cannot write in {folder} ({e.strerror})") from None
