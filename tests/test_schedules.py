"""preview_schedule against real schedulers stepped for real; manual LR helpers."""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

from lrtools import get_lr, preview_schedule, scale_lr, set_lr

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
    assert scheduler.last_epoch == 0 and get_lr(optimizer) == [0.1]


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


def test_get_set_scale_lr():
    opt = _optimizer()
    assert get_lr(opt) == [0.1, 0.1]
    set_lr(opt, 0.05)
    assert get_lr(opt) == [0.05, 0.05]
    set_lr(opt, [0.01, 0.02])
    assert get_lr(opt) == [0.01, 0.02]
    scale_lr(opt, 0.5)
    assert get_lr(opt) == pytest.approx([0.005, 0.01])


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
    assert get_lr(opt) == [0.1, 0.1]


def test_set_lr_rejects_wrong_group_count():
    opt = _optimizer(groups=2)
    with pytest.raises(ValueError, match=re.escape("Got 3 learning rates for 2 param groups. Pass one "
                                                   "number for all groups or a list of exactly 2.")):
        set_lr(opt, [0.1, 0.2, 0.3])
    assert get_lr(opt) == [0.1, 0.1]


def test_scale_lr_rejects_negative_factor():
    with pytest.raises(ValueError, match=re.escape("factor must be a finite number >= 0, got -2.0.")):
        scale_lr(_optimizer(), -2)
