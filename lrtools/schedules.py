"""Reading, setting and previewing learning rates.

``current_lrs(optimizer)`` reads what the next ``optimizer.step()`` applies. (It is not
called ``get_lr``: a scheduler's ``get_lr()`` computes the *next* LR and warns when
called outside ``step()``; ``scheduler.get_last_lr()`` is the one that reads.)
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

__all__ = ["current_lrs", "set_lr", "scale_lr", "preview_schedule"]


def current_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """The LR of every param group, as the next ``optimizer.step()`` applies it.

    This is what :func:`lrtools.fit` and :func:`lrtools.watch` record at every step.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> current_lrs(opt)
        [0.1]
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"Expected a torch.optim optimizer, got {type(optimizer).__name__}. For a scheduler "
                        "use scheduler.get_last_lr(), or pass scheduler.optimizer.")
    return [float(group["lr"]) for group in optimizer.param_groups]


def _check_lr(value: object, what: str = "lr") -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = (" (a string: write the number, e.g. 0.015, not '0.015')" if isinstance(value, str) else
                " (a tensor: pass float(t))" if isinstance(value, torch.Tensor) else "")
        raise TypeError(f"{what} must be a number such as 0.1 or 1e-3, got {type(value).__name__}{hint}.")
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
        >>> set_lr(opt, 0.01); current_lrs(opt)
        [0.01]
    """
    current_lrs(optimizer)  # refuses a model or a scheduler in place of the optimizer
    groups = optimizer.param_groups
    if isinstance(lr, (list, tuple)):
        values = [_check_lr(v) for v in lr]
        if len(values) != len(groups):
            raise ValueError(f"Got {len(values)} learning rates for {len(groups)} param groups. "
                             f"Pass one number for all groups or a list of exactly {len(groups)}.")
    else:
        values = [_check_lr(lr)] * len(groups)
    for group, value in zip(groups, values):
        group["lr"] = value


def scale_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Multiply every param group's LR by ``factor`` (e.g. 0.1 to decay 10x).

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> scale_lr(opt, 0.5); current_lrs(opt)
        [0.05]
    """
    factor = _check_lr(factor, "factor")
    set_lr(optimizer, [lr * factor for lr in current_lrs(optimizer)])


def _reachable_optimizers(fn: Callable) -> list[torch.optim.Optimizer]:
    """Optimizers a factory can reach by name: its globals and closure (to undo what it does)."""
    code, found = getattr(fn, "__code__", None), []
    if code is None:
        return found
    codes, names = [code], set()
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    values = [fn.__globals__.get(n) for n in names] + [c.cell_contents for c in fn.__closure__ or ()]
    return [v for v in values if isinstance(v, torch.optim.Optimizer)]


def _snapshot(optimizer: torch.optim.Optimizer):
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return optimizer, groups, dict(optimizer.__dict__)


def _restore(snapshot) -> None:
    optimizer, groups, attrs = snapshot
    for group, saved in zip(optimizer.param_groups, groups):
        params = group["params"]
        group.clear()
        group.update(saved, params=params)
    for key in set(optimizer.__dict__) - set(attrs):
        del optimizer.__dict__[key]
    optimizer.__dict__.update({k: v for k, v in attrs.items() if k != "param_groups"})


def _make_preview_scheduler(make_scheduler: Callable, optimizer: torch.optim.Optimizer):
    """Call the factory on the throwaway optimizer; refuse (and undo) one that uses another.

    Whatever the factory did to the optimizers it can reach is undone on every refusal: one
    built on another optimizer, one returning None or a non-scheduler, and one that raised.
    """
    snapshots = [_snapshot(o) for o in _reachable_optimizers(make_scheduler) if o is not optimizer]
    accepted = False
    try:
        scheduler = make_scheduler(optimizer)
        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise TypeError(f"make_scheduler must return a torch.optim.lr_scheduler object, got "
                            f"{type(scheduler).__name__}. Fix: `lambda optimizer: StepLR(optimizer, ...)` "
                            "(a lambda returns its expression; a def needs `return`).")
        if scheduler.optimizer is not optimizer:
            name = type(scheduler).__name__
            found = any(snapshot[0] is scheduler.optimizer for snapshot in snapshots)
            raise ValueError(f"make_scheduler ignored its argument and built {name} on another optimizer "
                             f"(your training one?), which would decay its LR. Fix: use the argument, "
                             f"`lambda opt: {name}(opt, ...)`, not `lambda opt: {name}(optimizer, ...)`."
                             + ("" if found else " That optimizer could not be found to undo the change: "
                                "rebuild it and its scheduler."))
        accepted = True
    finally:
        if not accepted:
            for snapshot in snapshots:
                _restore(snapshot)
    return scheduler


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
    scheduler = _make_preview_scheduler(make_scheduler, optimizer)
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
