"""Watch any training loop: the LR each ``optimizer.step()`` really applied, and LR mistakes.

:func:`watch` attaches to an optimizer (and optionally its scheduler and ``GradScaler``)
through the optimizer's own step hooks and a wrapper around the scheduler's ``step``;
on exit both are removed and the objects are exactly as before. :func:`lrtools.fit`
records ``History.step_lr`` through the same monitor, so "the LR applied" has one
definition in the package: :func:`applied_lrs`, read just before each update.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR

from .schedules import current_lrs

__all__ = ["LRWarning", "Finding", "LRLog", "watch", "PER_STEP_SCHEDULERS", "KINDS"]

#: Schedulers whose own totals count optimizer updates: they must step once per update.
PER_STEP_SCHEDULERS = (OneCycleLR, CyclicLR)
KINDS = ("call order", "skipped update", "units", "manual edit", "unscheduled group", "resume")
#: Schedulers that multiply the LR they find (a manual edit carries on); the others overwrite it.
COMPOUNDING = ("StepLR", "MultiStepLR", "ExponentialLR", "MultiplicativeLR", "ConstantLR", "LinearLR",
               "CosineAnnealingLR", "PolynomialLR", "ReduceLROnPlateau")


class LRWarning(UserWarning):
    """A learning-rate mistake found by :func:`lrtools.watch` (or :func:`lrtools.fit`)."""


@dataclass(frozen=True)
class Finding:
    """One mistake: its ``kind`` (one of :data:`KINDS`), the optimizer step, and the fix."""

    kind: str
    step: int
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] at step {self.step}: {self.message}"


@dataclass
class LRLog:
    """What :func:`watch` saw: ``lrs[step][group]`` for every update taken, and ``findings``."""

    lrs: list[list[float]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    scheduler_steps: int = 0

    @property
    def steps(self) -> int:
        """Optimizer updates taken while watched."""
        return len(self.lrs)

    def plot(self, *, ax: Axes | None = None, group: int = 0, log: bool = False) -> Axes:
        """The applied LR of one param group against the optimizer step.

        Example:
            >>> ax = LRLog(lrs=[[0.1], [0.1], [0.01]]).plot()
        """
        ax = ax if ax is not None else plt.subplots(figsize=(6, 3))[1]
        values = [lrs[group] for lrs in self.lrs]
        ax.stairs(values, range(len(values) + 1), baseline=None, label=f"group {group}")
        ax.set(xlabel="optimizer step", ylabel="learning rate applied")
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        return ax


class _Monitor:
    """The state behind one :func:`watch`; every check is one short method."""

    def __init__(self, optimizer, scheduler, scaler, warn: bool) -> None:
        self.optimizer, self.scheduler, self.scaler, self.warn = optimizer, scheduler, scaler, warn
        self.log = LRLog()
        self.seen = current_lrs(optimizer)  # the LRs as last left by an update or the scheduler
        self.since_update = 0  # scheduler steps since the last update
        self.since_scheduler = 0  # updates since the last scheduler step
        self.scaler_calls = self.steps_at_scaler = 0  # skipped scaler steps since the last update
        self.stepped_before = bool(optimizer.state)

    def report(self, kind: str, message: str) -> None:
        first = all(f.kind != kind for f in self.log.findings)
        finding = Finding(kind, self.log.steps, message)
        self.log.findings.append(finding)
        if self.warn and first:
            warnings.warn(str(finding), LRWarning, stacklevel=4)

    def before_update(self, optimizer, args, kwargs) -> None:
        lrs = current_lrs(optimizer)
        if self.scheduler is not None:
            self._check_manual_edit(lrs)
            self._check_groups(len(lrs))
        self.log.lrs.append(lrs)

    def after_update(self, optimizer, args, kwargs) -> None:
        self.seen, self.since_update, self.scaler_calls = current_lrs(optimizer), 0, 0
        self.since_scheduler += 1

    def _check_manual_edit(self, lrs: list[float]) -> None:
        changed = [g for g, (a, b) in enumerate(zip(self.seen, lrs)) if a != b]
        if not changed:
            return
        g, name = changed[0], type(self.scheduler).__name__
        effect = ("multiplies the LR it finds, so it will compound your edit" if name in COMPOUNDING else
                  "computes the LR from its own counter, so it will overwrite your edit at its next step")
        old, self.seen = self.seen[g], lrs
        self.report("manual edit", f"param group {g}'s LR changed from {old:.4g} to {lrs[g]:.4g} after "
                    f"update {self.log.steps}, not by the watched {name}. {name} {effect}. Fix: change the "
                    "LR through the scheduler (or build the scheduler after the edit), not both.")

    def _check_groups(self, groups: int) -> None:
        known = len(getattr(self.scheduler, "base_lrs", None) or getattr(self.scheduler, "min_lrs", []))
        if known and groups > known and all(f.kind != "unscheduled group" for f in self.log.findings):
            self.report("unscheduled group", f"the optimizer has {groups} param groups but the scheduler was "
                        f"built for {known}: group {known} is not scheduled (its LR stays fixed). Fix: call "
                        "optimizer.add_param_group(...) before building the scheduler.")

    def before_scheduler_step(self) -> None:
        self._check_manual_edit(current_lrs(self.optimizer))
        if self.log.steps == 0 and not self.stepped_before and self.log.scheduler_steps == 0:
            self.report("call order", "scheduler.step() ran before the first optimizer.step(), so the "
                        "schedule's first LR was never used. Fix: call optimizer.step() first, then "
                        "scheduler.step().")
        elif self.since_update and self.log.steps + self.stepped_before:
            self._report_skipped()
        elif isinstance(self.scheduler, PER_STEP_SCHEDULERS) and self.since_scheduler > 1:
            self.report("units", f"{type(self.scheduler).__name__} counts optimizer updates, but it stepped "
                        f"once after {self.since_scheduler} updates (once per epoch?). Fix: call "
                        "scheduler.step() after every optimizer.step().")
        self._check_overrun()

    def _report_skipped(self) -> None:
        if self.scaler_calls:
            why = ("the GradScaler skipped optimizer.step() (inf/NaN gradients) but the scheduler stepped "
                   "anyway, so the schedule runs ahead of the updates. Fix: step the scheduler only when "
                   "the scale did not drop (compare scaler.get_scale() before and after scaler.update()).")
        else:
            why = (f"the scheduler stepped {self.since_update + 1} times without an optimizer update in "
                   "between (gradient accumulation stepping it every micro-batch, or step() called twice), "
                   "so the schedule runs ahead of the updates. Fix: step it right after optimizer.step().")
        self.report("skipped update", why)

    def _check_overrun(self) -> None:
        total = getattr(self.scheduler, "total_steps", None)
        if isinstance(self.scheduler, OneCycleLR) and self.scheduler.last_epoch + 1 > total:
            self.report("units", f"OneCycleLR(total_steps={total}) is stepped past its end (torch raises "
                        "next). Fix: total_steps = epochs * len(train_loader), or stop earlier.")

    def after_scheduler_step(self) -> None:
        self.seen = current_lrs(self.optimizer)
        self.since_update += 1
        self.since_scheduler = 0
        self.log.scheduler_steps += 1

    def before_scaler_step(self) -> None:
        self.steps_at_scaler = self.log.steps

    def after_scaler_step(self) -> None:
        if self.log.steps == self.steps_at_scaler:  # scaler.step() skipped optimizer.step()
            self.scaler_calls += 1

    def check_start(self) -> None:
        counter = getattr(self.scheduler, "last_epoch", None)
        if self.stepped_before and counter == 0:
            self.report("resume", f"the optimizer was already stepped (it holds state) but "
                        f"{type(self.scheduler).__name__} is at its start (last_epoch=0): a fresh scheduler "
                        "after loading a checkpoint restarts the schedule. Fix: also load its state, "
                        "scheduler.load_state_dict(checkpoint['scheduler']).")

    def check_end(self) -> None:
        if isinstance(self.scheduler, OneCycleLR) and self.log.steps:
            left = self.scheduler.total_steps - 1 - self.scheduler.last_epoch
            if left > 0:
                self.report("units", f"the loop ended {left} update(s) before OneCycleLR's cycle "
                            f"(total_steps={self.scheduler.total_steps}), so its annealing never finished. "
                            "Fix: total_steps = the number of optimizer.step() calls of the whole run.")


def _wrap_step(obj: Any, before, after) -> type:
    """Give ``obj`` a same-named subclass whose ``step`` calls ``before`` and ``after``.

    Nothing is set on the instance, so ``obj.state_dict()`` (a scheduler's ``__dict__``)
    stays saveable; returns the original class, for :func:`_unwrap_step`.
    """
    cls = type(obj)

    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        before()
        result = cls.step(self, *args, **kwargs)
        after()
        return result

    obj.__class__ = type(cls.__name__, (cls,), {"step": step, "__module__": cls.__module__,
                                                  "__qualname__": cls.__qualname__})
    return cls


def _unwrap_step(obj: Any, cls: type) -> None:
    obj.__class__ = cls


@contextlib.contextmanager
def watch(optimizer: torch.optim.Optimizer, scheduler: Any = None, scaler: Any = None, *,
          warn: bool = True) -> Iterator[LRLog]:
    """Record the LR every ``optimizer.step()`` applies, and find LR mistakes, in any loop.

    Findings (see :data:`KINDS`) go to ``log.findings``; each kind also warns once with
    :class:`LRWarning` as it happens, unless ``warn=False``.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        >>> with watch(opt, sched) as log:
        ...     for epoch in range(3):
        ...         opt.step()
        ...         sched.step()
        >>> log.lrs, log.findings
        ([[0.1], [0.05], [0.025]], [])
    """
    monitor = _Monitor(optimizer, scheduler, scaler, warn)
    handles = [optimizer.register_step_pre_hook(monitor.before_update),
               optimizer.register_step_post_hook(monitor.after_update)]
    wrapped = []
    if scheduler is not None:
        monitor.check_start()
        wrapped.append((scheduler, _wrap_step(scheduler, monitor.before_scheduler_step,
                                              monitor.after_scheduler_step)))
    if scaler is not None:
        wrapped.append((scaler, _wrap_step(scaler, monitor.before_scaler_step, monitor.after_scaler_step)))
    try:
        yield monitor.log
        monitor.check_end()
    finally:
        for handle in handles:
            handle.remove()
        for obj, cls in wrapped:
            _unwrap_step(obj, cls)
