"""preview_schedule against real schedulers stepped for real; manual LR helpers."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

from lrtools import current_lrs, preview_schedule, scale_lr, set_lr

# One factory per class in torch.optim.lr_scheduler, with settings that make each change
# several times within STEPS steps.
FACTORIES = {
    "LambdaLR": lambda o: S.LambdaLR(o, lambda e: 0.9**e),
    "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, lambda e: 0.95),
    "StepLR": lambda o: S.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[2, 5], gamma=0.1),
    "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=4),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=0.1, total_iters=5),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.8),
    "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=8, power=2.0),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=6, eta_min=0.001),
    "ChainedScheduler": lambda o: S.ChainedScheduler(
        [S.ConstantLR(o, factor=0.5, total_iters=3), S.ExponentialLR(o, gamma=0.9)]),
    "SequentialLR": lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=3), S.CosineAnnealingLR(o, T_max=7)],
        milestones=[3]),
    "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=1),
    "CyclicLR": lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=12),
    "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2),
}
STEPS = 12
METRICS = [1.0, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7]


def test_factories_cover_every_scheduler_class():
    classes = {name for name, obj in vars(S).items()
               if inspect.isclass(obj) and issubclass(obj, (S.LRScheduler, S.ReduceLROnPlateau))
               and not name.startswith("_") and name != "LRScheduler"}
    assert classes == set(FACTORIES)


def _step_for_real(make_scheduler, steps, lr, metrics):
    """Train a real model with a real optimizer, reading the LR each step applies."""
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    seen = []
    for i in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if isinstance(scheduler, S.ReduceLROnPlateau):
            scheduler.step(metrics[i])
        else:
            scheduler.step()
    return seen


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_preview_matches_real_scheduler(name):
    factory = FACTORIES[name]
    expected = _step_for_real(factory, STEPS, 0.1, METRICS)
    got = preview_schedule(factory, STEPS, lr=0.1, metrics=METRICS)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert len(set(round(v, 12) for v in got)) > 1, "schedule never changed: the case tests nothing"


def test_preview_steplr_closed_form():
    got = preview_schedule(lambda o: S.StepLR(o, step_size=3, gamma=0.1), 10, lr=0.5)
    assert got == pytest.approx([0.5 * 0.1 ** (e // 3) for e in range(10)])


def test_preview_cosine_closed_form():
    t_max, eta_min, lr0 = 8, 0.01, 0.2
    got = preview_schedule(lambda o: S.CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), 9, lr=lr0)
    want = [eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2 for t in range(9)]
    assert got == pytest.approx(want)


def test_preview_plateau_closed_form():
    # patience=1: the second epoch in a row without improvement halves the LR.
    got = preview_schedule(lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=1), 6,
                           lr=1.0, metrics=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert got == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]


def test_preview_does_not_touch_the_training_scheduler():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = S.StepLR(optimizer, step_size=1, gamma=0.5)
    preview_schedule(lambda o: S.StepLR(o, step_size=1, gamma=0.5), 5)
    assert scheduler.last_epoch == 0 and current_lrs(optimizer) == [0.1]


def test_preview_rejects_a_scheduler_object():
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    scheduler = S.StepLR(optimizer, step_size=1)
    msg = ("preview_schedule needs a function that builds the scheduler, not a StepLR object "
           "(previewing it would consume the one you train with). "
           "Fix: pass `lambda optimizer: StepLR(optimizer, ...)`.")
    with pytest.raises(TypeError, match=re.escape(msg)):
        preview_schedule(scheduler, 5)
    assert scheduler.last_epoch == 0


def test_preview_plateau_needs_metrics():
    with pytest.raises(ValueError, match=re.escape("ReduceLROnPlateau needs one metric per step: "
                                                   "got 2 for 3 steps.")):
        preview_schedule(lambda o: S.ReduceLROnPlateau(o), 3, metrics=[1.0, 2.0])


def _optimizer(groups: int = 2, lr: float = 0.1):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(groups)]
    return torch.optim.SGD([{"params": [p]} for p in params], lr=lr)


def test_current_set_scale_lr():
    opt = _optimizer()
    assert current_lrs(opt) == [0.1, 0.1]
    set_lr(opt, 0.05)
    assert current_lrs(opt) == [0.05, 0.05]
    set_lr(opt, [0.01, 0.02])
    assert current_lrs(opt) == [0.01, 0.02]
    scale_lr(opt, 0.5)
    assert current_lrs(opt) == pytest.approx([0.005, 0.01])


def test_set_lr_is_what_the_optimizer_applies():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([p], lr=1.0)
    set_lr(opt, 0.25)
    p.grad = torch.tensor([2.0])
    opt.step()
    assert p.item() == pytest.approx(1.0 - 0.25 * 2.0)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_set_lr_rejects_bad_values(bad):
    opt = _optimizer()
    with pytest.raises(ValueError, match=re.escape(f"lr must be a finite number >= 0, got {bad}. "
                                                   "Pass a value such as 0.1 or 1e-3.")):
        set_lr(opt, bad)
    assert current_lrs(opt) == [0.1, 0.1]


def test_set_lr_rejects_wrong_group_count():
    opt = _optimizer(groups=2)
    with pytest.raises(ValueError, match=re.escape("Got 3 learning rates for 2 param groups. Pass one "
                                                   "number for all groups or a list of exactly 2.")):
        set_lr(opt, [0.1, 0.2, 0.3])
    assert current_lrs(opt) == [0.1, 0.1]


def test_scale_lr_rejects_negative_factor():
    with pytest.raises(ValueError, match=re.escape("factor must be a finite number >= 0, got -2.0.")):
        scale_lr(_optimizer(), -2)


# --- set_lr / scale_lr refuse what is not a number, and what is not an optimizer -----------------------

NUMBER = "must be a number such as 0.1 or 1e-3, got "


@pytest.mark.parametrize("bad, message", [
    ("15", NUMBER + "str (a string: write the number, e.g. 0.015, not '0.015')."),
    (torch.tensor(0.1), NUMBER + "Tensor (a tensor: pass float(t))."),
    (None, NUMBER + "NoneType."),
    (True, NUMBER + "bool."),
    (["0.1", "0.2"], NUMBER + "str (a string"),
])
def test_set_lr_and_scale_lr_refuse_non_numbers(bad, message):
    opt = _optimizer()
    with pytest.raises(TypeError, match=re.escape("lr " + message)):
        set_lr(opt, bad)
    if not isinstance(bad, list):
        with pytest.raises(TypeError, match=re.escape("factor " + message)):
            scale_lr(opt, bad)
    assert current_lrs(opt) == [0.1, 0.1]  # "15" did not become 15.0, nor [1.0, 5.0]


def test_a_string_is_not_a_list_of_learning_rates():
    opt = _optimizer(groups=2)
    with pytest.raises(TypeError, match=re.escape("lr " + NUMBER + "str")):
        set_lr(opt, "15")  # two groups, two characters: must not become [1.0, 5.0]
    assert current_lrs(opt) == [0.1, 0.1]


@pytest.mark.parametrize("make", [lambda: torch.nn.Linear(2, 2),
                                  lambda: S.StepLR(_optimizer(), step_size=1)], ids=["model", "scheduler"])
def test_lr_helpers_refuse_a_model_or_a_scheduler(make):
    obj = make()
    name = type(obj).__name__
    message = (f"Expected a torch.optim optimizer, got {name}. For a scheduler use scheduler.get_last_lr(), "
               "or pass scheduler.optimizer.")
    for call in (lambda: current_lrs(obj), lambda: set_lr(obj, 0.1), lambda: scale_lr(obj, 0.5)):
        with pytest.raises(TypeError, match=re.escape(message)):
            call()


# --- preview_schedule refuses a factory that ignores its argument, and undoes what it did ---------------

def _snapshot(opt):
    """Everything a scheduler's constructor could change on an optimizer, as plain values."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return groups, [[id(p) for p in g["params"]] for g in opt.param_groups], set(vars(opt)), opt.state_dict()


