"""The one resumable step loop: pretraining (:class:`gmae.engine.train.Trainer`), the linear probe and
fine-tuning (``eval.classification.ClassifierLoop``) are subclasses that say what one optimizer step does.

What the loop owns, the same for every protocol:

- the data order: a :class:`~gmae.engine.data_order.SeededSamples` set read through
  :class:`~gmae.engine.data_order.GlobalBatchSampler` (global batches depend only on seed and epoch, so a run
  resumed mid-epoch, or run on another number of processes, sees the same images);
- the schedule: per-iteration linear warmup + half-cycle cosine (timm's scheduler, :func:`cosine_schedule`);
- save / resume: ``out_dir/checkpoint.pth`` written atomically every ``run.save_every_steps`` and at the end,
  refused on a config (or encoder) that differs in a section that shapes the weights; every RNG restored, so a
  killed-and-resumed run ends at the same weights as an uninterrupted one;
- logging: ``out_dir/metrics.jsonl`` (a start/resume line, then step, epoch, loss, lr, img/s and the protocol's
  extras every ``run.log_every_steps``), TensorBoard when ``run.tensorboard``, a tqdm bar on rank 0;
- stopping: SIGTERM/SIGINT/SIGUSR1 save and exit (SLURM requeue), ``run.stop_after_steps`` for drills, a
  non-finite loss stops the run naming the last good checkpoint (pretraining skips such steps instead).
"""

from __future__ import annotations

import abc
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from gmae.engine.data_order import GlobalBatchSampler, SeededSamples, seed_everything
from gmae.errors import InputError, RunStopped

CHECKPOINT_NAME = "checkpoint.pth"


