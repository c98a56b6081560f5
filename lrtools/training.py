"""A training loop that records the learning rate it actually applies.

One training step (:func:`train_step`) serves :func:`fit` and :func:`lrtools.lr_range_test`;
the LR of each step is read by :func:`lrtools.watch`, the monitor learners can attach to
their own loops. By default every device computes in exact fp32 (:func:`exact_fp32` turns off the
TF32 that PyTorch otherwise uses for fp32 convolutions on Ampere and newer GPUs);
``precision="bf16"`` is the named opt-in for bf16 autocast.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .checks import (
    check_batch,
    check_counter,
    check_epochs,
    check_not_empty,
    check_optimizer_holds,
    check_plateau,
    check_scheduler,
    is_classification_loss,
)
from .distributed import mean_across_ranks
from .history import History
from .utils import progress_bar
from .watch import LRLog, watch

__all__ = ["DivergenceError", "fit", "evaluate", "train_step", "resolve_device", "autocast", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16")


class DivergenceError(FloatingPointError):
    """The loss became NaN or infinite; ``.history`` holds the run up to that point."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def resolve_device(model: nn.Module, loader: Iterable | None = None) -> torch.device:
    """Where training runs: the loader's ``device`` when it has one, else the model's.

    Example:
        >>> resolve_device(nn.Linear(2, 1))
        device(type='cpu')
    """
    device = getattr(loader, "device", None)
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


#: The TF32 switches of PyTorch's backends (``torch.backends.<a>.<b>.fp32_precision``).
TF32_SWITCHES = (("cudnn", "conv"), ("cudnn", "rnn"), ("cuda", "matmul"))


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """IEEE fp32 for CUDA convolutions, RNNs and matmuls while the block runs; then the old settings.

    PyTorch's default lets cuDNN compute fp32 convolutions in TF32 (a 10-bit mantissa) on
    Ampere and newer GPUs; inside this block a GPU computes what the CPU computes. CPU ops
    are unaffected.

    Example:
        >>> with exact_fp32():
        ...     torch.backends.cudnn.conv.fp32_precision
        'ieee'
    """
    switches = [getattr(getattr(torch.backends, a), b) for a, b in TF32_SWITCHES]
    saved = [switch.fp32_precision for switch in switches]
    try:
        for switch in switches:
            switch.fp32_precision = "ieee"
        yield
    finally:
        for switch, value in zip(switches, saved):
            switch.fp32_precision = value


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision``: none for ``"fp32"``, bf16 autocast for ``"bf16"``.

    Example:
        >>> with autocast(torch.device("cpu"), "fp32"):
        ...     pass
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' (exact, the default) or 'bf16' (bf16 autocast, an "
                         f"explicit opt-in for speed), got {precision!r}.")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
               loss_fn: Callable = F.cross_entropy,
               precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """One update: forward and ``loss_fn(logits, y)`` (the batch mean), backward, ``optimizer.step()``.

    Returns the detached loss and logits (no host sync).

    Example:
        >>> model = nn.Linear(4, 3); opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> loss, logits = train_step(model, opt, torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
        >>> logits.shape
        torch.Size([8, 3])
    """
    with exact_fp32() if precision == "fp32" else contextlib.nullcontext():  # forward and backward
        with autocast(x.device, precision):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach(), logits.detach()


