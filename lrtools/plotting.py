"""Plots of schedules and training runs. Each takes ``ax=None`` and returns the Axes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .training import History

__all__ = ["plot_lr", "plot_history", "plot_compare", "plot_digits"]

METRIC_LABELS = {
    "train_loss": "training loss", "val_loss": "validation loss",
    "train_acc": "training accuracy", "val_acc": "validation accuracy", "step_loss": "loss per step",
}


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=(6, 3.5))[1]


def plot_lr(lrs: History | Sequence[float], ax: Axes | None = None, *, label: str | None = None,
            unit: str = "step", log: bool = False, **kwargs) -> Axes:
    """Plot a learning-rate trajectory as a step function.

    Args:
        lrs: A :class:`History` (its per-step LR) or a list such as ``preview_schedule`` returns.
        ax: Axes to draw on; a new figure if None.
        label: Legend entry.
        unit: What one x position is: ``"step"`` or ``"epoch"``.
        log: Use a logarithmic LR axis.
        **kwargs: Passed to ``Axes.step``.

    Example:
        >>> ax = plot_lr([0.1, 0.1, 0.01], unit="epoch")
    """
    ax = _axes(ax)
    values = lrs.lrs if isinstance(lrs, History) else list(lrs)
    ax.step(range(len(values)), values, where="post", label=label, **kwargs)
    ax.set(xlabel=unit, ylabel="learning rate")
    if log:
        ax.set_yscale("log")
    if label:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_history(history: History, ax: Axes | None = None, *, metric: str = "loss") -> Axes:
    """Training and validation ``loss`` or ``acc`` per epoch, LR on a twin axis.

    Example:
        >>> ax = plot_history(History(steps_per_epoch=1, step_lr=[[0.1]], epoch_lr=[[0.1]],
        ...                           train_loss=[0.5], val_loss=[0.4]))
    """
    if metric not in ("loss", "acc"):
        raise ValueError(f"metric must be 'loss' or 'acc', got {metric!r}.")
    ax = _axes(ax)
    epochs = range(1, history.epochs + 1)
    for split in ("train", "val"):
        values = getattr(history, f"{split}_{metric}")[: history.epochs]
        if values:
            ax.plot(epochs, values, marker="o", label=METRIC_LABELS[f"{split}_{metric}"])
    ax.set(xlabel="epoch", ylabel="loss" if metric == "loss" else "accuracy")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    # epoch e's metrics sit at x = e (its end), so step i ends at (i + 1) / steps_per_epoch
    steps = [(i + 1) / max(history.steps_per_epoch, 1) for i in range(len(history.lrs))]
    twin.plot(steps, history.lrs, color="gray", linestyle="--", label="learning rate")
    twin.set_ylabel("learning rate", color="gray")
    lines = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], loc="best")
    return ax


def plot_compare(histories: Mapping[str, History], metric: str = "val_acc",
                 ax: Axes | None = None, *, log: bool = False) -> Axes:
    """One line per run for ``metric`` (``val_acc``, ``val_loss``, ``train_loss``,
    ``train_acc``, ``step_loss`` or ``lr``).

    Example:
        >>> ax = plot_compare({"a": History(train_loss=[1.0, 0.5])}, "train_loss")
    """
    if metric not in METRIC_LABELS and metric != "lr":
        raise ValueError(f"metric must be one of {sorted(METRIC_LABELS) + ['lr']}, got {metric!r}.")
    ax = _axes(ax)
    for name, history in histories.items():
        if metric in ("step_loss", "lr"):
            values = history.step_loss if metric == "step_loss" else history.lrs
            ax.plot(range(len(values)), values, label=name)
            xlabel = "step"
        else:
            values = getattr(history, metric)
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
            xlabel = "epoch"
    ax.set(xlabel=xlabel, ylabel=METRIC_LABELS.get(metric, "learning rate"))
    if log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_digits(images, labels, ax: Axes | None = None, *, ncols: int = 8) -> Axes:
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
