"""What a training run saw: the LR and loss of every step, the metrics of every epoch.

Every change to a :class:`History` goes through its own methods, so its lists always
agree with each other: ``len(step_lr) == len(step_loss)``, and a finished epoch ``e``
owns steps ``e * steps_per_epoch`` to ``(e + 1) * steps_per_epoch - 1``. Steps beyond
the last finished epoch belong to an unfinished (interrupted) epoch; :func:`lrtools.fit`
continues it from exactly there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["History", "EPOCH_METRICS"]

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")


@dataclass
class History:
    """The record of one run, per optimizer step and per epoch.

    ``step_lr[step][group]`` is the LR each param group had when ``optimizer.step()``
    ran (read from ``optimizer.param_groups``, not from the scheduler). Steps and
    epochs count from 0, in code, tables and messages alike, as ``range`` and a
    scheduler's ``last_epoch`` do: "epoch 0" is the first epoch.

    Example:
        >>> h = History(steps_per_epoch=2)
        >>> h.record_step([0.1], 2.3); h.record_step([0.1], 2.1)
        >>> h.record_epoch(train_loss=2.2, train_acc=0.2, val_loss=2.0, val_acc=0.3, seconds=1.0)
        >>> h.epochs, h.epoch_lr
        (1, [[0.1]])
    """

    steps_per_epoch: int = 0
    step_lr: list[list[float]] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    interrupted: bool = False
    #: Running sums of the unfinished epoch: (loss x size summed, correct, examples, seconds).
    partial: list[float] = field(default_factory=list)

    @property
    def lrs(self) -> list[float]:
        """The first param group's LR at every optimizer step."""
        return [lrs[0] for lrs in self.step_lr]

    @property
    def epochs(self) -> int:
        """How many epochs finished."""
        return len(self.train_loss)

    @property
    def steps(self) -> int:
        """How many optimizer steps ran, an unfinished epoch's included."""
        return len(self.step_lr)

    @property
    def epoch_lr(self) -> list[list[float]]:
        """Per finished epoch, the LRs of its first step (``step_lr[::steps_per_epoch]``)."""
        return [self.step_lr[e * self.steps_per_epoch] for e in range(self.epochs)]

    @property
    def unfinished_steps(self) -> int:
        """Steps of the epoch that was interrupted (0 when every epoch finished; all of its steps
        when it was interrupted during validation)."""
        return self.steps - self.epochs * self.steps_per_epoch

    def record_step(self, lrs: list[float], loss: float) -> None:
        """Append one optimizer step: the LRs it applied and its mini-batch loss."""
        self.step_lr.append(list(lrs))
        self.step_loss.append(float(loss))

    def record_epoch(self, *, train_loss: float, train_acc: float, val_loss: float, val_acc: float,
                     seconds: float) -> None:
        """Append one finished epoch's numbers (its steps must be recorded already)."""
        done = (self.epochs + 1) * self.steps_per_epoch
        if self.steps != done:
            raise ValueError(f"Epoch {self.epochs} needs {self.steps_per_epoch} recorded steps before "
                             f"it can end; the history has {self.steps - done + self.steps_per_epoch}.")
        for key, value in zip(EPOCH_METRICS, (train_loss, train_acc, val_loss, val_acc, seconds)):
            getattr(self, key).append(float(value))
        self.partial, self.interrupted = [], False

    def keep_partial(self, partial: list[float]) -> None:
        """Keep the running sums of the unfinished epoch, for :meth:`record_epoch` or a continuation."""
        self.partial = [float(v) for v in partial]

    def mark_interrupted(self) -> None:
        """Note that the run stopped (Ctrl-C) before its last epoch finished."""
        self.interrupted = True

    def drop_last_steps(self, n: int) -> None:
        """Forget the last ``n`` steps of the unfinished epoch (e.g. the ones that diverged)."""
        if not 0 <= n <= self.unfinished_steps:
            raise ValueError(f"Only the {self.unfinished_steps} steps of the unfinished epoch can be "
                             f"dropped, not {n}.")
        keep = self.steps - n
        del self.step_lr[keep:], self.step_loss[keep:]

    def rows(self) -> list[dict[str, float]]:
        """One dict per finished epoch; ``epoch`` counts from 0, ``lr`` is its first step's LR."""
        return [{"epoch": e, "lr": self.epoch_lr[e][0], **{k: getattr(self, k)[e] for k in EPOCH_METRICS}}
                for e in range(self.epochs)]

    def table(self) -> str:
        """The per-epoch numbers as a fixed-width text table.

        ``epoch`` counts from 0; ``lr`` is the LR of the epoch's first optimizer step
        (group 0), i.e. the LR the epoch trained at under a per-epoch schedule.
        """
        lines = [f"{'epoch':>5} {'lr':>10} {'train_loss':>10} {'train_acc':>9} "
                 f"{'val_loss':>8} {'val_acc':>7} {'seconds':>7}"]
        for r in self.rows():
            lines.append(f"{r['epoch']:>5} {r['lr']:>10.3g} {r['train_loss']:>10.4f} "
                         f"{r['train_acc']:>9.4f} {r['val_loss']:>8.4f} {r['val_acc']:>7.4f} "
                         f"{r['seconds']:>7.2f}")
        if self.interrupted:
            lines.append(f"(interrupted in epoch {self.epochs} after {self.unfinished_steps} of "
                         f"{self.steps_per_epoch} steps)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, for JSON or a checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The inverse of :meth:`to_dict`; older dicts with a stored ``epoch_lr`` load too.

        Example:
            >>> History.from_dict(History(steps_per_epoch=3).to_dict()).steps_per_epoch
            3
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"epoch_lr"})
        if unknown:
            raise ValueError(f"Not a History dict: unknown keys {unknown}. Fix: pass what "
                             "History.to_dict() returned.")
        history = cls(**{k: v for k, v in data.items() if k in known})
        history.validate()
        return history

    def validate(self) -> None:
        """Raise ValueError unless the lists agree with each other (see the module docstring)."""
        lengths = {k: len(getattr(self, k)) for k in EPOCH_METRICS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"The per-epoch lists have different lengths {lengths}: this History was "
                             "edited by hand. Fix: use the History that fit() returned.")
        if len(self.step_lr) != len(self.step_loss):
            raise ValueError(f"step_lr has {len(self.step_lr)} entries but step_loss {len(self.step_loss)}.")
        if self.steps and not 0 <= self.unfinished_steps <= self.steps_per_epoch:
            raise ValueError(f"{self.epochs} finished epochs of {self.steps_per_epoch} steps need at least "
                             f"{self.epochs * self.steps_per_epoch} recorded steps (and less than one more "
                             f"epoch); the history has {self.steps}.")