def last_checkpoint_note(out_dir: str | Path) -> str:
    """Where a stopped run can resume from: only a checkpoint that exists is named."""
    path = Path(out_dir) / CHECKPOINT_NAME
    if path.is_file():
        return f"The last good checkpoint is {path}."
    return f"No checkpoint was written yet in {out_dir} (run.save_every_steps)."


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float):
    """Per-iteration linear warmup from 0, then half-cycle cosine to ``min_lr`` (MAE's ``lr_sched``), as timm's
    CosineLRScheduler, which also applies each group's ``lr_scale`` (layer decay). The loop calls
    ``step_update(num_updates=step)`` before every optimizer step."""
    from timm.scheduler import CosineLRScheduler

    return CosineLRScheduler(optimizer, t_initial=max(1, total_steps - warmup_steps), lr_min=min_lr,
                             warmup_t=warmup_steps, warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


class StepLoop(abc.ABC):
    """Epochs of optimizer steps over ``dataset`` with exact save/resume (see the module docstring).

    A subclass sets ``protocol`` (the checkpoint's and the log's name), ``resume_sections`` (config sections
    that must match to resume), builds ``self.optimizer`` and ``self.scheduler`` after ``super().__init__``, and
    implements:

    - ``train_step(batches) -> {"loss": float, ...}``: one optimizer step drawing ``self.accum`` micro-batches
      from the iterator ``batches``; ``loss`` is the mean over ranks (:meth:`rank_mean`), other keys are logged;
    - ``modules_state()`` / ``load_modules_state(ckpt)``: what it trains (weights, scaler, EMA, ...);
    - optionally ``end_of_epoch(epoch)``, ``final_metrics() -> dict`` (added to the summary) and ``set_lr()``.
    """

    protocol = "run"
    resume_sections: tuple[str, ...] = ("optim",)
    stop_on_nonfinite = True  # False: the subclass skips non-finite steps itself (pretraining)

    def __init__(self, cfg: Any, dataset: SeededSamples, dist_info=None, source_sha256: str | None = None):
        """Seeds every RNG with ``run.seed + rank`` (a subclass builds its modules after this), counts the
        steps and checks the batch against the data set and the number of processes."""
        from gmae.engine.config import accumulation_steps
        from gmae.engine.distributed import init_distributed

        self.cfg = cfg
        self.dist = dist_info or init_distributed(cfg.run.device)
        self.device = self.dist.device
        seed_everything(cfg.run.seed + self.dist.rank)
        self.out_dir = Path(cfg.run.out_dir)
        self.source_sha256 = source_sha256
        try:
            self.accum = accumulation_steps(cfg.optim, self.dist.world_size)
        except ValueError as e:
            raise InputError(str(e)) from None
        self.dataset = dataset
        self.steps_per_epoch = len(dataset) // cfg.optim.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{cfg.data.root}: {len(dataset)} training images, fewer than one batch "
                             f"(optim.batch_size={cfg.optim.batch_size})")
        self.total_steps = cfg.optim.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.lr = cfg.optim.effective_lr()
        self.step = 0
        self.optimizer = self.scheduler = None
        self.writer = None

    # -- what a protocol implements -----------------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, batches) -> dict[str, Any]:
        """One optimizer step from ``self.accum`` micro-batches of ``batches``: {"loss": rank mean, extras}."""

    @abc.abstractmethod
    def modules_state(self) -> dict[str, Any]:
        """What the protocol trains, for the checkpoint (weights, scaler, EMA, ...)."""

    @abc.abstractmethod
    def load_modules_state(self, ckpt: dict[str, Any]) -> None:
        """Restore what :meth:`modules_state` saved."""

    def end_of_epoch(self, epoch: int) -> None:
        """Called after the last step of every epoch but the final one."""

    def final_metrics(self) -> dict[str, Any]:
        """Called once the schedule is done and saved; its entries join the summary."""
        return {}

    def set_lr(self) -> None:
        """Set this step's learning rate (called before every optimizer step)."""
        self.scheduler.step_update(num_updates=self.step)

    # -- helpers for train_step ---------------------------------------------------------------------------------
    def rank_mean(self, value: torch.Tensor | float) -> float:
        """The mean of a scalar over all ranks (every rank gets the same float)."""
        from gmae.engine.distributed import all_reduce_sum

        t = torch.as_tensor(value, dtype=torch.float32).reshape(1).to(self.device).clone()
        return float(all_reduce_sum(t).item()) / self.dist.world_size

    def current_lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)

    # -- state --------------------------------------------------------------------------------------------------
    def state_dict(self, finished: bool = False) -> dict[str, Any]:
        from gmae.config import config_to_dict
        from gmae.engine.checkpoint import rng_state

        return {**self.modules_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step,
                "epoch": self.step // self.steps_per_epoch, "config": config_to_dict(self.cfg),
                "protocol": self.protocol, "source_sha256": self.source_sha256, "rng": rng_state(),
                "world_size": self.dist.world_size, "finished": finished}

    def save(self, finished: bool = False) -> None:
        from gmae.engine.checkpoint import save_checkpoint
        from gmae.engine.distributed import barrier

        if self.dist.is_main:
            save_checkpoint(self.state_dict(finished), self.out_dir / CHECKPOINT_NAME)
        barrier()

    def maybe_resume(self) -> bool:
        """Load ``out_dir/checkpoint.pth`` if there is one; refuse (naming the file) one of another protocol, or
        one whose ``resume_sections`` or encoder differ from this run's."""
        from gmae.config import config_to_dict
        from gmae.engine.checkpoint import check_resumable, load_checkpoint

        path = self.out_dir / CHECKPOINT_NAME
        if not path.exists():
            return False
        ckpt = load_checkpoint(path)
        kind = ckpt.get("protocol", "pretrain")  # pretraining checkpoints before the shared loop had no name
        if kind != self.protocol:
            raise InputError(f"{path}: cannot resume, it is a {kind!r} run, not {self.protocol!r}; use another --out")
        try:
            check_resumable(ckpt, path, config_to_dict(self.cfg), self.resume_sections, self.source_sha256)
        except ValueError as e:
            raise InputError(str(e)) from None
        self.load_state_dict(ckpt)
        return True

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        from gmae.engine.checkpoint import set_rng_state

        self.load_modules_state(ckpt)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step = int(ckpt["step"])
        set_rng_state(ckpt["rng"])

    # -- loop ---------------------------------------------------------------------------------------------------
    def loader(self, epoch: int, start_step: int) -> DataLoader:
        """This rank's micro-batches of ``epoch`` from optimizer step ``start_step`` on. The loader's own
        generator (not the global RNG) seeds its workers, so making one draws nothing a resumed run would miss."""
        from gmae.engine.preempt import ignore_in_worker

        cfg = self.cfg
        self.dataset.epoch = epoch
        sampler = GlobalBatchSampler(len(self.dataset), cfg.optim.batch_per_device, self.accum,
                                     self.dist.world_size, self.dist.rank, cfg.run.seed, epoch, start_step)
        workers = cfg.data.num_workers
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=workers,
                          pin_memory=cfg.data.pin_memory and self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(cfg.run.seed),
                          worker_init_fn=ignore_in_worker if workers > 0 else None,
                          prefetch_factor=4 if workers > 0 else None)

    def log(self, record: dict[str, Any]) -> None:
        """One JSON line in ``out_dir/metrics.jsonl`` (and TensorBoard scalars), from rank 0."""
        import json

        if not self.dist.is_main:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self.writer.add_scalar(f"{self.protocol}/{k}", v, record["step"])

    def progress_label(self) -> str:
        return self.protocol

    def train(self, resume: bool = True) -> dict[str, Any]:
        """Train (or resume) to the end of the schedule holding the run-folder lock (released however training
        ends). Returns the summary (step, loss, img/s, checkpoint, ... and :meth:`final_metrics`), or
        ``{"stopped_at": step}`` when ``run.stop_after_steps`` cut the run short."""
        from gmae.io import run_dir_lock

        with run_dir_lock(self.out_dir, f"{self.protocol} run", enabled=self.dist.is_main):
            return self._train(resume)

    def _open_writer(self) -> None:
        if not (self.dist.is_main and getattr(self.cfg.run, "tensorboard", False)):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        except ImportError:  # pragma: no cover - tensorboard is a dependency
            warnings.warn("tensorboard not installed; metrics go to metrics.jsonl only")

    def _train(self, resume: bool) -> dict[str, Any]:
        from gmae.config import save_config
        from gmae.engine.distributed import barrier
        from gmae.engine.preempt import StopSignals

        cfg = self.cfg
        barrier()
        # a refused resume must leave the run's config.yaml as it was: check first, then write
        resumed = self.maybe_resume() if resume else False
        if self.dist.is_main:
            save_config(cfg, self.out_dir / "config.yaml")
        end_step = self.total_steps if cfg.optim.max_steps is None else min(self.total_steps, cfg.optim.max_steps)
        self._open_writer()
        self.log({"step": self.step, "event": "resume" if resumed else "start", "effective_lr": self.lr,
                  "batch_size": cfg.optim.batch_size, "accum_steps": self.accum, "world_size": self.dist.world_size,
                  "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps})
        bar = None
        if self.dist.is_main and cfg.run.progress:
            from tqdm import tqdm

            print(f"{self.protocol}: effective lr {self.lr:.4g} (batch {cfg.optim.batch_size} = "
                  f"{cfg.optim.batch_per_device} x {self.dist.world_size} processes x {self.accum} accumulation "
                  f"steps), {self.total_steps} steps" + (f", resuming at step {self.step}" if resumed else ""))
            bar = tqdm(total=end_step, initial=self.step, desc=self.progress_label(), unit="step",
                       dynamic_ncols=True)
        start_step, start_time = self.step, time.perf_counter()
        window = {"loss": 0.0, "n": 0, "images": 0, "time": 0.0}
        last_loss = float("nan")
        stop = StopSignals.install()
        try:
            while self.step < end_step:
                epoch = self.step // self.steps_per_epoch
                loader = self.loader(epoch, self.step % self.steps_per_epoch)
                batches = iter(loader)
                while self.step < end_step and self.step // self.steps_per_epoch == epoch:
                    t0 = time.perf_counter()
                    self.set_lr()
                    out = self.train_step(batches)
                    window["time"] += time.perf_counter() - t0
                    loss = out["loss"]
                    if not math.isfinite(loss) and self.stop_on_nonfinite:
                        raise RunStopped(f"{self.protocol}: non-finite loss at step {self.step}. "
                                         f"{last_checkpoint_note(self.out_dir)}")
                    self.step += 1
                    if math.isfinite(loss):
                        window["loss"] += loss
                        window["n"] += 1
                        last_loss = loss
                    window["images"] += cfg.optim.batch_size
                    lr = self.current_lr()
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}")
                    if self.step % cfg.run.log_every_steps == 0 or self.step == end_step:
                        self.log({"step": self.step, "epoch": epoch, "loss": window["loss"] / max(1, window["n"]),
                                  "lr": lr, "img_per_s": window["images"] / max(window["time"], 1e-9),
                                  **{k: v for k, v in out.items() if k != "loss"}})
                        window = {"loss": 0.0, "n": 0, "images": 0, "time": 0.0}
                    if self.step % cfg.run.save_every_steps == 0 and self.step < end_step:
                        self.save()
                    if self.step < end_step and stop.requested(self.device):
                        if self.step % cfg.run.save_every_steps:  # else saved just above
                            self.save()
                        stop.exit(self.protocol, self.step, self.out_dir / CHECKPOINT_NAME, self.dist.is_main)
                    if cfg.run.stop_after_steps is not None and self.step >= cfg.run.stop_after_steps:
                        return {"stopped_at": self.step}
                del batches, loader
                if self.step % self.steps_per_epoch == 0 and self.step < end_step:
                    self.end_of_epoch(epoch)
            self.save(finished=True)
        finally:
            stop.restore()
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        steps_run = self.step - start_step
        elapsed = time.perf_counter() - start_time
        summary = {"step": self.step, "resumed": resumed, "loss": last_loss, "steps_run": steps_run,
                   "img_per_s": steps_run * cfg.optim.batch_size / elapsed if steps_run else float("nan"),
                   "effective_lr": self.lr, "accum_steps": self.accum, "world_size": self.dist.world_size,
                   "checkpoint": str(self.out_dir / CHECKPOINT_NAME)}
        return {**summary, **self.final_metrics()}
