"""Checks that turn the mistakes learners make into errors that name the fix.

Each function raises ``ValueError`` or ``TypeError`` (or warns, where the code cannot be
sure) *before* any harm is done: before a run trains at a wrong LR, trains nothing, or
is lost at its end.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau

from .history import History
from .watch import PER_STEP_SCHEDULERS, LRWarning

__all__ = ["check_epochs", "check_scheduler", "check_plateau", "check_optimizer_holds", "check_batch",
           "is_classification_loss", "check_counter", "check_not_empty"]

STEP_EVERY = ("epoch", "step")
PLATEAU_METRICS = {"val_loss": "min", "val_acc": "max"}


def check_epochs(epochs: Any) -> int:
    """``epochs`` as an int: any integer type (``numpy.int64`` too) >= 1, never a bool or float.

    Example:
        >>> check_epochs(3)
        3
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}. It is the run's total number of "
                         "epochs, e.g. epochs=10.")
    return int(epochs)


def check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, step_every: str, *,
                    total_updates: int, done_updates: int) -> None:
    """The scheduler belongs to ``optimizer`` and steps in the unit its own totals count."""
    if step_every not in STEP_EVERY:
        raise ValueError(f"step_every must be 'epoch' or 'step', got {step_every!r}. Use 'step' for "
                         "schedules counted in optimizer updates (OneCycleLR, CyclicLR, warmup) and "
                         "'epoch' for schedules counted in epochs (StepLR, ReduceLROnPlateau).")
    if scheduler is None:
        return
    if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
        raise TypeError(f"scheduler must be a torch.optim.lr_scheduler object, got "
                        f"{type(scheduler).__name__}.")
    if getattr(scheduler, "optimizer", None) is not optimizer:
        raise ValueError("The scheduler is attached to a different optimizer than the one passed to "
                         "fit(), so it would change an LR nobody uses. Fix: build it from this "
                         "optimizer, e.g. StepLR(optimizer, ...), after creating the optimizer.")
    name = type(scheduler).__name__
    if isinstance(scheduler, PER_STEP_SCHEDULERS) and step_every != "step":
        raise ValueError(f"{name} counts optimizer updates (its cycle is measured in steps), but "
                         "step_every='epoch' would step it once per epoch, so the LR would hardly move. "
                         "Fix: pass step_every='step'.")
    if isinstance(scheduler, OneCycleLR):
        _check_cycle(scheduler, total_updates, done_updates)


def _check_cycle(scheduler: OneCycleLR, total_updates: int, done_updates: int) -> None:
    total = scheduler.total_steps
    if total < total_updates:
        raise ValueError(f"OneCycleLR(total_steps={total}) is shorter than this run's {total_updates} "
                         f"optimizer updates; torch would raise after {total} of them and the run would be "
                         f"lost. Fix: total_steps=epochs * len(train_loader) = {total_updates}.")
    if total > total_updates:
        warnings.warn(f"OneCycleLR(total_steps={total}) is longer than this run's {total_updates} updates: "
                      f"the run ends before the cycle, so the LR never anneals to its final value. Fix: "
                      f"total_steps={total_updates}, unless you will continue the run later.", LRWarning,
                      stacklevel=4)


def check_plateau(scheduler: Any, step_every: str, val_loader: Any, plateau_metric: str) -> None:
    """``ReduceLROnPlateau`` steps once per epoch on a validation metric of the right direction."""
    if not isinstance(scheduler, ReduceLROnPlateau):
        return
    if plateau_metric not in PLATEAU_METRICS:
        raise ValueError(f"plateau_metric must be one of {sorted(PLATEAU_METRICS)}, got {plateau_metric!r}.")
    if val_loader is None:
        raise ValueError("ReduceLROnPlateau steps on a validation metric, but val_loader is None. "
                         "Fix: pass val_loader= (a split of the training data, never the test set).")
    if step_every != "epoch":
        raise ValueError("ReduceLROnPlateau must step once per epoch, after validation: "
                         "use step_every='epoch'.")
    want = PLATEAU_METRICS[plateau_metric]
    if scheduler.mode != want:
        raise ValueError(f"ReduceLROnPlateau(mode={scheduler.mode!r}) cannot watch "
                         f"plateau_metric={plateau_metric!r}, which should go "
                         f"{'down' if want == 'min' else 'up'}. Fix: use mode={want!r}, or "
                         f"plateau_metric={'val_acc' if want == 'min' else 'val_loss'!r}.")


