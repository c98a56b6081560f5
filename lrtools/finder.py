"""The learning-rate range test ("LR finder") and three ways to read its curve.

The test trains for a few steps while the LR grows from tiny to huge, records the
(smoothed) training loss at every LR, and stops once the loss explodes. The model and
optimizer are put back exactly as they were afterwards.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn

from .checks import check_not_empty
from .schedules import set_lr
from .training import resolve_device, train_step
from .utils import rng_state, set_rng_state

__all__ = ["RangeTestResult", "lr_range_test", "suggest_steepest", "suggest_min_div10", "suggest_valley"]

MODES = ("exp", "linear")


def _check_curve(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    if lrs.shape != losses.shape or lrs.ndim != 1:
        raise ValueError(f"lrs and losses must be flat sequences of the same length, got {len(lrs)} "
                         f"and {len(losses)}.")
    if len(lrs) < 2:
        raise ValueError(f"A suggestion needs at least 2 points on the curve, got {len(lrs)}.")
    if not np.isfinite(losses).all():
        raise ValueError("losses contains NaN or inf: cut the curve before the loss diverged.")
    return lrs, losses


def suggest_steepest(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The LR where the loss falls fastest per decade of LR.

    The slope is ``d loss / d ln(lr)`` by ``numpy.gradient`` (central differences,
    one-sided at both ends); the LR at its most negative value is returned.

    Example:
        >>> suggest_steepest([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.9, 1.0, 0.95])
        0.01
    """
    lrs, losses = _check_curve(lrs, losses)
    if (lrs <= 0).any():
        raise ValueError("lrs must all be positive: the slope is taken against log(lr).")
    return float(lrs[int(np.argmin(np.gradient(losses, np.log(lrs))))])


