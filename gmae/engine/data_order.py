"""Deterministic, resumable data order: every sample's position, augmentation and mask depend only on
(seed, epoch, index), never on the number of processes, workers or where a run was resumed.

That is what makes a killed-and-resumed run end at the same weights as an uninterrupted one, and a
2-process run see the same global batches as a single process.
"""

from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def sample_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed for one sample in one epoch (splitmix-style mixing, so nearby inputs decorrelate)."""
    z = (seed * _MIX[0] + epoch * _MIX[1] + index * _MIX[2] + stream) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * _MIX[1]) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * _MIX[2]) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def seed_everything(seed: int) -> None:
    """Seed torch, ``random`` and numpy (timm's Mixup draws from numpy; left unseeded, two identical runs differ)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(sample_seed(seed, epoch, 0, stream=7))
    return torch.randperm(n, generator=g)


class SeededSamples(Dataset):
    """Wraps a (PIL image, label) dataset for a training loop: ``transform`` runs under a per-sample seed set for
    torch, ``random`` and numpy (timm's RandAugment / RandomErasing draw from all three; the global states are
    restored after), so an augmentation depends only on (seed, epoch, index).

    Items: (image, label), or with ``num_patches`` (a masking model) (image, label, noise [num_patches], index),
    the masking noise drawn from its own stream.
    """

    def __init__(self, dataset: Dataset, transform, seed: int, num_patches: int | None = None):
        self.dataset, self.transform = dataset, transform
        self.seed, self.num_patches = seed, num_patches
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        img, label = self.dataset[index]
        if self.transform is not None:
            s = sample_seed(self.seed, self.epoch, index, stream=1)
            py_state, np_state = random.getstate(), np.random.get_state()
            with torch.random.fork_rng(devices=[]):
                seed_everything(s)
                try:
                    img = self.transform(img)
                finally:
                    random.setstate(py_state)
                    np.random.set_state(np_state)
        if self.num_patches is None:
            return img, label
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index, stream=2))
        noise = torch.rand(self.num_patches, generator=g)
        return img, label, noise, index


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches for one epoch, starting at optimizer step ``start_step``.

    Global step s of epoch e uses perm_e[s*G : (s+1)*G] (G = global batch); within it, micro-batch m of rank r
    is the contiguous chunk number m * world + r of size ``micro_batch``. The last incomplete global batch is
    dropped, as in MAE (drop_last=True).
    """

    def __init__(self, n: int, micro_batch: int, accum_steps: int, world_size: int, rank: int, seed: int,
                 epoch: int, start_step: int = 0):
        self.n, self.micro_batch, self.accum_steps = n, micro_batch, accum_steps
        self.world_size, self.rank, self.seed, self.epoch = world_size, rank, seed, epoch
        self.global_batch = micro_batch * accum_steps * world_size
        self.steps_per_epoch = n // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"data set of {n} images is smaller than one global batch of {self.global_batch}")
        self.start_step = start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum_steps

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch).tolist()
        for step in range(self.start_step, self.steps_per_epoch):
            base = step * self.global_batch
            for m in range(self.accum_steps):
                chunk = m * self.world_size + self.rank
                lo = base + chunk * self.micro_batch
                yield perm[lo:lo + self.micro_batch]
