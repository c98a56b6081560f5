"""Plots of schedules and training runs.

Every plot function takes its data first and ``ax=None`` as its first keyword-only
argument (a new figure when None), and returns the ``Axes``. LR axes are either
logarithmic or start at zero, so a drop is never hidden by the axis range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .history import History

__all__ = ["plot_lr", "plot_history", "plot_compare", "plot_digits"]

METRIC_LABELS = {
    "train_loss": "training loss", "val_loss": "validation loss",
    "train_acc": "training accuracy", "val_acc": "validation accuracy", "step_loss": "loss per step",
}


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]


def _lr_scale(ax: Axes, log: bool) -> None:
    """A log LR axis, or a linear one that starts at zero."""
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)


def plot_lr(lrs: History | Sequence[float], *, ax: Axes | None = None, label: str | None = None,
            unit: str = "step", log: bool = False, **kwargs) -> Axes:
    """Plot a learning-rate trajectory as a staircase: entry ``i`` spans ``[i, i + 1)``.

    Args:
        lrs: A :class:`History` (its per-step LR) or a list such as ``preview_schedule`` returns.
        ax: Axes to draw on; a new figure if None.
        label: Legend entry.
        unit: What one x position is: ``"step"`` or ``"epoch"``.
        log: A logarithmic LR axis (else linear from zero).
        **kwargs: Passed to ``Axes.stairs`` (e.g. ``color``).

    Example:
        >>> ax = plot_lr([0.1, 0.1, 0.01], unit="epoch")
        >>> ax.patches[0].get_data().edges.tolist()  # the last epoch has its full width
        [0, 1, 2, 3]
    """
    ax = _axes(ax)
    values = lrs.lrs if isinstance(lrs, History) else [float(v) for v in lrs]
    ax.stairs(values, range(len(values) + 1), baseline=None, label=label, **kwargs)
    ax.set(xlabel=unit, ylabel="learning rate")
    _lr_scale(ax, log)
    if label:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_history(history: History, *, ax: Axes | None = None, metric: str = "loss",
                 log_lr: bool | None = None) -> Axes:
    """Training and validation ``loss`` or ``acc`` per epoch, the LR of every step on a twin axis.

    The x axis is time in epochs trained: epoch ``e`` (counting from 0) is plotted at
    ``x = e + 1``, where it ends; the LR of step ``i`` spans
    ``[i / steps_per_epoch, (i + 1) / steps_per_epoch)``. The twin axis is logarithmic when
    the LR spans more than a factor 20 (``log_lr=None``), else linear from zero. The legend
    sits below the axes, off the data.

    Example:
        >>> h = History(steps_per_epoch=1)
        >>> h.record_step([0.1], 0.6)
        >>> h.record_epoch(train_loss=0.5, train_acc=0.8, val_loss=0.4, val_acc=0.9, seconds=1.0)
        >>> plot_history(h).lines[0].get_xdata().tolist()  # epoch 0 ends at x = 1
        [1]
    """
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}.")
    ax = _axes(ax)
    epochs = range(1, history.epochs + 1)
    for split in ("train", "val"):
        values = getattr(history, f"{split}_{metric}")[: history.epochs]
        if values and any(v == v for v in values):  # skip all-NaN (no validation loader)
            ax.plot(epochs, values, marker="o", label=METRIC_LABELS[f"{split}_{metric}"])
    ax.set(xlabel="epochs trained", ylabel="loss" if metric == "loss" else "accuracy")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    lrs, per = history.lrs, max(history.steps_per_epoch, 1)
    twin.stairs(lrs, [i / per for i in range(len(lrs) + 1)], baseline=None, color="gray", linestyle="--",
                label="learning rate")
    twin.set_ylabel("learning rate", color="gray")
    spread = max(lrs) / min(lrs) if lrs and min(lrs) > 0 else 1.0
    _lr_scale(twin, spread > 20 if log_lr is None else log_lr)
    (h1, l1), (h2, l2) = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    handles, labels = h1 + h2, l1 + l2
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, frameon=False)
    return ax


def plot_compare(histories: Mapping[str, History], metric: str = "val_acc", *,
                 ax: Axes | None = None, log: bool = False) -> Axes:
    """One line per run for ``metric`` (``val_acc``, ``val_loss``, ``train_loss``,
    ``train_acc``, ``step_loss`` or ``lr``).

    Example:
        >>> ax = plot_compare({"a": History(train_loss=[1.0, 0.5])}, "train_loss")
        >>> ax.get_xlabel()
        'epochs trained'
    """
    if metric not in METRIC_LABELS and metric != "lr":
        raise ValueError(f"metric must be one of {sorted(METRIC_LABELS) + ['lr']}, got {metric!r}.")
    ax = _axes(ax)
    per_step = metric in ("step_loss", "lr")
    for name, history in histories.items():
        if per_step:
            values = history.step_loss if metric == "step_loss" else history.lrs
            ax.plot(range(len(values)), values, label=name)
        else:
            values = getattr(history, metric)
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set(xlabel="step" if per_step else "epochs trained", ylabel=METRIC_LABELS.get(metric, "learning rate"))
    if metric == "lr":
        _lr_scale(ax, log)
    elif log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if histories:
        ax.legend()
    return ax


def plot_digits(images, labels, *, ax: Axes | None = None, ncols: int = 8) -> Axes:
    """A grid of MNIST digits with their labels as one image.

    Args:
        images: ``(n, 1, 28, 28)`` tensor (normalised or not).
        labels: ``n`` labels.
        ax: Axes to draw on.
        ncols: Digits per row.

    Example:
        >>> import torch
        >>> ax = plot_digits(torch.zeros(16, 1, 28, 28), torch.zeros(16))
    """
    import torch

    images = images.detach().float().cpu()
    n = len(images)
    nrows = -(-n // ncols)
    grid = torch.full((nrows * 30, ncols * 30), float(images.min()))
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * 30 + 1 : r * 30 + 29, c * 30 + 1 : c * 30 + 29] = img[0]
    ax = ax if ax is not None else plt.subplots(figsize=(ncols, nrows * 1.1))[1]
    ax.imshow(grid.numpy(), cmap="gray_r")
    for i, label in enumerate(labels[:n].tolist()):
        r, c = divmod(i, ncols)
        ax.text(c * 30 + 2, r * 30 + 8, str(int(label)), color="tab:red", fontsize=9)
    ax.set_axis_off()
    return ax
