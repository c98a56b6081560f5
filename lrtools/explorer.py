"""A schedule explorer: pick a scheduler, its main arguments, the run's length and how often
``scheduler.step()`` runs, and see the LR of every optimizer step.

:func:`explorer_lrs` is the arithmetic (a preview on a throwaway optimizer, never a training
scheduler), :func:`plot_explorer` draws it, and :func:`schedule_explorer` puts both behind
ipywidgets sliders that redraw live (``pip install ipywidgets``; JupyterLab, Colab and Binder).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch.optim import lr_scheduler

from .plotting import plot_lr
from .schedules import preview_schedule


@dataclass(frozen=True)
class Knob:
    """One argument of a scheduler the explorer puts on a slider: its range and default."""

    name: str
    low: float
    high: float
    default: float
    step: float

    @property
    def is_int(self) -> bool:
        return all(float(v).is_integer() for v in (self.low, self.high, self.default, self.step))


#: The schedulers on offer and their knobs. OneCycleLR's peak is ``lr`` and its ``total_steps`` is
#: the number of ``scheduler.step()`` calls the run makes, so it is always sized right.
SCHEDULERS: dict[str, tuple[Knob, ...]] = {
    "StepLR": (Knob("step_size", 1, 100, 20, 1), Knob("gamma", 0.05, 1.0, 0.5, 0.05)),
    "ExponentialLR": (Knob("gamma", 0.8, 1.0, 0.97, 0.005),),
    "LinearLR": (Knob("start_factor", 0.01, 1.0, 0.1, 0.01), Knob("total_iters", 1, 200, 20, 1)),
    "PolynomialLR": (Knob("total_iters", 1, 400, 100, 1), Knob("power", 0.25, 4.0, 1.0, 0.25)),
    "CosineAnnealingLR": (Knob("T_max", 1, 400, 100, 1), Knob("eta_min", 0.0, 0.05, 0.0, 0.005)),
    "CosineAnnealingWarmRestarts": (Knob("T_0", 1, 200, 20, 1), Knob("T_mult", 1, 4, 2, 1)),
    "OneCycleLR": (Knob("pct_start", 0.05, 0.95, 0.3, 0.05), Knob("div_factor", 1, 100, 25, 1)),
}
STEP_EVERY = ("step", "epoch")


def scheduler_arguments(scheduler: str, params: Mapping[str, float] | None = None) -> dict[str, float]:
    """The knobs' defaults updated with ``params``, checked and with integer knobs as ``int``.

    Example:
        >>> scheduler_arguments("StepLR", {"gamma": 0.1})
        {'step_size': 20, 'gamma': 0.1}
    """
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}. Fix: one of {', '.join(SCHEDULERS)}.")
    knobs = {knob.name: knob for knob in SCHEDULERS[scheduler]}
    unknown = sorted(set(params or {}) - set(knobs))
    if unknown:
        raise ValueError(f"{scheduler} has no knob {unknown[0]!r} in the explorer. Fix: use "
                         f"{', '.join(knobs)}.")
    arguments = {}
    for name, knob in knobs.items():
        value = (params or {}).get(name, knob.default)
        if knob.is_int and not float(value).is_integer():
            raise ValueError(f"{scheduler}'s {name} counts scheduler.step() calls: a whole number, "
                             f"not {value!r}.")
        arguments[name] = int(value) if knob.is_int else float(value)
    return arguments


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
    return value


def explorer_lrs(scheduler: str, params: Mapping[str, float] | None = None, *, epochs: int = 5,
                 steps_per_epoch: int = 20, step_every: str = "step", lr: float = 0.1) -> list[float]:
    """The LR of each of the ``epochs * steps_per_epoch`` optimizer steps when ``scheduler.step()``
    runs after every step (``step_every="step"``) or after every epoch (``"epoch"``).

    Example:
        >>> explorer_lrs("StepLR", {"step_size": 2, "gamma": 0.1}, epochs=3, steps_per_epoch=2,
        ...              step_every="epoch", lr=1.0)
        [1.0, 1.0, 1.0, 1.0, 0.1, 0.1]
    """
    epochs, steps_per_epoch = _check_count(epochs, "epochs"), _check_count(steps_per_epoch, "steps_per_epoch")
    if step_every not in STEP_EVERY:
        raise ValueError(f"step_every must be 'step' or 'epoch', got {step_every!r}.")
    arguments = scheduler_arguments(scheduler, params)
    calls = epochs * steps_per_epoch if step_every == "step" else epochs
    if scheduler == "OneCycleLR":
        arguments.update(max_lr=lr, total_steps=calls)
    cls = getattr(lr_scheduler, scheduler)
    lrs = preview_schedule(lambda optimizer: cls(optimizer, **arguments), calls, lr=lr)
    return lrs if step_every == "step" else [value for value in lrs for _ in range(steps_per_epoch)]


def describe(scheduler: str, params: Mapping[str, float] | None = None, step_every: str = "step") -> str:
    """A one-line name for a configuration, e.g. for a plot title.

    Example:
        >>> describe("StepLR", {"gamma": 0.1}, "epoch")
        'StepLR(step_size=20, gamma=0.1), stepped every epoch'
    """
    arguments = ", ".join(f"{k}={v:g}" for k, v in scheduler_arguments(scheduler, params).items())
    return f"{scheduler}({arguments}), stepped every {step_every}"


def plot_explorer(lrs: list[float], steps_per_epoch: int, *, ax: Axes | None = None,
                  title: str | None = None, color: str = "C0") -> Axes:
    """The LR of every optimizer step (linear axis from 0), with a faint line at each epoch's start.

    Example:
        >>> ax = plot_explorer(explorer_lrs("StepLR", epochs=2, steps_per_epoch=3), 3)
        >>> ax.get_xlabel(), len(ax.lines)
        ('optimizer step', 1)
    """
    ax = plot_lr(lrs, ax=ax, color=color, lw=2)
    for start in range(steps_per_epoch, len(lrs), steps_per_epoch):
        ax.axvline(start, color="0.85", lw=0.8, zorder=0)
    ax.set(xlabel="optimizer step", xlim=(0, len(lrs)), title=title)
    return ax


def render_png(lrs: list[float], steps_per_epoch: int, title: str | None = None) -> bytes:
    """:func:`plot_explorer` as PNG bytes, drawn off-screen (no pyplot, nothing shown)."""
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    plot_explorer(lrs, steps_per_epoch, ax=fig.subplots(), title=title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("the schedule explorer needs ipywidgets. Fix: `pip install ipywidgets` "
                          "(it comes with `pip install -e .[lab]`), then restart the kernel.") from None
    return ipywidgets


@functools.cache
def _explorer_class(widgets):
    class ScheduleExplorer(widgets.HBox):
        """The explorer's panel; its plain-text form says how to use it where widgets do not run."""

        def __repr__(self) -> str:
            return "Schedule explorer: run this cell in JupyterLab, Colab or Binder to move its sliders."

    return ScheduleExplorer