def suggest_min_div10(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """One tenth of the LR at which the loss is lowest (the first one on ties).

    At the minimum the LR is already about to make training unstable; a tenth of it
    is a conservative, still fast choice.

    Example:
        >>> suggest_min_div10([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.5, 1.0, 4.0])
        0.01
    """
    lrs, losses = _check_curve(lrs, losses)
    return float(lrs[int(np.argmin(losses))] / 10)


def suggest_valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The LR two thirds of the way down the longest valley of the curve (fastai style).

    The valley is the longest strictly decreasing subsequence of ``losses`` (not
    necessarily contiguous, so noise does not break it; the first one found on ties),
    from index ``s`` to ``e``; the answer is ``lrs[s + (2 * (e - s)) // 3]``. fastai's
    ``valley`` uses the same valley but lands about halfway down it.

    Example:
        >>> suggest_valley([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.8, 1.2, 1.0, 3.0])
        0.01
    """
    _, losses_ = _check_curve(lrs, losses)
    n = len(losses_)
    length, start = [1] * n, list(range(n))
    for i in range(n):
        for j in range(i):
            if losses_[j] > losses_[i] and length[j] + 1 > length[i]:
                length[i], start[i] = length[j] + 1, start[j]
    end = max(range(n), key=length.__getitem__)
    return float(lrs[start[end] + (2 * (end - start[end])) // 3])


SUGGESTERS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "steepest": suggest_steepest, "min_div10": suggest_min_div10, "valley": suggest_valley,
}


@dataclass
class RangeTestResult:
    """What :func:`lr_range_test` measured.

    Attributes:
        lrs: The LR applied at each step.
        losses: The smoothed (bias-corrected EMA) training loss at each step.
        raw_losses: The loss of each mini-batch.
        diverged: True if the test stopped early because the loss exploded.
        mode: ``"exp"`` or ``"linear"``, how the LR grew.

    Example:
        >>> r = RangeTestResult(lrs=[1e-3, 1e-2, 1e-1], losses=[2.0, 1.0, 3.0], raw_losses=[2.0, 1.0, 3.0])
        >>> r.suggestions["min_div10"]
        0.001
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    diverged: bool = False
    mode: str = "exp"

    @property
    def suggestions(self) -> dict[str, float | None]:
        """``{"steepest", "min_div10", "valley"}`` → LR (None for a curve of < 2 points).

        As in fastai, the first 10 % of the points (the moving average is still
        warming up) and the last 5 (the explosion) are left out, unless that leaves
        fewer than 2 points.
        """
        # a linear sweep may start at lr = 0, which has no place on a log axis
        points = [(lr, loss) for lr, loss in zip(self.lrs, self.losses) if lr > 0]
        n = len(points)
        if n < 2:
            return dict.fromkeys(SUGGESTERS)
        start, end = (n // 10, n - 5) if n - 5 - n // 10 >= 2 else (0, n)
        lrs, losses = [p[0] for p in points[start:end]], [p[1] for p in points[start:end]]
        return {name: suggest(lrs, losses) for name, suggest in SUGGESTERS.items()}

    def plot(self, *, ax: Axes | None = None, mark: bool = True) -> Axes:
        """Loss against LR (log axis for an ``"exp"`` sweep), raw losses faint.

        The y range frames the smoothed curve up to the step before the stop, so the
        explosion that ended the test runs off the top instead of flattening the curve.

        Args:
            ax: Axes to draw on; a new figure if None.
            mark: Draw a vertical line (with its value in the legend) at each suggestion.

        Example:
            >>> ax = RangeTestResult([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0], [2.0, 1.1, 3.2]).plot()
        """
        ax = ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]
        ax.plot(self.lrs, self.raw_losses, color="C0", alpha=0.25, lw=1, label="loss per step")
        ax.plot(self.lrs, self.losses, color="C0", label="smoothed loss")
        if mark:
            styles = zip(self.suggestions.items(), ("C1", "C2", "C3"), ("--", "-.", ":"))
            for (name, lr), color, ls in styles:
                if lr is not None:
                    ax.axvline(lr, color=color, ls=ls, label=f"{name}: {lr:.2g}")
        ax.set(xlabel="learning rate", ylabel="training loss",
               xscale="log" if self.mode == "exp" else "linear")
        shown = self.losses[:-1] if self.diverged and len(self.losses) > 2 else self.losses
        if shown and max(shown) > min(shown):  # frame the smoothed curve, not the explosion
            pad = 0.1 * (max(shown) - min(shown))
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
        ax.legend()
        ax.grid(alpha=0.3)
        return ax


def _sweep(start_lr: float, end_lr: float, num_steps: int, mode: str) -> list[float]:
    if mode == "exp":
        return [start_lr * (end_lr / start_lr) ** (i / (num_steps - 1)) for i in range(num_steps)]
    return [start_lr + (end_lr - start_lr) * i / (num_steps - 1) for i in range(num_steps)]


def _check_range_args(model, start_lr, end_lr, num_steps, mode, smooth, diverge_factor) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}.")
    if start_lr >= end_lr:
        raise ValueError(f"start_lr must be smaller than end_lr, got start_lr={start_lr} >= end_lr={end_lr}.")
    if mode == "exp" and start_lr <= 0:
        raise ValueError(f"mode='exp' needs start_lr > 0 (it multiplies the LR by a constant factor), "
                         f"got start_lr={start_lr}. Fix: use e.g. start_lr=1e-7, or mode='linear'.")
    if start_lr < 0:
        raise ValueError(f"start_lr must be >= 0, got {start_lr}.")
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}.")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth must be in [0, 1) (0 = no smoothing), got {smooth}.")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1 (math.inf never stops early), got {diverge_factor}.")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("The model has no trainable parameters (none has requires_grad=True), so its "
                         "loss cannot change with the LR. Fix: unfreeze some layers first, e.g. "
                         "`for p in model.parameters(): p.requires_grad_(True)`.")


def _batches(loader: Iterable) -> Iterator:
    """The loader's batches, pass after pass (``set_epoch(pass)`` first when it has one)."""
    check_not_empty(loader, "train_loader")
    for epoch in itertools.count():
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader


