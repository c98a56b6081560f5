"""A training loop that records the learning rate it actually applies."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm.auto import tqdm

from .utils import bf16_supported

__all__ = ["History", "DivergenceError", "fit", "evaluate"]

STEP_EVERY = ("epoch", "step")
PLATEAU_METRICS = {"val_loss": "min", "val_acc": "max"}
PRECISIONS = ("auto", "fp32", "bf16")


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite; ``.history`` holds the run up to that point."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """What :func:`fit` saw, per optimizer step and per epoch.

    ``step_lr[step][group]`` is the LR each param group had when ``optimizer.step()``
    ran, read from ``optimizer.param_groups`` (not from the scheduler).
    ``epoch_lr[epoch][group]`` is the LR at the epoch's first step.

    Example:
        >>> h = History(steps_per_epoch=2, step_lr=[[0.1], [0.1]], step_loss=[2.3, 2.1])
        >>> h.lrs
        [0.1, 0.1]
    """

    steps_per_epoch: int = 0
    step_lr: list[list[float]] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    epoch_lr: list[list[float]] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def lrs(self) -> list[float]:
        """The first param group's LR at every optimizer step."""
        return [lrs[0] for lrs in self.step_lr]

    @property
    def epochs(self) -> int:
        """How many epochs finished."""
        return len(self.train_loss)

    def rows(self) -> list[dict[str, float]]:
        """One dict per finished epoch (``epoch`` counts from 1)."""
        keys = ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")
        return [{"epoch": e + 1, "lr": self.epoch_lr[e][0], **{k: getattr(self, k)[e] for k in keys}}
                for e in range(self.epochs)]

    def table(self) -> str:
        """The per-epoch numbers as a fixed-width text table."""
        lines = [f"{'epoch':>5} {'lr':>10} {'train_loss':>10} {'train_acc':>9} "
                 f"{'val_loss':>8} {'val_acc':>7} {'seconds':>7}"]
        for r in self.rows():
            lines.append(f"{r['epoch']:>5} {r['lr']:>10.3g} {r['train_loss']:>10.4f} "
                         f"{r['train_acc']:>9.4f} {r['val_loss']:>8.4f} {r['val_acc']:>7.4f} "
                         f"{r['seconds']:>7.2f}")
        return "\n".join(lines + (["(interrupted)"] if self.interrupted else []))

    def log_epoch(self, train_loss: float, train_acc: float, val_loss: float, val_acc: float, *,
                  seconds: float) -> None:
        """Append one finished epoch's numbers."""
        for key, value in zip(("train_loss", "train_acc", "val_loss", "val_acc", "seconds"),
                              (train_loss, train_acc, val_loss, val_acc, seconds)):
            getattr(self, key).append(value)

    def to_dict(self) -> dict:
        """Plain lists and numbers, for JSON or a checkpoint."""
        return asdict(self)


def _tqdm_disabled() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in {"", "0", "false"}


def _check_fit_args(optimizer, scheduler, step_every, epochs, val_loader, plateau_metric) -> None:
    if step_every not in STEP_EVERY:
        raise ValueError(f"step_every must be 'epoch' or 'step', got {step_every!r}. Use 'step' for "
                         "schedules counted in optimizer updates (OneCycleLR, CyclicLR, warmup) and "
                         "'epoch' for schedules counted in epochs (StepLR, ReduceLROnPlateau).")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
    if scheduler is None:
        return
    if getattr(scheduler, "optimizer", None) is not optimizer:
        raise ValueError("The scheduler is attached to a different optimizer than the one passed to "
                         "fit(), so it would change an LR nobody uses. Fix: build it from this "
                         "optimizer, e.g. StepLR(optimizer, ...), after creating the optimizer.")
    if isinstance(scheduler, ReduceLROnPlateau):
        _check_plateau(scheduler, step_every, val_loader, plateau_metric)


def _check_plateau(scheduler, step_every, val_loader, plateau_metric) -> None:
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


def _resolve_device(device, model: nn.Module, train_loader) -> torch.device:
    if device is not None:
        return torch.device(device)
    if getattr(train_loader, "device", None) is not None:
        return torch.device(train_loader.device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _resolve_fast_path(precision: str, channels_last: bool | None,
                       device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, channels_last) for ``fit``; "auto" is the fast path on CUDA only."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}. 'auto' uses "
                         "bf16 autocast on a CUDA GPU that supports it and exact fp32 elsewhere.")
    if not (channels_last is None or isinstance(channels_last, bool)):
        raise ValueError(f"channels_last must be True, False or None (auto: True on CUDA), got "
                         f"{channels_last!r}.")
    fast = device.type == "cuda"
    use_bf16 = precision == "bf16" or (precision == "auto" and fast and bf16_supported(device))
    return (torch.bfloat16 if use_bf16 else None), (fast if channels_last is None else channels_last)