def _knob_slider(widgets, knob: Knob, value: float):
    kind = widgets.IntSlider if knob.is_int else widgets.FloatSlider
    return kind(value=value, min=knob.low, max=knob.high, step=knob.step, description=knob.name,
                continuous_update=False, style={"description_width": "9em"})


def schedule_explorer(scheduler: str = "StepLR", params: Mapping[str, float] | None = None, *,
                      epochs: int = 5, steps_per_epoch: int = 20, step_every: str = "step",
                      lr: float = 0.1):
    """An ipywidgets panel that redraws :func:`explorer_lrs` whenever a control moves.

    Its ``.redraw()`` draws again; ``.controls`` maps each control's name to its widget.
    """
    widgets, wide = _ipywidgets(), {"description_width": "9em"}
    explorer_lrs(scheduler, params, epochs=epochs, steps_per_epoch=steps_per_epoch,
                 step_every=step_every, lr=lr)  # bad arguments fail here, before any widget exists
    choose = widgets.Dropdown(options=list(SCHEDULERS), value=scheduler, description="scheduler", style=wide)
    runs = {"epochs": widgets.IntSlider(value=epochs, min=1, max=20, description="epochs", style=wide),
            "steps_per_epoch": widgets.IntSlider(value=steps_per_epoch, min=1, max=50,
                                                 description="steps_per_epoch", style=wide),
            "step_every": widgets.ToggleButtons(options=STEP_EVERY, value=step_every,
                                                description="step() every", style=wide)}
    knobs, image, status = widgets.VBox(), widgets.Image(format="png"), widgets.HTML()
    panel = _explorer_class(widgets)([widgets.VBox([choose, knobs, *runs.values(), status]), image])
    panel.add_class("lr-explorer")
    image.add_class("lr-explorer-plot")

    def redraw(_=None) -> None:
        chosen = {slider.description: slider.value for slider in knobs.children}
        run = {name: control.value for name, control in runs.items()}
        try:
            lrs = explorer_lrs(choose.value, chosen, lr=lr, **run)
        except (ValueError, TypeError) as error:  # shown in the panel, never swallowed
            status.value = f"<span style='color:#b00'>{type(error).__name__}: {error}</span>"
            return
        title = describe(choose.value, chosen, run["step_every"])
        image.value = render_png(lrs, run["steps_per_epoch"], title)
        status.value = f"first LR {lrs[0]:.3g}, smallest {min(lrs):.3g}, last {lrs[-1]:.3g}"

    def rebuild(_=None, start: Mapping[str, float] | None = None) -> None:
        arguments = scheduler_arguments(choose.value, start)
        knobs.children = [_knob_slider(widgets, knob, arguments[knob.name])
                          for knob in SCHEDULERS[choose.value]]
        for slider in knobs.children:
            slider.observe(redraw, names="value")
        redraw()

    for control in runs.values():
        control.observe(redraw, names="value")
    choose.observe(rebuild, names="value")
    rebuild(start=params)
    panel.redraw, panel.controls = redraw, {"scheduler": choose, **runs, "knobs": knobs}
    return panel