def evaluate(model: nn.Module, loader: Iterable, *,
             loss_fn: Callable = F.cross_entropy) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over ``loader`` (in eval mode, without gradients).

    ``loss_fn(logits, y)`` returns a batch mean; batches are weighted by their size. The
    model's train/eval mode is restored afterwards.

    Example:
        >>> from lrtools import TensorLoader
        >>> loader = TensorLoader(torch.zeros(3, 4), torch.tensor([0, 1, 1]), batch_size=2)
        >>> model = nn.Linear(4, 2); _ = nn.init.zeros_(model.bias)  # every logit 0: class 0 predicted
        >>> evaluate(model, loader)  # doctest: +ELLIPSIS
        (0.693..., 0.333...)
    """
    check_not_empty(loader, "the evaluation loader")
    device = resolve_device(model, loader)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    try:
        with torch.inference_mode(), exact_fp32():
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                out = model(x)
                total += loss_fn(out, y).float() * len(y)
                correct += (out.argmax(1) == y).sum()
                seen += len(y)
    finally:
        model.train(was_training)
    return total.item() / seen, correct.item() / seen


def rng_snapshot(steps: int, device: torch.device) -> tuple:
    """``(steps, torch CPU state, CUDA state or None)`` before one step: cheap enough for every step."""
    return steps, torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def rng_restore(snapshot: tuple) -> None:
    """Put back what :func:`rng_snapshot` saw."""
    _, cpu, cuda = snapshot
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda)


def _start_history(history: History | None, epochs: int, steps_per_epoch: int) -> History:
    """The history to continue (checked against ``epochs`` and the loader), or a new one."""
    if history is None:
        return History(steps_per_epoch=steps_per_epoch)
    if not isinstance(history, History):
        raise TypeError(f"history must be a lrtools.History (what fit returned), got "
                        f"{type(history).__name__}.")
    history.validate()
    if history.steps and history.steps_per_epoch != steps_per_epoch:
        raise ValueError(f"The history has {history.steps_per_epoch} steps per epoch but train_loader "
                         f"has {steps_per_epoch}. Fix: continue with the same training loader "
                         "(same data, same batch size).")
    if history.epochs >= epochs:
        raise ValueError(f"The history already holds {history.epochs} finished epochs and epochs={epochs} is "
                         f"the run's total, so nothing is left to train. Fix: pass a larger total, e.g. "
                         f"epochs={history.epochs + 5} to train 5 more.")
    history.steps_per_epoch = steps_per_epoch
    return history


class _Run:
    """What one call of :func:`fit` trains with; each method is one part of the loop."""

    def __init__(self, model, optimizer, train_loader, scheduler, step_every, val_loader, plateau_metric,
                 loss_fn, precision, history: History) -> None:
        self.model, self.optimizer, self.train_loader = model, optimizer, train_loader
        self.scheduler, self.step_every, self.val_loader = scheduler, step_every, val_loader
        self.plateau_metric, self.loss_fn, self.precision, self.history = (plateau_metric, loss_fn,
                                                                           precision, history)
        self.device = resolve_device(model, train_loader)
        self.checked, self.rng, self.batch, self.pending = False, None, None, None
        self.classes = is_classification_loss(loss_fn)

    def batches(self, epoch: int):
        """The epoch's batches after those an interrupted run already trained on."""
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        skip = self.history.unfinished_steps
        for index, batch in enumerate(self.train_loader):
            if index >= skip:
                yield batch

    def measured_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``loss_fn``, keeping the step's loss and correct count before the update runs."""
        if not self.checked:  # the first batch: labels against the model's outputs, before the loss
            check_batch(self.batch[0], y, logits, classes=self.classes)
            self.checked = True
        loss = self.loss_fn(logits, y)
        self.pending = (loss.detach(), (logits.detach().argmax(1) == y).sum(), len(y))
        return loss

    def step(self, x, y, steps_before: int) -> None:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if not self.checked:
            check_batch(x, y, classes=self.classes)  # before the model sees it
        self.batch, self.rng = (x, y), rng_snapshot(steps_before, self.device)
        train_step(self.model, self.optimizer, x, y, loss_fn=self.measured_loss, precision=self.precision)
        if self.step_every == "step" and self.scheduler is not None:
            self.scheduler.step()

    def train_epoch(self, epoch: int, log: LRLog, bar) -> list[float]:
        """Train the rest of one epoch; returns its sums (loss x size, correct, seen, seconds)."""
        self.model.train()
        sums = list(self.history.partial) or [0.0, 0.0, 0.0, 0.0]
        start, first, done = time.perf_counter(), log.steps, []
        try:
            for x, y in self.batches(epoch):
                self.step(x, y, self.history.steps + len(done))
                done.append(self.pending)
                bar.update()
        finally:
            if log.steps - first > len(done):  # stopped after the update, before the bookkeeping
                done.append(self.pending)
            self.record(done, log.lrs[first:], sums, time.perf_counter() - start)
        return sums

    def record(self, done: list, lrs: list[list[float]], sums: list[float], seconds: float) -> None:
        """Steps into the history (one host sync per epoch) and the epoch's running sums."""
        losses = torch.stack([d[0] for d in done]).float().tolist() if done else []
        for step_lrs, loss, (_, _, n) in zip(lrs, losses, done):
            self.history.record_step(step_lrs, loss)
            sums[0] += loss * n
            sums[2] += n
        sums[1] += int(torch.stack([d[1] for d in done]).sum()) if done else 0
        sums[3] += seconds
        self.history.keep_partial(sums)

    def settle_interrupt(self) -> None:
        """After Ctrl-C: rewind the RNG of a step that did not update, finish one that did."""
        if getattr(self, "rng", None) is None:
            return
        counter = getattr(self.scheduler, "last_epoch", None)
        if self.step_every == "step" and counter == self.history.steps - 1:
            self.scheduler.step()  # the update ran, its scheduler step had not yet
        elif self.history.steps == self.rng[0]:
            rng_restore(self.rng)  # as if the unfinished step never began (dropout draws included)

    def check_finite(self, epoch: int) -> None:
        h = self.history
        first = epoch * h.steps_per_epoch
        for step in range(first, h.steps):
            if not math.isfinite(h.step_loss[step]):
                raise DivergenceError(
                    f"Training diverged: the loss became {h.step_loss[step]} at step {step} (epoch "
                    f"{epoch}) with lr={h.step_lr[step]}. The learning rate is too "
                    "large for this model: lower it (e.g. 10x), add warmup, or clip gradients. The run "
                    "so far is in `.history`.", h)

    def end_epoch(self, sums: list[float]) -> None:
        loss_sum, correct, seen, seconds = sums
        if self.val_loader is not None:
            val_loss, val_acc = evaluate(self.model, self.val_loader, loss_fn=self.loss_fn)
        else:
            val_loss = val_acc = math.nan
        self.history.record_epoch(train_loss=loss_sum / seen, train_acc=correct / seen, val_loss=val_loss,
                                  val_acc=val_acc, seconds=seconds)
        if self.scheduler is not None and self.step_every == "epoch":
            if isinstance(self.scheduler, ReduceLROnPlateau):
                metric = getattr(self.history, self.plateau_metric)[-1]
                self.scheduler.step(mean_across_ranks(metric))
            else:
                self.scheduler.step()


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable, *, epochs: int,
        scheduler=None, step_every: str = "epoch", val_loader: Iterable | None = None,
        plateau_metric: str = "val_loss", loss_fn: Callable = F.cross_entropy, history: History | None = None,
        on_epoch_end: Callable[[int, History], None] | None = None, precision: str = "fp32") -> History:
    """Train ``model`` and record the learning rate applied at every step.

    Each step runs forward, ``loss_fn(logits, y)``, backward, ``optimizer.step()``, then
    ``scheduler.step()`` when ``step_every="step"``; with ``"epoch"`` the scheduler steps
    once after validation (a ``ReduceLROnPlateau`` gets ``plateau_metric``, averaged
    across ranks under ``torch.distributed``). Training runs on ``train_loader.device``
    when the loader has one (the model is moved there), else on the model's device.
    Ctrl-C returns the history so far (``interrupted=True``); ``fit(..., history=h)`` on
    the same objects continues exactly from the interrupted step. A NaN/inf loss raises
    :class:`DivergenceError`. A loader with ``set_epoch`` is set to each epoch's number.

    Args:
        model, optimizer: The network and its optimizer (built on ``model.parameters()``).
        train_loader: Yields ``(x, y)``; ``len()`` is ``steps_per_epoch``.
        epochs: The run's total number of epochs; with ``history``, only the rest is trained.
        scheduler: A ``torch.optim.lr_scheduler`` object bound to ``optimizer``.
        step_every: ``"epoch"`` or ``"step"`` (OneCycleLR, CyclicLR, warmup).
        val_loader: Validation data (a split of the training set), evaluated after every epoch.
        plateau_metric: ``"val_loss"`` (mode ``min``) or ``"val_acc"`` (mode ``max``).
        loss_fn: ``loss_fn(logits, y)`` returning the batch mean, e.g. ``nn.CrossEntropyLoss()``.
        history: A :class:`History` to continue (from this call or a checkpoint).
        on_epoch_end: ``on_epoch_end(epochs_done, history)`` after each epoch and its scheduler step.
        precision: ``"fp32"`` (exact, default) or ``"bf16"`` (bf16 autocast of forward and loss).

    Example:
        >>> history = fit(model, optimizer, train_loader, epochs=3,
        ...               scheduler=StepLR(optimizer, 1, 0.5), val_loader=val_loader)  # doctest: +SKIP
    """
    epochs, steps_per_epoch = check_epochs(epochs), check_not_empty(train_loader, "train_loader")
    if val_loader is not None:
        check_not_empty(val_loader, "val_loader")
    history = _start_history(history, epochs, steps_per_epoch)
    autocast(torch.device("cpu"), precision)  # refuses an unknown precision before any work
    check_optimizer_holds(model, optimizer)
    check_scheduler(scheduler, optimizer, step_every, total_updates=epochs * steps_per_epoch,
                    done_updates=history.steps)
    check_plateau(scheduler, step_every, val_loader, plateau_metric)
    run = _Run(model, optimizer, train_loader, scheduler, step_every, val_loader, plateau_metric, loss_fn,
               precision, history)
    model.to(run.device)
    return _loop(run, epochs, on_epoch_end)


def _loop(run: _Run, epochs: int, on_epoch_end) -> History:
    history = run.history
    bar = progress_bar(epochs * history.steps_per_epoch - history.steps, "step")
    try:
        with watch(run.optimizer, run.scheduler, warn=False) as log:
            for epoch in range(history.epochs, epochs):
                if run.scheduler is not None:
                    check_counter(run.scheduler, history, run.step_every)
                sums = run.train_epoch(epoch, log, bar)
                run.check_finite(epoch)
                run.end_epoch(sums)
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", lr=f"{history.epoch_lr[-1][0]:.3g}")
                if on_epoch_end is not None:
                    on_epoch_end(history.epochs, history)
            if run.scheduler is not None:
                check_counter(run.scheduler, history, run.step_every)
    except KeyboardInterrupt:
        run.settle_interrupt()
        history.mark_interrupted()
    finally:
        bar.close()
    return history
