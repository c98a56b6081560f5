"""lrtools.watch: records the LR each update applies, finds LR mistakes, leaves the objects as they were."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

from lrtools import LRWarning, watch
from lrtools.watch import KINDS

EPOCHS, STEPS_PER_EPOCH = 4, 3
TOTAL = EPOCHS * STEPS_PER_EPOCH

# Every class in torch.optim.lr_scheduler, built as it is meant to be stepped: "step" (after every
# optimizer.step()) or "epoch" (after each epoch of STEPS_PER_EPOCH updates).
CANONICAL = {
    "LambdaLR": ("epoch", lambda o: S.LambdaLR(o, lambda e: 0.9**e)),
    "MultiplicativeLR": ("epoch", lambda o: S.MultiplicativeLR(o, lambda e: 0.95)),
    "StepLR": ("epoch", lambda o: S.StepLR(o, step_size=2, gamma=0.5)),
    "MultiStepLR": ("epoch", lambda o: S.MultiStepLR(o, milestones=[1, 3], gamma=0.1)),
    "ConstantLR": ("epoch", lambda o: S.ConstantLR(o, factor=0.5, total_iters=2)),
    "LinearLR": ("step", lambda o: S.LinearLR(o, start_factor=0.1, total_iters=4)),
    "ExponentialLR": ("epoch", lambda o: S.ExponentialLR(o, gamma=0.8)),
    "PolynomialLR": ("epoch", lambda o: S.PolynomialLR(o, total_iters=EPOCHS, power=2.0)),
    "CosineAnnealingLR": ("step", lambda o: S.CosineAnnealingLR(o, T_max=TOTAL)),
    "ChainedScheduler": ("epoch", lambda o: S.ChainedScheduler(
        [S.ConstantLR(o, factor=0.5, total_iters=2), S.ExponentialLR(o, gamma=0.9)])),
    "SequentialLR": ("step", lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=3), S.CosineAnnealingLR(o, T_max=TOTAL - 3)],
        milestones=[3])),
    "ReduceLROnPlateau": ("epoch", lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=0)),
    "CyclicLR": ("step", lambda o: S.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=3)),
    "OneCycleLR": ("step", lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=TOTAL)),
    "CosineAnnealingWarmRestarts": ("step", lambda o: S.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)),
}
OPTIMIZERS = {
    "SGD": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=0.05),
}


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def _update(model, optimizer, x=None, scale=1.0):
    x = torch.randn(8, 4) if x is None else x
    loss = F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)) * scale
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def _canonical_loop(model, optimizer, scheduler, unit):
    for _epoch in range(EPOCHS):
        for _ in range(STEPS_PER_EPOCH):
            _update(model, optimizer)
            if unit == "step":
                scheduler.step()
        if unit == "epoch":
            scheduler.step(1.0) if isinstance(scheduler, S.ReduceLROnPlateau) else scheduler.step()


def test_every_scheduler_class_is_covered():
    classes = {name for name, obj in vars(S).items() if isinstance(obj, type)
               and issubclass(obj, (S.LRScheduler, S.ReduceLROnPlateau)) and not name.startswith("_")
               and name != "LRScheduler"}
    assert classes == set(CANONICAL)


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_no_findings_for_the_canonical_loop(name, optimizer_name):
    model = _model()
    optimizer = OPTIMIZERS[optimizer_name](model.parameters())
    unit, make = CANONICAL[name]
    scheduler = make(optimizer)
    seen = []
    optimizer.register_step_pre_hook(lambda opt, *_: seen.append([g["lr"] for g in opt.param_groups]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither lrtools nor torch may warn
        with watch(optimizer, scheduler) as log:
            _canonical_loop(model, optimizer, scheduler, unit)
    assert log.findings == []
    assert log.lrs == seen and log.steps == TOTAL  # the LR every update really applied
    assert log.scheduler_steps == (TOTAL if unit == "step" else EPOCHS)


def _watched(make_scheduler=lambda o: S.StepLR(o, step_size=1, gamma=0.5), **kwargs):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, make_scheduler(optimizer)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own call-order warning, for these deliberate mistakes
        yield


def test_call_order():
    model, optimizer, scheduler = _watched()
    with _quiet(), watch(optimizer, scheduler, warn=False) as log:
        scheduler.step()
        _update(model, optimizer)
    assert [str(f) for f in log.findings] == [
        "[call order] at step 0: scheduler.step() ran before the first optimizer.step(), so the schedule's "
        "first LR was never used. Fix: call optimizer.step() first, then scheduler.step()."]
    assert log.lrs == [[0.05]]  # the first LR, 0.1, was skipped


def test_skipped_update_with_a_real_gradscaler_fed_an_inf():
    model, optimizer, scheduler = _watched(lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=4))
    scaler = torch.amp.GradScaler("cpu")
    x = torch.randn(8, 4)
    with _quiet(), watch(optimizer, scheduler, scaler, warn=False) as log:
        for step in range(4):
            loss = F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long))
            optimizer.zero_grad()
            scaler.scale(loss * (float("inf") if step == 1 else 1.0)).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
    assert log.steps == 3  # the inf step was skipped by the scaler
    assert [f.kind for f in log.findings] == ["skipped update"]
    assert log.findings[0].step == 1 and log.findings[0].message.startswith(
        "the GradScaler skipped optimizer.step() (inf/NaN gradients) but the scheduler stepped anyway")
    assert "step" not in scaler.__dict__


def test_skipped_update_from_gradient_accumulation():
    model, optimizer, scheduler = _watched(lambda o: S.LinearLR(o, start_factor=0.5, total_iters=8))
    with watch(optimizer, scheduler, warn=False) as log:
        for micro in range(8):
            if micro % 4 == 0:  # one update every 4 micro-batches...
                _update(model, optimizer)
            scheduler.step()  # ...but the scheduler steps on every micro-batch
    assert {f.kind for f in log.findings} == {"skipped update"}
    assert log.findings[0].message.startswith("the scheduler stepped 2 times without an optimizer update in "
                                              "between (gradient accumulation stepping it every micro-batch")


def test_units_a_onecycle_stepped_once_per_epoch():
    model, optimizer, scheduler = _watched(lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=TOTAL))
    with watch(optimizer, scheduler, warn=False) as log:
        for _epoch in range(2):
            for _ in range(STEPS_PER_EPOCH):
                _update(model, optimizer)
            scheduler.step()
    kinds = [f.kind for f in log.findings]
    assert kinds[0] == "units" and log.findings[0].step == STEPS_PER_EPOCH
    assert log.findings[0].message == (
        f"OneCycleLR counts optimizer updates, but it stepped once after {STEPS_PER_EPOCH} updates (once per "
        "epoch?). Fix: call scheduler.step() after every optimizer.step().")


def test_units_a_cycle_that_never_finished():
    model, optimizer, scheduler = _watched(lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=10))
    with watch(optimizer, scheduler, warn=False) as log:
        for _ in range(6):
            _update(model, optimizer)
            scheduler.step()
    assert [str(f) for f in log.findings] == [
        "[units] at step 6: the loop ended 3 update(s) before OneCycleLR's cycle (total_steps=10), so its "
        "annealing never finished. Fix: total_steps = the number of optimizer.step() calls of the whole run."]


def test_units_a_cycle_overrun():
    model, optimizer, scheduler = _watched(lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=2))
    with watch(optimizer, scheduler, warn=False) as log, pytest.raises(ValueError, match="Tried to step"):
        for _ in range(3):
            _update(model, optimizer)
            scheduler.step()
    assert log.findings[-1].message.startswith("OneCycleLR(total_steps=2) is stepped past its end")


@pytest.mark.parametrize(("make", "effect"), [
    (lambda o: S.StepLR(o, step_size=1, gamma=0.5),
     "multiplies the LR it finds, so it will compound your edit"),
    (lambda o: S.LambdaLR(o, lambda e: 0.5**e), "computes the LR from its own counter, so it will overwrite "
                                                "your edit at its next step"),
])
def test_manual_edit_names_compound_or_overwrite(make, effect):
    model, optimizer, scheduler = _watched(make)
    with watch(optimizer, scheduler, warn=False) as log:
        for epoch in range(3):
            _update(model, optimizer)
            if epoch == 1:
                optimizer.param_groups[0]["lr"] = 0.01
            scheduler.step()
    assert [f.kind for f in log.findings] == ["manual edit"]
    assert log.findings[0].step == 2 and effect in log.findings[0].message
    assert log.findings[0].message.startswith("param group 0's LR changed from 0.05 to 0.01 after update 2")


def test_unscheduled_group():
    model, optimizer, scheduler = _watched()
    extra = torch.nn.Linear(3, 3)
    with watch(optimizer, scheduler, warn=False) as log:
        _update(model, optimizer)
        scheduler.step()
        optimizer.add_param_group({"params": extra.parameters(), "lr": 0.2})
        _update(model, optimizer)
    assert [f.kind for f in log.findings] == ["unscheduled group"]
    assert log.findings[0].message.startswith("the optimizer has 2 param groups but the scheduler was built "
                                              "for 1: group 1 is not scheduled")


def test_resume_with_a_fresh_scheduler():
    model, optimizer, scheduler = _watched()
    for _ in range(3):
        _update(model, optimizer)
        scheduler.step()
    fresh = S.StepLR(optimizer, step_size=1, gamma=0.5)  # built after "loading" the optimizer
    with watch(optimizer, fresh, warn=False) as log:
        _update(model, optimizer)
        fresh.step()
    assert [f.kind for f in log.findings] == ["resume"]
    assert "a fresh scheduler after loading a checkpoint restarts the schedule" in log.findings[0].message


def test_each_kind_warns_once_with_lrwarning_and_warn_false_is_silent():
    model, optimizer, scheduler = _watched(lambda o: S.LambdaLR(o, lambda e: 1.0))
    with pytest.warns(LRWarning) as record, watch(optimizer, scheduler) as log:
        for _ in range(3):
            _update(model, optimizer)
            optimizer.param_groups[0]["lr"] *= 0.5  # a manual edit every step
    assert len(log.findings) == 2 and len([w for w in record if issubclass(w.category, LRWarning)]) == 1
    model, optimizer, scheduler = _watched(lambda o: S.LambdaLR(o, lambda e: 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with watch(optimizer, scheduler, warn=False) as quiet:
            _update(model, optimizer)
            optimizer.param_groups[0]["lr"] *= 0.5
            _update(model, optimizer)
    assert [f.kind for f in quiet.findings] == ["manual edit"]


def test_the_objects_are_left_as_they_were_and_a_second_watch_records_the_same():
    model, optimizer, scheduler = _watched()
    pre, post = dict(optimizer._optimizer_step_pre_hooks), dict(optimizer._optimizer_step_post_hooks)
    step_before = scheduler.__dict__.get("step", "absent")
    logs = []
    for _ in range(2):
        torch.manual_seed(1)
        model, optimizer, scheduler = _watched()
        with watch(optimizer, scheduler) as log:
            _canonical_loop(model, optimizer, scheduler, "epoch")
        logs.append(log)
        assert dict(optimizer._optimizer_step_pre_hooks) == pre
        assert dict(optimizer._optimizer_step_post_hooks) == post
        assert scheduler.__dict__.get("step", "absent") == step_before
        assert type(scheduler) is S.StepLR
    assert logs[0].lrs == logs[1].lrs and logs[0].findings == logs[1].findings == []


def test_a_watched_scheduler_can_be_saved(tmp_path):
    model, optimizer, scheduler = _watched()
    with watch(optimizer, scheduler) as log:
        _update(model, optimizer)
        scheduler.step()
        assert type(scheduler).__name__ == "StepLR" and isinstance(scheduler, S.StepLR)
        torch.save(scheduler.state_dict(), tmp_path / "sched.pt")
    assert torch.load(tmp_path / "sched.pt", weights_only=True)["last_epoch"] == 1 and log.steps == 1


def test_hooks_are_removed_after_an_error():
    model, optimizer, scheduler = _watched()
    with pytest.raises(RuntimeError), watch(optimizer, scheduler):
        raise RuntimeError("boom")
    assert not optimizer._optimizer_step_pre_hooks and "step" not in scheduler.__dict__


def test_plot_draws_the_applied_lr_from_zero():
    model, optimizer, scheduler = _watched()
    with watch(optimizer, scheduler) as log:
        _canonical_loop(model, optimizer, scheduler, "epoch")
    ax = log.plot()
    assert ax.get_ylim()[0] == 0 and ax.get_xlabel() == "optimizer step"
    assert list(ax.patches[0].get_data().values) == [lr[0] for lr in log.lrs]


def test_kinds_are_the_documented_ones():
    assert KINDS == ("call order", "skipped update", "units", "manual edit", "unscheduled group", "resume")
