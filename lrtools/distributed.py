"""Helpers for training under ``torch.distributed`` (DDP): data shards, LR scaling, metrics.

* :func:`shard_loader` gives each rank its disjoint, equal-size share of a training loader,
  reshuffled every epoch like ``DistributedSampler``;
* :func:`scale_lr_for_batch` applies the linear or square-root scaling rule and turns a
  warmup given in epochs into updates;
* :func:`mean_across_ranks` averages a metric over all ranks (what :func:`lrtools.fit` does
  for ``ReduceLROnPlateau``).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.distributed as dist

from .data import TensorLoader

__all__ = ["mean_across_ranks", "shard_loader", "ShardedLoader", "scale_lr_for_batch", "ScaledLR",
           "SCALING_RULES"]

SCALING_RULES = ("linear", "sqrt")


def _check_rank(rank: int, world_size: int) -> None:
    for name, value in (("world_size", world_size), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r}.")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1 (the number of processes), got {world_size}.")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) = [0, {world_size}), got {rank}. Fix: ranks "
                         f"count from 0: with {world_size} processes the last is rank {world_size - 1}.")


class ShardedLoader(TensorLoader):
    """One rank's shard of a :class:`TensorLoader`, as ``DistributedSampler`` would give it.

    Each pass permutes all ``N`` examples with the epoch's seed (the same order as the
    unsharded loader), drops the last ``N % world_size`` so shards are equal, and keeps
    positions ``rank, rank + world_size, ...``. Shards are disjoint; the global order is a
    pure function of ``(seed, epoch)``; call :meth:`set_epoch` every epoch (``fit`` does).

    Example:
        >>> full = TensorLoader(torch.zeros(10, 1), torch.arange(10), batch_size=2)
        >>> [y.tolist() for _, y in ShardedLoader(full, rank=1, world_size=2)]
        [[1, 3], [5, 7], [9]]
    """

    def __init__(self, loader: TensorLoader, rank: int, world_size: int) -> None:
        _check_rank(rank, world_size)
        if len(loader.labels) < world_size:
            raise ValueError(f"{len(loader.labels)} examples cannot be split into {world_size} non-empty "
                             "shards. Fix: use more data or fewer processes.")
        super().__init__(loader.images, loader.labels, loader.batch_size, shuffle=loader.shuffle,
                         seed=loader.seed, indices=loader.indices)
        self.rank, self.world_size, self.epoch = rank, world_size, loader.epoch

    @property
    def num_samples(self) -> int:
        """How many examples this rank sees per pass: ``N // world_size``."""
        return len(self.labels) // self.world_size

    def order(self) -> torch.Tensor:
        """Positions (into the full tensors) of this rank's examples in the current epoch's order."""
        n = len(self.labels)
        return super().order()[:n - n % self.world_size][self.rank::self.world_size]

    def with_seed(self, seed: int) -> ShardedLoader:
        """The same shard of the same data, shuffled with another ``seed``."""
        base = TensorLoader(self.images, self.labels, self.batch_size, shuffle=self.shuffle, seed=seed,
                            indices=self.indices)
        return ShardedLoader(base, self.rank, self.world_size)


def shard_loader(loader: TensorLoader, rank: int | None = None,
                 world_size: int | None = None) -> ShardedLoader:
    """``loader``'s shard for ``rank`` of ``world_size`` (default: this process's, from the process group).

    Example:
        >>> full = TensorLoader(torch.zeros(8, 1), torch.arange(8), batch_size=2, shuffle=True)
        >>> shards = [shard_loader(full, rank, 2) for rank in range(2)]
        >>> [len(s) for s in shards], sorted(sum((y.tolist() for s in shards for _, y in s), []))
        ([2, 2], [0, 1, 2, 3, 4, 5, 6, 7])
    """
    if rank is None or world_size is None:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError("shard_loader needs rank= and world_size= when no process group is initialised.")
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    return ShardedLoader(loader, rank, world_size)


class ScaledLR(NamedTuple):
    """What :func:`scale_lr_for_batch` returns: the LR for the large batch and the warmup in updates."""

    lr: float
    warmup_steps: int


def scale_lr_for_batch(base_lr: float, base_batch: int, batch: int, *, rule: str = "linear",
                       warmup_epochs: float = 0.0, steps_per_epoch: int = 1) -> ScaledLR:
    """The LR for global batch ``batch`` given ``base_lr`` tuned at ``base_batch``, and the warmup.

    With ``k = batch / base_batch``: ``"linear"`` gives ``base_lr * k`` (Goyal et al. 2017),
    ``"sqrt"`` gives ``base_lr * sqrt(k)``. The warmup is counted in optimizer updates:
    ``round(warmup_epochs * steps_per_epoch)``, with ``steps_per_epoch`` the per-rank loader length.

    Example:
        >>> scale_lr_for_batch(0.05, 128, 512, warmup_epochs=0.5, steps_per_epoch=40)
        ScaledLR(lr=0.2, warmup_steps=20)
        >>> scale_lr_for_batch(0.05, 128, 512, rule="sqrt").lr
        0.1
    """
    if rule not in SCALING_RULES:
        raise ValueError(f"rule must be one of {SCALING_RULES}, got {rule!r}.")
    for name, value in (("base_batch", base_batch), ("batch", batch), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    if not (isinstance(base_lr, numbers.Real) and math.isfinite(base_lr) and base_lr > 0):
        raise ValueError(f"base_lr must be a finite number > 0, got {base_lr!r}.")
    if not (isinstance(warmup_epochs, numbers.Real) and math.isfinite(warmup_epochs) and warmup_epochs >= 0):
        raise ValueError(f"warmup_epochs must be a finite number >= 0, got {warmup_epochs!r}.")
    k = batch / base_batch
    lr = base_lr * (k if rule == "linear" else math.sqrt(k))
    return ScaledLR(float(lr), int(round(warmup_epochs * steps_per_epoch)))


def mean_across_ranks(value: float) -> float:
    """The mean of ``value`` over all ranks of the process group; ``value`` itself without one.

    Every rank must call it (it is a collective), e.g. on its validation loss before
    ``ReduceLROnPlateau.step``, so that every rank cuts its LR at the same epoch.

    Example:
        >>> mean_across_ranks(0.25)  # no process group: unchanged
        0.25
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / dist.get_world_size()
