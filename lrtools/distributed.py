"""Helpers for training under ``torch.distributed`` (DDP): metrics averaged across ranks."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["mean_across_ranks"]


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