def check_optimizer_holds(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """At least one of the model's parameters is in the optimizer (else nothing would train)."""
    mine = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(id(p) in mine for p in held):
        raise ValueError("The optimizer holds none of this model's parameters, so training would change "
                         "nothing and the loss would stay flat. This happens when the model cell is re-run "
                         "after the optimizer cell. Fix: build the optimizer again from this model, e.g. "
                         "optimizer = torch.optim.SGD(model.parameters(), lr=...).")


def is_classification_loss(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` takes class indices (cross-entropy or NLL), so labels can be checked.

    Example:
        >>> import torch.nn.functional as F
        >>> is_classification_loss(F.cross_entropy), is_classification_loss(F.mse_loss)
        (True, False)
    """
    import torch.nn.functional as F

    return loss_fn in (F.cross_entropy, F.nll_loss) or isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))


def check_batch(x: Any, y: Any, logits: torch.Tensor | None = None, *, classes: bool = True) -> None:
    """One ``(images, labels)`` batch has the types and shapes the model and loss expect.

    With ``classes=False`` (a regression loss such as ``F.mse_loss``) the labels are not checked.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"The loader must yield (images, labels) tensors, got ({type(x).__name__}, "
                        f"{type(y).__name__}).")
    if not x.is_floating_point():
        raise TypeError(f"The images are {x.dtype}; the model needs floating point. Fix: convert and "
                        "normalise them, e.g. x.float().div(255), or use lrtools.mnist_loaders().")
    if x.ndim == 3:
        raise ValueError(f"The images have shape {tuple(x.shape)}: the channel dimension is missing (a conv "
                         "net expects (batch, channels, height, width)). Fix: x.unsqueeze(1).")
    if not classes:
        return
    if y.dtype != torch.int64 or y.ndim != 1:
        raise TypeError(f"The labels are {y.dtype} of shape {tuple(y.shape)}; cross-entropy needs class "
                        "indices of dtype int64, one per image. Fix: y.long() (and y.view(-1)).")
    if logits is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= logits.shape[-1]):
        raise ValueError(f"The labels run from {int(y.min())} to {int(y.max())} but the model has "
                         f"{logits.shape[-1]} outputs (classes 0..{logits.shape[-1] - 1}). Fix: give the "
                         "last layer one output per class, or relabel the data.")


def check_counter(scheduler: Any, history: History, step_every: str) -> None:
    """The scheduler's own counter agrees with the history: it was stepped by fit and only by fit."""
    counter = getattr(scheduler, "last_epoch", None)
    if counter is None or isinstance(counter, bool):
        return
    expected = history.steps if step_every == "step" else history.epochs
    if counter == expected:
        return
    name, unit = type(scheduler).__name__, "updates" if step_every == "step" else "epochs"
    if counter < expected:
        why = (f"{name} has been stepped {counter} times but the history has {expected} {unit}: a fresh "
               "scheduler on resume restarts the schedule. Fix: load its state too, "
               "lrtools.load_checkpoint(..., scheduler=scheduler), or scheduler.load_state_dict(...).")
    else:
        why = (f"{name} has been stepped {counter} times but the history has {expected} {unit}: something "
               "else stepped it (an extra scheduler.step() in on_epoch_end, or a preview on the training "
               "scheduler), so the LR runs ahead. Fix: let fit step it, and preview with "
               "lrtools.preview_schedule on a throwaway optimizer.")
    raise ValueError(why)


def check_not_empty(loader: Iterable, what: str) -> int:
    """``len(loader)`` when it has batches; an empty loader is refused."""
    try:
        size = len(loader)  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(f"{what} must have a length (the number of batches), like a DataLoader; got a "
                        f"{type(loader).__name__}. Fix: pass a DataLoader or lrtools.TensorLoader.") from exc
    if size == 0:
        raise ValueError(f"{what} is empty (0 batches), so there is nothing to "
                         f"{'train on' if what == 'train_loader' else 'measure'}. Fix: check the data set "
                         "size, the batch size, and drop_last.")
    return size
