import matplotlib.pyplot as plt
import pytest
import torch

from lrtools import History, plot_compare, plot_digits, plot_history, plot_lr


def _history():
    return History(steps_per_epoch=2, step_lr=[[0.1], [0.1], [0.01], [0.01]], step_loss=[2, 1, 0.5, 0.4],
                   epoch_lr=[[0.1], [0.01]], train_loss=[1.5, 0.45], train_acc=[0.5, 0.9],
                   val_loss=[1.0, 0.5], val_acc=[0.6, 0.85], seconds=[1.0, 1.0])


def test_plot_lr_draws_the_values_on_the_given_axes():
    fig, ax = plt.subplots()
    assert plot_lr([0.1, 0.1, 0.01], ax=ax, label="step", log=True) is ax
    assert list(ax.lines[0].get_ydata()) == [0.1, 0.1, 0.01]
    assert ax.get_yscale() == "log"
    assert list(plot_lr(_history()).lines[0].get_ydata()) == [0.1, 0.1, 0.01, 0.01]


def test_plot_history_has_lr_twin_axis():
    ax = plot_history(_history(), metric="acc")
    assert [line.get_label() for line in ax.lines] == ["training accuracy", "validation accuracy"]
    twin = [a for a in ax.figure.axes if a is not ax][0]
    assert list(twin.lines[0].get_ydata()) == [0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="metric must be 'loss' or 'acc', got 'f1'."):
        plot_history(_history(), metric="f1")


def test_plot_compare_one_line_per_run():
    ax = plot_compare({"a": _history(), "b": _history()}, "val_acc")
    assert [line.get_label() for line in ax.lines] == ["a", "b"]
    assert list(ax.lines[0].get_ydata()) == [0.6, 0.85]
    assert plot_compare({"a": _history()}, "lr").get_xlabel() == "step"
    with pytest.raises(ValueError, match="metric must be one of"):
        plot_compare({"a": _history()}, "accuracy")


def test_plot_digits():
    ax = plot_digits(torch.rand(10, 1, 28, 28), torch.arange(10), ncols=5)
    assert ax.images[0].get_array().shape == (60, 150)
    assert [t.get_text() for t in ax.texts] == [str(i) for i in range(10)]
