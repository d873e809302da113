"""Stop signals for the training loops: finish the current step, save the checkpoint, exit with 128 + signal.

Ctrl-C (SIGINT), SIGTERM (what SLURM sends at preemption and cancellation, and what our sbatch scripts send on
the time-limit warning) and SIGUSR1 only set a flag here; the loop checks it after each optimizer step, saves
its checkpoint atomically and raises :class:`Stopped`, a ``SystemExit`` with code 130 / 143 / 138, so the
process ends without a traceback and a rerun of the same command resumes exactly. A second Ctrl-C exits at
once (the previous checkpoint stays valid: checkpoints are written atomically).

DataLoader workers ignore these signals (:func:`ignore_in_worker`, their ``worker_init_fn``): SLURM's
preemption, ``scancel`` and a terminal's Ctrl-C signal every process of the job, and a worker that died would
make the main process fail before it saves. The main process ends its workers itself when it exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def ignore_in_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the training loaders: the stop signals are the main process's to handle."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


class Stopped(SystemExit):
    """Raised by the loop after it saved its checkpoint on a stop signal; the exit code is 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class StopSignals:
    """Install with :meth:`install` before the loop and :meth:`restore` in its ``finally``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @classmethod
    def install(cls) -> "StopSignals":
        self = cls()
        # signal handlers can only be set from the main thread (a loop run in a thread keeps the defaults)
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            os._exit(130)  # the user pressed Ctrl-C twice: no checkpoint, no cleanup
        if self.signum is None:
            self.signum = signum

    def requested(self, device=None) -> bool:
        """Whether any process got a stop signal. Under DDP every rank must stop after the same step (a rank
        that left would hang the others in their next all-reduce), so the flag is summed over ranks."""
        import torch
        import torch.distributed as dist

        from gmae.engine.distributed import all_reduce_sum

        if not (dist.is_available() and dist.is_initialized()):
            return self.signum is not None
        flag = torch.tensor([0 if self.signum is None else self.signum], device=device, dtype=torch.float32)
        total = all_reduce_sum(flag)
        if total.item() > 0 and self.signum is None:
            self.signum = signal.SIGTERM  # another rank got it (torchrun forwards SIGTERM to every worker)
        return total.item() > 0

    def exit(self, what: str, step: int, checkpoint, announce: bool = True) -> None:
        """Call after saving: one line on stderr (from rank 0 only), then leave through :class:`Stopped`."""
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        if announce:
            print(f"{what}: {name} received; checkpoint saved at step {step} to {checkpoint}; exiting "
                  f"{128 + signum} (rerun the same command to resume)", file=sys.stderr, flush=True)
        raise Stopped(signum)