def _prepare_model(model: nn.Module, device: torch.device, precision: str,
                   channels_last: bool | None) -> torch.dtype | None:
    """Move ``model`` to ``device`` in the layout ``fit`` trains with; return its autocast dtype."""
    amp_dtype, to_channels_last = _resolve_fast_path(precision, channels_last, device)
    if to_channels_last:
        model.to(device, memory_format=torch.channels_last)
    else:
        model.to(device)
    return amp_dtype


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _check_finite(history: History, first_step: int, epoch: int) -> None:
    for step in range(first_step, len(history.step_loss)):
        loss = history.step_loss[step]
        if not math.isfinite(loss):
            del history.epoch_lr[history.epochs:]
            raise DivergenceError(
                f"Training diverged: the loss became {loss} at step {step} (epoch {epoch}) with "
                f"lr={history.step_lr[step]}. The learning rate is too large for this model: lower "
                "it (e.g. 10x), add warmup, or clip gradients. The run so far is in `.history`.",
                history)


def _train_epoch(model, optimizer, train_loader, scheduler, history, bar, device, loss_fn, amp_dtype):
    """One pass over ``train_loader``; a single host sync at the end."""
    model.train()
    losses, sizes = [], []
    correct = torch.zeros((), dtype=torch.long, device=device)
    try:
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            lrs = [float(g["lr"]) for g in optimizer.param_groups]  # what step() will apply
            with _autocast(device, amp_dtype):
                out = model(x)
                loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.step_lr.append(lrs)
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach())
            sizes.append(len(y))
            correct += (out.detach().argmax(1) == y).sum()
            bar.update()
    finally:
        step_losses = torch.stack(losses).float().tolist() if losses else []
        history.step_loss.extend(step_losses)
    seen = sum(sizes)
    mean_loss = sum(loss * n for loss, n in zip(step_losses, sizes)) / max(seen, 1)
    return mean_loss, correct.item() / max(seen, 1)


