"""The batch of 3-D Gaussians every renderer takes, and the operations on it (subsets, depth order, batches).

Every image of a batch has its own N Gaussians; fields are tensors [B, N, ...]. Operations return new
:class:`Gaussians` (the fields are indexed or replaced, never modified in place).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from gmae.render.camera import CameraLike, depth_order

FIELDS = ("means", "scales", "quats", "colors", "opacities")


@dataclass
class Gaussians:
    """A batch of 3-D Gaussians; every image has its own N Gaussians.

    means [B, N, 3] (x, y, z), scales [B, N, 3] (standard deviations along the rotated axes),
    quats [B, N, 4] as (w, x, y, z) (normalised inside; all-zero reads as the identity),
    colors [B, N, 3], opacities [B, N].
    """

    means: Tensor
    scales: Tensor
    quats: Tensor
    colors: Tensor
    opacities: Tensor

    def __post_init__(self):
        m = self.means
        if m.dim() != 3 or m.shape[-1] != 3:
            raise ValueError(f"Gaussians.means must be [B, N, 3], got {tuple(m.shape)}")
        b, n = m.shape[:2]
        want = {"scales": (b, n, 3), "quats": (b, n, 4), "colors": (b, n, 3), "opacities": (b, n)}
        for name, shape in want.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} must be {list(shape)} to match means, got {list(got)}")

    @property
    def batch_size(self) -> int:
        return self.means.shape[0]

    @property
    def num(self) -> int:
        return self.means.shape[1]

    def _map(self, fn) -> "Gaussians":
        return Gaussians(*(fn(getattr(self, f)) for f in FIELDS))

    def to(self, *args, **kwargs) -> "Gaussians":
        """``Tensor.to`` applied to every field."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def replace(self, colors: Optional[Tensor] = None, opacities: Optional[Tensor] = None) -> "Gaussians":
        """The same Gaussians with new colours [B, N, 3] and/or opacities [B, N] (None keeps the field)."""
        new = {k: v for k, v in (("colors", colors), ("opacities", opacities)) if v is not None}
        return dataclasses.replace(self, **new)

    # ------------------------------------------------------------------ along the images (B)

    def select_images(self, index) -> "Gaussians":
        """The Gaussians of the images ``index`` (an int, slice or index list) as a batch."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._map(lambda t: t[index])

    def repeat_images(self, times: int) -> "Gaussians":
        """Each image's Gaussians repeated ``times`` times along the batch (image-major: 0, 0, .., 1, 1, ..)."""
        return self._map(lambda t: t.repeat_interleave(times, 0))

    # ------------------------------------------------------------------ along the Gaussians (N)

    def take(self, idx: Union[Tensor, slice]) -> "Gaussians":
        """The Gaussians at ``idx`` along N: a slice, a LongTensor [K] (same for every image) or [B, K].

        Compositing order follows depth, and ties keep the order of ``idx``; so ``take`` of a
        depth-ordered index list (see :func:`~gmae.render.camera.depth_order`) renders exactly the chosen layers.
        """
        if isinstance(idx, slice):
            return self._map(lambda t: t[:, idx])
        idx = torch.as_tensor(idx, device=self.means.device, dtype=torch.long)
        if idx.dim() == 1:
            idx = idx.unsqueeze(0).expand(self.batch_size, -1)
        if idx.dim() != 2 or idx.shape[0] != self.batch_size:
            raise ValueError(f"take: idx must be [K] or [B={self.batch_size}, K], got {tuple(idx.shape)}")

        def gather(t: Tensor) -> Tensor:
            if t.dim() == 2:
                return t.gather(1, idx)
            return t.gather(1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

        return self._map(gather)

    def sort_by_depth(self, camera: CameraLike = "paper") -> "Gaussians":
        """The same Gaussians reordered nearest first along N (stable: ties keep their index order)."""
        return self.take(depth_order(self, camera))

    def depth_slice(self, start: int = 0, end: Optional[int] = None, camera: CameraLike = "paper") -> "Gaussians":
        """The Gaussians ranked ``start`` (inclusive) to ``end`` (exclusive) by camera depth, nearest first.

        ``g.depth_slice(0, k)`` is each image's k nearest Gaussians (the "first k layers").
        """
        return self.take(depth_order(self, camera)[:, start:end])

    def keep_first(self, counts: Tensor) -> "Gaussians":
        """Per-image prefixes along N: image b keeps Gaussians < counts[b] ([B] ints); of depth-sorted Gaussians
        (:meth:`sort_by_depth`) that is each image's counts[b] nearest.

        The others get opacity 0, which every backend culls before compositing (alpha < 1/255 and no effect on
        transmittance), so this renders exactly like ``take(slice(0, counts[b]))`` image by image, in one batched
        call.
        """
        counts = torch.as_tensor(counts, device=self.means.device).reshape(-1, 1)
        keep = torch.arange(self.num, device=counts.device).unsqueeze(0) < counts
        return self.replace(opacities=torch.where(keep, self.opacities, torch.zeros_like(self.opacities)))
