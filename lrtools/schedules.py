"""Reading, setting and previewing learning rates."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

__all__ = ["get_lr", "set_lr", "scale_lr", "preview_schedule"]


def get_lr(optimizer: torch.optim.Optimizer) -> list[float]:
    """The LR of every param group, as the next ``optimizer.step()`` will use it.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> get_lr(opt)
        [0.1]
    """
    return [float(group["lr"]) for group in optimizer.param_groups]


def _check_lr(value: float, what: str = "lr") -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value}. "
                         "Pass a value such as 0.1 or 1e-3.")
    return value


def set_lr(optimizer: torch.optim.Optimizer, lr: float | Sequence[float]) -> None:
    """Set the LR of every param group: one value for all, or one per group.

    Writes ``param_group["lr"]``, which is what ``optimizer.step()`` reads. An
    attached scheduler that works multiplicatively (StepLR, ExponentialLR, ...)
    continues from the new value; OneCycleLR and CyclicLR overwrite it.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> set_lr(opt, 0.01); get_lr(opt)
        [0.01]
    """
    groups = optimizer.param_groups
    if isinstance(lr, numbers.Real):
        values = [_check_lr(lr)] * len(groups)
    else:
        values = [_check_lr(v) for v in lr]
        if len(values) != len(groups):
            raise ValueError(f"Got {len(values)} learning rates for {len(groups)} param groups. "
                             f"Pass one number for all groups or a list of exactly {len(groups)}.")
    for group, value in zip(groups, values):
        group["lr"] = value


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every param group's LR by ``factor`` (e.g. 0.1 to decay 10x).

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> scale_lr(opt, 0.5); get_lr(opt)
        [0.05]
    """
    factor = _check_lr(factor, "factor")
    set_lr(optimizer, [lr * factor for lr in get_lr(optimizer)])


def preview_schedule(make_scheduler: Callable, steps: int, *, lr: float = 0.1,
                     metrics: Sequence[float] | None = None) -> list[float]:
    """The LR a scheduler gives over ``steps`` steps, on a throwaway optimizer.

    ``make_scheduler(optimizer)`` builds a fresh scheduler on an SGD optimizer
    (momentum 0.9) over one dummy parameter, so the scheduler you train with is
    never stepped. Entry ``i`` is the LR in effect for step (or epoch) ``i``; the
    scheduler is stepped after each. ``ReduceLROnPlateau`` needs ``metrics``: the
    value measured after each step, ``len(metrics) >= steps``.

    Example:
        >>> from torch.optim.lr_scheduler import StepLR
        >>> preview_schedule(lambda opt: StepLR(opt, step_size=2, gamma=0.1), 5, lr=1.0)
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002]
    """
    if isinstance(make_scheduler, (LRScheduler, ReduceLROnPlateau)):
        name = type(make_scheduler).__name__
        raise TypeError(f"preview_schedule needs a function that builds the scheduler, not a "
                        f"{name} object (previewing it would consume the one you train with). "
                        f"Fix: pass `lambda optimizer: {name}(optimizer, ...)`.")
    if not callable(make_scheduler):
        raise TypeError(f"make_scheduler must be callable, got {type(make_scheduler).__name__}.")
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=_check_lr(lr), momentum=0.9)
    scheduler = make_scheduler(optimizer)
    plateau = isinstance(scheduler, ReduceLROnPlateau)
    if plateau and (metrics is None or len(metrics) < steps):
        have = "none" if metrics is None else len(metrics)
        raise ValueError(f"ReduceLROnPlateau needs one metric per step: got {have} for {steps} steps. "
                         "Pass metrics=[...] with the validation values in order.")
    lrs = []
    for i in range(steps):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()  # no gradients, so nothing moves; keeps the call order canonical
        scheduler.step(metrics[i]) if plateau else scheduler.step()
    return lrs