def _real_optimizer():
    model = torch.nn.Linear(2, 2)
    return torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.3}], lr=0.1,
                           momentum=0.8)


TRAINING_OPTIMIZER = None  # a notebook's module-level optimizer (set by the test)
IGNORING = {  # name -> factory(optimizer) building the scheduler on `optimizer`, never on its argument
    "StepLR": lambda optimizer: (lambda opt: S.StepLR(optimizer, step_size=1, gamma=0.1)),
    "LinearLR": lambda optimizer: (lambda opt: S.LinearLR(optimizer, start_factor=0.1, total_iters=5)),
    "OneCycleLR": lambda optimizer: (lambda opt: S.OneCycleLR(optimizer, max_lr=1.0, total_steps=10)),
}


@pytest.mark.parametrize("where", ["closure", "module global"])
@pytest.mark.parametrize("name", sorted(IGNORING))
def test_preview_refuses_a_factory_that_ignores_its_argument(name, where):
    global TRAINING_OPTIMIZER
    TRAINING_OPTIMIZER = _real_optimizer()  # fresh for every case: the end of this test steps it
    if where == "closure":
        optimizer = _real_optimizer()
        factory = IGNORING[name](optimizer)
    else:
        optimizer = TRAINING_OPTIMIZER
        factory = {"StepLR": lambda opt: S.StepLR(TRAINING_OPTIMIZER, step_size=1, gamma=0.1),
                   "LinearLR": lambda opt: S.LinearLR(TRAINING_OPTIMIZER, start_factor=0.1, total_iters=5),
                   "OneCycleLR": lambda opt: S.OneCycleLR(TRAINING_OPTIMIZER, max_lr=1.0, total_steps=10),
                   }[name]
    before = _snapshot(optimizer)
    step = optimizer.step
    with pytest.raises(ValueError, match=re.escape(
            f"make_scheduler ignored its argument and built {name} on another optimizer (your training "
            f"one?), which would decay its LR. Fix: use the argument, `lambda opt: {name}(opt, ...)`, not "
            f"`lambda opt: {name}(optimizer, ...)`.")) as info:
        preview_schedule(factory, 5)
    assert "could not be found" not in str(info.value)
    groups, params, attrs, state = _snapshot(optimizer)
    assert groups == before[0]  # no initial_lr / max_lr / base_momentum keys; lr and momentum as they were
    assert [g["lr"] for g in groups] == [0.1, 0.3] and [g["momentum"] for g in groups] == [0.8, 0.8]
    assert params == before[1] and state == before[3]
    assert attrs == before[2] and "step" not in vars(optimizer)  # no step() wrapper left behind
    assert optimizer.step == step and not hasattr(optimizer.step, "_wrapped_by_lr_sched")
    scheduler = S.StepLR(optimizer, step_size=1, gamma=0.5)  # and it still trains normally
    optimizer.step()
    scheduler.step()
    assert current_lrs(optimizer) == pytest.approx([0.05, 0.15])


