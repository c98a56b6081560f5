"""Plots draw what they say where they say: staircase LRs, epochs at x = e + 1, ax keyword-only."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from lrtools import History, RangeTestResult, plot_compare, plot_digits, plot_history, plot_lr


def _history(steps_per_epoch=2, lrs=(0.1, 0.1, 0.01, 0.01), epochs=None):
    """A History built as fit builds it: steps first, then the epoch's numbers."""
    h = History(steps_per_epoch=steps_per_epoch)
    metrics = [dict(train_loss=1.5, train_acc=0.5, val_loss=1.0, val_acc=0.6, seconds=1.0),
               dict(train_loss=0.45, train_acc=0.9, val_loss=0.5, val_acc=0.85, seconds=1.0)]
    for i, lr in enumerate(lrs):
        h.record_step([lr], 2.0 / (i + 1))
        if (i + 1) % steps_per_epoch == 0 and (epochs is None or h.epochs < epochs):
            h.record_epoch(**metrics[h.epochs % 2])
    return h


def _stairs(ax):
    """(values, edges) of the one staircase on ``ax``."""
    (patch,) = ax.patches
    data = patch.get_data()
    return data.values.tolist(), data.edges.tolist()


def test_plot_lr_draws_a_staircase_on_the_given_axes():
    fig, ax = plt.subplots()
    assert plot_lr([0.1, 0.1, 0.01], ax=ax, label="step", log=True) is ax
    values, edges = _stairs(ax)
    assert values == [0.1, 0.1, 0.01] and edges == [0, 1, 2, 3]  # the last step spans [2, 3): full width
    assert ax.get_yscale() == "log" and ax.get_legend().get_texts()[0].get_text() == "step"
    assert _stairs(plot_lr(_history())) == ([0.1, 0.1, 0.01, 0.01], [0, 1, 2, 3, 4])


def test_plot_lr_axis_starts_at_zero_unless_log():
    ax = plot_lr([0.5, 0.4, 0.3], unit="epoch")
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0  # a drop from 0.5 to 0.3 is not hidden
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "learning rate"
    assert ax.get_xlim()[1] >= 3


def test_plot_history_epochs_end_at_e_plus_1_and_the_lr_spans_its_steps():
    h = _history(steps_per_epoch=2)
    ax = plot_history(h, metric="acc")
    assert [line.get_label() for line in ax.lines] == ["training accuracy", "validation accuracy"]
    assert ax.lines[0].get_xdata().tolist() == [1, 2]  # epoch 0 at x = 1, where it ends
    assert ax.lines[0].get_ydata().tolist() == [0.5, 0.9] and ax.get_xlabel() == "epochs trained"
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    values, edges = _stairs(twin)
    assert values == [0.1, 0.1, 0.01, 0.01]
    assert edges == [0, 0.5, 1, 1.5, 2]  # step i spans [i / steps_per_epoch, (i + 1) / steps_per_epoch)
    assert twin.get_yscale() == "linear" and twin.get_ylim()[0] == 0  # spread 10x: linear from zero
    with pytest.raises(ValueError, match="metric must be 'loss' or 'acc', got 'f1'."):
        plot_history(h, metric="f1")


def test_plot_history_steps_and_epochs_line_up_with_more_steps_per_epoch():
    h = _history(steps_per_epoch=4, lrs=[0.1] * 4 + [1e-3] * 4)
    ax = plot_history(h)
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    assert _stairs(twin)[1] == [i / 4 for i in range(9)]
    assert ax.lines[0].get_xdata().tolist() == [1, 2]
    assert twin.get_yscale() == "log"  # the LR spans 100x
    assert plot_history(h, log_lr=False).figure.axes[1].get_yscale() == "linear"


def test_plot_history_of_an_interrupted_run():
    h = _history(steps_per_epoch=2, lrs=[0.1, 0.1, 0.05], epochs=1)  # epoch 1 stopped after one step
    ax = plot_history(h)
    assert ax.lines[0].get_xdata().tolist() == [1]
    assert _stairs(ax.figure.axes[1])[1] == [0, 0.5, 1, 1.5]


def test_plot_history_legend_sits_below_the_axes():
    ax = plot_history(_history())
    fig = ax.figure
    fig.canvas.draw()
    legend, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= box.y0  # entirely below the plotting area, off the data
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training loss", "validation loss",
                                                                    "learning rate"]


def test_plot_history_without_validation_skips_the_nan_line():
    h = History(steps_per_epoch=1)
    h.record_step([0.1], 1.0)
    h.record_epoch(train_loss=1.0, train_acc=0.5, val_loss=float("nan"), val_acc=float("nan"), seconds=1.0)
    assert [line.get_label() for line in plot_history(h).lines] == ["training loss"]


def test_plot_compare_one_line_per_run():
    ax = plot_compare({"a": _history(), "b": _history()}, "val_acc")
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert ax.lines[0].get_xdata().tolist() == [1, 2] and ax.lines[0].get_ydata().tolist() == [0.6, 0.85]
    lr = plot_compare({"a": _history()}, "lr")
    assert lr.get_xlabel() == "step" and lr.get_ylim()[0] == 0  # an LR axis starts at zero
    assert plot_compare({"a": _history()}, "lr", log=True).get_yscale() == "log"
    assert plot_compare({}, "val_acc").get_xlabel() == "epochs trained"  # nothing to draw is no crash
    with pytest.raises(ValueError, match="metric must be one of"):
        plot_compare({"a": _history()}, "accuracy")


def test_plot_digits():
    ax = plot_digits(torch.rand(10, 1, 28, 28), torch.arange(10), ncols=5)
    assert ax.images[0].get_array().shape == (60, 150)
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(10)]


def _axes():
    return plt.subplots()[1]


@pytest.mark.parametrize("call", [
    lambda ax: plot_lr([0.1, 0.01], ax),
    lambda ax: plot_history(_history(), ax),
    lambda ax: plot_compare({"a": _history()}, "val_acc", ax),
    lambda ax: plot_digits(torch.zeros(2, 1, 28, 28), torch.zeros(2), ax),
    lambda ax: RangeTestResult([1e-3, 1e-2], [1.0, 0.5], [1.0, 0.5]).plot(ax),
], ids=["plot_lr", "plot_history", "plot_compare", "plot_digits", "RangeTestResult.plot"])
def test_ax_is_keyword_only(call):
    with pytest.raises(TypeError, match="positional argument"):
        call(_axes())