def _sweep_losses(model, optimizer, loader, lrs, smooth, diverge_factor, loss_fn, device) -> RangeTestResult:
    result = RangeTestResult(lrs=[], losses=[], raw_losses=[])
    avg, best = 0.0, math.inf
    model.train()
    for step, (lr, (x, y)) in enumerate(zip(lrs, _batches(loader))):
        set_lr(optimizer, lr)
        loss, _ = train_step(model, optimizer, x.to(device), y.to(device), loss_fn=loss_fn)
        raw = loss.item()
        if not math.isfinite(raw):
            result.diverged = True
            break
        avg = smooth * avg + (1 - smooth) * raw
        smoothed = avg / (1 - smooth ** (step + 1))
        result.lrs.append(lr)
        result.losses.append(smoothed)
        result.raw_losses.append(raw)
        best = min(best, smoothed)
        if smoothed > diverge_factor * best:
            result.diverged = True
            break
    return result


def lr_range_test(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable, *,
                  start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100, mode: str = "exp",
                  smooth: float = 0.98, diverge_factor: float = 4.0,
                  loss_fn: Callable = F.cross_entropy) -> RangeTestResult:
    """Sweep the LR from ``start_lr`` to ``end_lr`` over ``num_steps`` training steps.

    Step ``i`` trains one mini-batch at ``start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))``
    (``mode="exp"``) or at evenly spaced LRs (``"linear"``), every param group at the
    same LR, going over ``train_loader`` as many times as needed (calling its
    ``set_epoch(0)``, ``set_epoch(1)``, ... first when it has one, so the batches do
    not depend on what ran before). The loss is smoothed
    by an exponential moving average with bias correction,
    ``avg = smooth * avg + (1 - smooth) * loss``, ``smoothed = avg / (1 - smooth ** (i + 1))``,
    and the test stops after the first step whose smoothed loss exceeds
    ``diverge_factor`` times the lowest so far (a NaN/inf loss stops it unrecorded).
    Use the training split: the curve describes optimisation, not generalisation, so
    there is no need to spend validation data (never the test set) on it.
    Afterwards the model's weights and buffers, its train/eval mode and the
    optimizer's state and LRs, and the global RNG states (torch, Python, NumPy) are
    restored bit for bit, even after an error, so what runs next does not depend on
    whether the test ran.

    Args:
        model: The network to test (moved to ``device``), as it will start training.
        optimizer: Built on ``model.parameters()``, as it will be used for training.
        train_loader: Training batches ``(x, y)``.
        start_lr: First LR; > 0 for ``mode="exp"``.
        end_lr: Last LR, reached if the loss does not explode first.
        num_steps: Steps in the sweep (>= 2).
        mode: ``"exp"`` (evenly spaced in log LR) or ``"linear"``.
        smooth: EMA factor in [0, 1); 0 means no smoothing.
        diverge_factor: Stop once the smoothed loss exceeds this multiple of its minimum.
        loss_fn: ``loss_fn(logits, y)`` returning the batch mean, cross-entropy by default.

    Returns:
        A :class:`RangeTestResult`: ``.lrs``, ``.losses``, ``.suggestions``, ``.plot()``.

    Example:
        >>> result = lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        ...                        train_loader)  # doctest: +SKIP
        >>> ax = result.plot(); result.suggestions["valley"]  # doctest: +SKIP
    """
    _check_range_args(model, start_lr, end_lr, num_steps, mode, smooth, diverge_factor)
    device = resolve_device(model, train_loader)
    model.to(device)
    model_state, optimizer_state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    was_training, rng = model.training, rng_state()
    try:
        result = _sweep_losses(model, optimizer, train_loader, _sweep(start_lr, end_lr, num_steps, mode),
                               smooth, diverge_factor, loss_fn, device)
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        model.train(was_training)
        set_rng_state(rng)
    result.mode = mode
    return result