def evaluate(model: nn.Module, loader: Iterable, *, device: torch.device | str | None = None,
             loss_fn: Callable = F.cross_entropy) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``loader``, without gradients.

    The model's train/eval mode is restored afterwards.

    Example:
        >>> val_loss, val_acc = evaluate(model, val_loader)  # doctest: +SKIP
    """
    device = _resolve_device(device, model, loader)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            total += loss_fn(out, y, reduction="sum").float()
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
    model.train(was_training)
    return total.item() / max(seen, 1), correct.item() / max(seen, 1)


def _end_epoch(history, scheduler, step_every, plateau_metric, bar) -> None:
    if scheduler is not None and step_every == "epoch":
        if isinstance(scheduler, ReduceLROnPlateau):
            scheduler.step(getattr(history, plateau_metric)[-1])
        else:
            scheduler.step()
    bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val_acc=f"{history.val_acc[-1]:.4f}",
                    lr=f"{history.epoch_lr[-1][0]:.3g}")


def _start_history(history: History | None, start_epoch: int, epochs: int, steps_per_epoch: int) -> History:
    """Check ``start_epoch`` against ``epochs`` and the history to continue; return that history."""
    if not isinstance(start_epoch, int) or not 0 <= start_epoch < epochs:
        raise ValueError(f"start_epoch must be an integer in [0, epochs) = [0, {epochs}), got "
                         f"{start_epoch!r}. It counts finished epochs and epochs is the total: to "
                         "resume after k of 10 epochs, pass start_epoch=k, epochs=10.")
    if history is None:
        return History(steps_per_epoch=steps_per_epoch)
    if history.epochs != start_epoch:
        raise ValueError(f"The history has {history.epochs} finished epochs but start_epoch={start_epoch}. "
                         f"Fix: pass start_epoch=history.epochs ({history.epochs}), with the history "
                         "saved in the same checkpoint as the model.")
    if history.epochs and history.steps_per_epoch != steps_per_epoch:
        raise ValueError(f"The history has {history.steps_per_epoch} steps per epoch but train_loader "
                         f"has {steps_per_epoch}. Fix: resume with the same training loader "
                         "(same data, same batch size).")
    done = history.epochs * steps_per_epoch  # drop the unfinished epoch of an interrupted run
    del history.step_lr[done:], history.step_loss[done:]
    history.steps_per_epoch, history.interrupted = steps_per_epoch, False
    return history


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable, *,
        epochs: int, scheduler=None, step_every: str = "epoch", val_loader: Iterable | None = None,
        device: torch.device | str | None = None, plateau_metric: str = "val_loss",
        loss_fn: Callable = F.cross_entropy, start_epoch: int = 0, history: History | None = None,
        on_epoch_end: Callable[[int, History], None] | None = None, precision: str = "auto",
        channels_last: bool | None = None) -> History:
    """Train ``model`` and record the learning rate applied at every step.

    Each step runs forward, backward, ``optimizer.step()``, then ``scheduler.step()``
    when ``step_every="step"``; with ``"epoch"`` the scheduler steps once after
    validation (a ``ReduceLROnPlateau`` gets ``plateau_metric``). Ctrl-C returns the
    history so far with ``interrupted=True``; a NaN/inf loss raises
    :class:`DivergenceError`. A loader with ``set_epoch`` (``TensorLoader``) is set to
    each epoch's number first, so epoch ``k`` always sees the same shuffling order:
    a resumed run, or a second run on the same loader, matches an uninterrupted one.

    Args:
        model: The network (moved to ``device``).
        optimizer: Built on ``model.parameters()``.
        train_loader: Yields ``(x, y)``; ``len()`` is ``steps_per_epoch``.
        epochs: Total number of epochs, counting those before ``start_epoch``.
        scheduler: Any ``torch.optim.lr_scheduler`` object bound to ``optimizer``.
        step_every: ``"epoch"`` or ``"step"``.
        val_loader: Validation data, evaluated after every epoch.
        device: Defaults to the loader's device.
        plateau_metric: ``"val_loss"`` (mode ``min``) or ``"val_acc"`` (mode ``max``).
        loss_fn: ``loss_fn(logits, y, reduction=...)``, cross-entropy by default.
        start_epoch: Epochs already done; runs epochs ``start_epoch .. epochs-1`` (for resuming
            with :func:`lrtools.load_checkpoint`).
        history: A :class:`History` to continue (it must hold ``start_epoch`` epochs); appended
            to in place and returned. Steps of an unfinished (interrupted) epoch are dropped.
        on_epoch_end: Called as ``on_epoch_end(epochs_done, history)`` after each epoch, once
            the scheduler has stepped; ``epochs_done`` (= ``history.epochs``) is the
            ``start_epoch`` a resumed run would use, e.g. to save a checkpoint.
        precision: ``"fp32"``, ``"bf16"`` (forward pass and loss under bf16 autocast; the
            weights, gradients and optimizer stay fp32) or ``"auto"``: bf16 on a CUDA GPU that
            supports it, fp32 elsewhere. On a CPU with native bf16 (see
            :func:`lrtools.bf16_supported`) ``"bf16"`` is faster too, but not exact, so it is opt-in.
        channels_last: Store the model's 4-D (convolution) weights channels-last, the faster
            layout for convolutions; the values do not change. None: on CUDA only.

    Example:
        >>> history = fit(model, optimizer, train_loader, epochs=3,
        ...               scheduler=StepLR(optimizer, 1, 0.5), val_loader=val_loader)  # doctest: +SKIP
    """
    _check_fit_args(optimizer, scheduler, step_every, epochs, val_loader, plateau_metric)
    history = _start_history(history, start_epoch, epochs, len(train_loader))
    device = _resolve_device(device, model, train_loader)
    amp_dtype = _prepare_model(model, device, precision, channels_last)
    per_step = scheduler if step_every == "step" else None
    bar = tqdm(total=(epochs - start_epoch) * len(train_loader), unit="step", disable=_tqdm_disabled(),
               leave=False)
    try:
        for epoch in range(start_epoch, epochs):
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)
            start, first_step = time.perf_counter(), len(history.step_loss)
            history.epoch_lr.append([float(g["lr"]) for g in optimizer.param_groups])
            loss, acc = _train_epoch(model, optimizer, train_loader, per_step, history, bar, device, loss_fn,
                                     amp_dtype)
            _check_finite(history, first_step, epoch)
            val = (evaluate(model, val_loader, device=device, loss_fn=loss_fn)
                   if val_loader is not None else (math.nan, math.nan))
            history.log_epoch(loss, acc, *val, seconds=time.perf_counter() - start)
            _end_epoch(history, scheduler, step_every, plateau_metric, bar)
            if on_epoch_end is not None:
                on_epoch_end(history.epochs, history)
    except KeyboardInterrupt:
        history.interrupted = True
        del history.epoch_lr[history.epochs:]
    finally:
        bar.close()
    return history
