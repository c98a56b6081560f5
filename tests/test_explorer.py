"""lrtools.explorer: the schedule explorer's arithmetic against torch schedulers stepped for real in
a training loop, its plot, and its ipywidgets panel redrawing when a control moves."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from matplotlib.axes import Axes
from torch.optim import lr_scheduler

from lrtools import explorer
from lrtools.explorer import SCHEDULERS, explorer_lrs, plot_explorer, schedule_explorer, scheduler_arguments


def trained_lrs(name: str, epochs: int, steps_per_epoch: int, step_every: str,
                lr: float = 0.1) -> list[float]:
    """The LR of every optimizer step of a real training loop (gradients, updates, the scheduler
    stepped where ``step_every`` says), written independently of lrtools."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    arguments = {knob.name: int(knob.default) if knob.is_int else knob.default for knob in SCHEDULERS[name]}
    if name == "OneCycleLR":
        arguments.update(max_lr=lr, total_steps=epochs * (steps_per_epoch if step_every == "step" else 1))
    scheduler = getattr(lr_scheduler, name)(optimizer, **arguments)
    used = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            model(torch.randn(4, 3)).pow(2).mean().backward()
            optimizer.step()
            if step_every == "step":
                scheduler.step()
        if step_every == "epoch":
            scheduler.step()
    return used


@pytest.mark.parametrize("step_every", ["step", "epoch"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_explorer_lrs_match_the_scheduler_stepped_in_a_real_loop(name, step_every):
    got = explorer_lrs(name, epochs=6, steps_per_epoch=7, step_every=step_every)
    want = trained_lrs(name, 6, 7, step_every)
    assert len(got) == 6 * 7
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_per_epoch_stepping_holds_the_lr_for_a_whole_epoch():
    got = explorer_lrs("StepLR", {"step_size": 2, "gamma": 0.1}, epochs=5, steps_per_epoch=3,
                       step_every="epoch", lr=1.0)
    assert got == pytest.approx([1.0] * 6 + [0.1] * 6 + [0.01] * 3)
    # The same arguments stepped per step drop after 2 optimizer steps: the lesson of 04 §2.
    per_step = explorer_lrs("StepLR", {"step_size": 2, "gamma": 0.1}, epochs=5, steps_per_epoch=3, lr=1.0)
    assert per_step[:6] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_closed_forms():
    cosine = explorer_lrs("CosineAnnealingLR", {"T_max": 40, "eta_min": 0.0}, epochs=4, steps_per_epoch=10)
    assert cosine[20] == pytest.approx(0.05)
    assert cosine[10] == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    expo = explorer_lrs("ExponentialLR", {"gamma": 0.9}, epochs=2, steps_per_epoch=5)
    assert expo == pytest.approx([0.1 * 0.9 ** t for t in range(10)])


@pytest.mark.parametrize("step_every", ["step", "epoch"])
def test_one_cycle_is_sized_to_the_run_whichever_the_stepping(step_every):
    lrs = explorer_lrs("OneCycleLR", {"pct_start": 0.25, "div_factor": 10}, epochs=8, steps_per_epoch=5,
                       step_every=step_every, lr=0.2)
    assert len(lrs) == 40 and max(lrs) == pytest.approx(0.2) and lrs[0] == pytest.approx(0.02)
    assert lrs[-1] == pytest.approx(0.02 / 1e4)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: explorer_lrs("StepLr"),
     "unknown scheduler 'StepLr'. Fix: one of " + ", ".join(SCHEDULERS) + "."),
    (lambda: explorer_lrs("StepLR", {"gama": 0.5}),
     "StepLR has no knob 'gama' in the explorer. Fix: use step_size, gamma."),
    (lambda: explorer_lrs("StepLR", {"step_size": 2.5}),
     "StepLR's step_size counts scheduler.step() calls: a whole number, not 2.5."),
    (lambda: explorer_lrs("StepLR", step_every="batch"),
     "step_every must be 'step' or 'epoch', got 'batch'."),
    (lambda: explorer_lrs("StepLR", epochs=0), "epochs must be a whole number >= 1, got 0."),
    (lambda: explorer_lrs("StepLR", steps_per_epoch=2.0),
     "steps_per_epoch must be a whole number >= 1, got 2.0."),
])
def test_bad_input_names_the_fix(call, message):
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == message


def test_scheduler_arguments_cast_whole_counts_to_int():
    arguments = scheduler_arguments("CosineAnnealingWarmRestarts", {"T_0": 10.0})
    assert arguments == {"T_0": 10, "T_mult": 2} and isinstance(arguments["T_0"], int)


def test_plot_explorer_marks_each_epoch_on_a_zero_based_axis():
    lrs = explorer_lrs("StepLR", epochs=4, steps_per_epoch=5)
    ax = plot_explorer(lrs, 5, title="t")
    assert isinstance(ax, Axes) and ax.get_xlabel() == "optimizer step" and ax.get_ylabel() == "learning rate"
    assert [line.get_xdata()[0] for line in ax.lines] == [5, 10, 15]
    assert ax.get_ylim()[0] == 0 and ax.get_xlim() == (0, 20)
    assert explorer.render_png(lrs, 5).startswith(b"\x89PNG")


def test_the_panel_redraws_when_a_slider_moves():
    pytest.importorskip("ipywidgets")
    panel = schedule_explorer()
    image, status = panel.children[1], panel.children[0].children[-1]
    first = bytes(image.value)
    assert first.startswith(b"\x89PNG") and status.value == "first LR 0.1, smallest 0.00625, last 0.00625"
    panel.controls["step_every"].value = "epoch"  # step_size=20 epochs: never reached in 5
    assert bytes(image.value) != first and status.value == "first LR 0.1, smallest 0.1, last 0.1"
    panel.controls["scheduler"].value = "OneCycleLR"
    assert [slider.description for slider in panel.controls["knobs"].children] == ["pct_start", "div_factor"]
    before = bytes(image.value)
    panel.controls["knobs"].children[1].value = 10
    assert bytes(image.value) != before and status.value.startswith("first LR 0.01,")
    assert repr(panel) == ("Schedule explorer: run this cell in JupyterLab, Colab or Binder "
                           "to move its sliders.")


def test_the_panel_shows_an_error_instead_of_swallowing_it(monkeypatch):
    pytest.importorskip("ipywidgets")
    panel = schedule_explorer()
    before = bytes(panel.children[1].value)

    def refuse(*args, **kwargs):
        raise ValueError("no such schedule")

    monkeypatch.setattr(explorer, "explorer_lrs", refuse)
    panel.controls["epochs"].value = 7
    status = panel.children[0].children[-1].value
    assert status == "<span style='color:#b00'>ValueError: no such schedule</span>"
    assert bytes(panel.children[1].value) == before


def test_the_panel_without_ipywidgets_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(ImportError) as caught:
        schedule_explorer()
    assert str(caught.value) == ("the schedule explorer needs ipywidgets. Fix: `pip install ipywidgets` "
                                 "(it comes with `pip install -e .[lab]`), then restart the kernel.")


def test_bad_arguments_fail_before_any_widget_is_built():
    with pytest.raises(ValueError, match="unknown scheduler"):
        schedule_explorer("Nope")