def test_preview_refuses_an_unreachable_other_optimizer_and_says_so():
    holder = [_real_optimizer()]  # reachable only through a list: cannot be undone
    with pytest.raises(ValueError, match=re.escape("That optimizer could not be found to undo the change: "
                                                   "rebuild it and its scheduler.")):
        preview_schedule(lambda opt: S.StepLR(holder[0], step_size=1), 3)


def _returns_nothing(opt):
    S.StepLR(opt, step_size=1)  # no `return`


@pytest.mark.parametrize("factory, got", [(_returns_nothing, "NoneType"), (lambda opt: opt, "SGD"),
                                          (lambda opt: [S.StepLR(opt, 1)], "list")])
def test_preview_refuses_a_factory_that_returns_no_scheduler(factory, got):
    with pytest.raises(TypeError, match=re.escape(
            f"make_scheduler must return a torch.optim.lr_scheduler object, got {got}. Fix: `lambda "
            "optimizer: StepLR(optimizer, ...)` (a lambda returns its expression; a def needs `return`).")):
        preview_schedule(factory, 3)


def test_a_refused_factory_without_return_leaves_the_real_optimizer_as_it_was():
    optimizer = _real_optimizer()
    before = _snapshot(optimizer)

    def factory(opt):
        S.OneCycleLR(optimizer, max_lr=1.0, total_steps=10)  # the wrong optimizer, and no `return`

    with pytest.raises(TypeError, match="got NoneType"):
        preview_schedule(factory, 3)
    assert _snapshot(optimizer)[:3] == before[:3] and "step" not in vars(optimizer)


def test_preview_refuses_a_non_callable():
    with pytest.raises(TypeError, match=re.escape("make_scheduler must be callable, got int.")):
        preview_schedule(3, 5)
