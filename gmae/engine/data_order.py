"""Deterministic, resumable data order: every sample's position, augmentation and mask depend only on
(seed, epoch, index), never on the number of processes, workers or where a run was resumed.

That is what makes a killed-and-resumed run end at the same weights as an uninterrupted one, and a
2-process run see the same global batches as a single process.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler

_MIX = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)


def sample_seed(seed: int, epoch: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed for one sample in one epoch (splitmix-style mixing, so nearby inputs decorrelate)."""
    z = (seed * _MIX[0] + epoch * _MIX[1] + index * _MIX[2] + stream) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * _MIX[1]) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * _MIX[2]) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(sample_seed(seed, epoch, 0, stream=7))
    return torch.randperm(n, generator=g)


class SeededSamples(Dataset):
    """Wraps a (PIL image, label) dataset: applies ``transform`` under a per-sample seed and draws the
    per-sample masking noise [num_patches] from its own stream. Items: (image, label, noise, index)."""

    def __init__(self, dataset: Dataset, transform, num_patches: int, seed: int):
        self.dataset, self.transform = dataset, transform
        self.num_patches, self.seed = num_patches, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        img, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed(self.seed, self.epoch, index, stream=1))
            if self.transform is not None:
                img = self.transform(img)
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
