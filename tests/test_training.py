"""fit() records exactly the LR the scheduler produced; bad input fails clearly."""

from __future__ import annotations

import copy
import inspect
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

from lrtools import (
    DivergenceError,
    History,
    LRWarning,
    TensorLoader,
    evaluate,
    fit,
    mnist_loaders,
    preview_schedule,
    seed_everything,
    watch,
)
from lrtools.training import resolve_device


def _sgd(model, lr=0.05):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_per_step_schedule_is_recorded_exactly(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    epochs, steps = 2, 2 * len(train)
    make = lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=steps)  # noqa: E731
    opt = _sgd(tiny_model)
    history = fit(tiny_model, opt, train, epochs=epochs, scheduler=make(opt), step_every="step",
                  val_loader=val)
    assert len(history.lrs) == steps == len(history.step_loss)
    assert history.lrs == pytest.approx(preview_schedule(make, steps, lr=0.05), rel=1e-12)


def test_per_epoch_schedule_is_recorded_exactly(quick_loaders, tiny_model):
    train, _, _ = quick_loaders
    make = lambda o: S.StepLR(o, step_size=1, gamma=0.5)  # noqa: E731
    opt = _sgd(tiny_model, lr=0.08)
    history = fit(tiny_model, opt, train, epochs=3, scheduler=make(opt))
    per_epoch = preview_schedule(make, 3, lr=0.08)
    assert per_epoch == pytest.approx([0.08, 0.04, 0.02])
    assert history.lrs == pytest.approx([lr for lr in per_epoch for _ in range(len(train))])
    assert [row[0] for row in history.epoch_lr] == pytest.approx(per_epoch)


def test_plateau_reductions_are_recorded(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    # threshold=0.5 (rel): only a 50% drop in val loss counts as progress, so it must reduce.
    make = lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.1, patience=0, threshold=0.5)  # noqa: E731
    opt = _sgd(tiny_model)
    history = fit(tiny_model, opt, train, epochs=4, scheduler=make(opt), val_loader=val)
    expected = preview_schedule(make, 4, lr=0.05, metrics=history.val_loss)
    assert [row[0] for row in history.epoch_lr] == pytest.approx(expected)
    assert expected[-1] < expected[0], "no reduction happened: the test would prove nothing"


def test_plateau_on_accuracy_uses_mode_max(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    opt = _sgd(tiny_model)
    sched = S.ReduceLROnPlateau(opt, mode="max", patience=0, threshold=0.5)
    history = fit(tiny_model, opt, train, epochs=3, scheduler=sched, val_loader=val,
                  plateau_metric="val_acc")
    expected = preview_schedule(lambda o: S.ReduceLROnPlateau(o, mode="max", patience=0, threshold=0.5),
                                3, lr=0.05, metrics=history.val_acc)
    assert [row[0] for row in history.epoch_lr] == pytest.approx(expected)


def test_per_group_lrs_are_recorded(quick_loaders):
    train, _, _ = quick_loaders
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 10))
    opt = torch.optim.SGD([{"params": model[1].parameters(), "lr": 0.01},
                           {"params": model[3].parameters()}], lr=0.1)
    history = fit(model, opt, train, epochs=2, scheduler=S.StepLR(opt, 1, 0.5))
    assert history.step_lr[0] == [0.01, 0.1]
    assert history.step_lr[-1] == pytest.approx([0.005, 0.05])


def _uneven_loader():
    """11 examples in batches of 8 and 3: size weighting matters."""
    torch.manual_seed(3)
    data = torch.utils.data.TensorDataset(torch.randn(11, 1, 28, 28), torch.randint(0, 10, (11,)))
    return torch.utils.data.DataLoader(data, batch_size=8)


def test_train_loss_is_the_size_weighted_mean_of_uneven_batches(tiny_model):
    loader = _uneven_loader()
    history = fit(tiny_model, _sgd(tiny_model), loader, epochs=1)
    first, last = history.step_loss
    assert history.train_loss[0] == pytest.approx((8 * first + 3 * last) / 11, rel=1e-12)
    assert history.train_loss[0] != pytest.approx((first + last) / 2)  # the unweighted mean differs


def test_evaluate_weights_batches_by_size(tiny_model):
    loader = _uneven_loader()
    (x0, y0), (x1, y1) = list(loader)
    with torch.no_grad():
        want = (F.cross_entropy(tiny_model(x0), y0) * 8 + F.cross_entropy(tiny_model(x1), y1) * 3) / 11
    loss, _ = evaluate(tiny_model, loader)
    assert loss == pytest.approx(want.item(), rel=1e-6)


def test_validation_numbers_are_evaluate_on_the_final_weights(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    history = fit(tiny_model, _sgd(tiny_model), train, epochs=2, val_loader=val)
    assert (history.val_loss[-1], history.val_acc[-1]) == evaluate(tiny_model, val)
    assert history.epochs == 2 and history.steps_per_epoch == len(train)


def test_nn_crossentropyloss_works_as_loss_fn(small_loaders, tiny_model):
    train, val, _ = small_loaders
    history = fit(tiny_model, _sgd(tiny_model), train, epochs=1, val_loader=val,
                  loss_fn=torch.nn.CrossEntropyLoss())
    assert history.val_loss[0] == pytest.approx(evaluate(tiny_model, val)[0])


def test_same_seed_same_history(mnist_root):
    def run():
        seed_everything(0)
        train, val, _ = mnist_loaders(64, root=mnist_root, device="cpu", quick=True, download=False)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return fit(model, opt, train, epochs=2, scheduler=S.StepLR(opt, 1, 0.5), val_loader=val)

    a, b = run(), run()
    assert a.step_loss == b.step_loss and a.val_loss == b.val_loss and a.step_lr == b.step_lr


class _ModeSpy(torch.nn.Module):
    """A linear model that remembers whether it ran in training mode."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(small_loaders, training):
    _, val, _ = small_loaders
    model = _ModeSpy().train(training)
    evaluate(model, val)
    assert model.modes == [False] * len(val)  # every batch in eval mode
    assert model.training is training  # and the caller's mode is back


def test_fit_accepts_a_torch_dataloader(tiny_model):
    data = torch.utils.data.TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    history = fit(tiny_model, _sgd(tiny_model), loader, epochs=1)
    assert len(history.step_loss) == 4


def test_divergence_names_step_and_lr(quick_loaders, tiny_model):
    train, _, _ = quick_loaders
    calls = []

    def nan_at_step_3(logits, y):
        calls.append(1)
        loss = F.cross_entropy(logits, y)
        return loss * float("nan") if len(calls) == 4 else loss

    reference = copy.deepcopy(tiny_model)
    with pytest.raises(DivergenceError, match=re.escape(
            "Training diverged: the loss became nan at step 3 (epoch 0) with lr=[0.05]. The learning "
            "rate is too large for this model")) as info:
        fit(tiny_model, _sgd(tiny_model), train, epochs=2, loss_fn=nan_at_step_3)
    assert isinstance(info.value, FloatingPointError)
    clean = fit(reference, _sgd(reference), train, epochs=1)
    recorded = info.value.history.step_loss
    assert recorded[:3] == clean.step_loss[:3] and math.isnan(recorded[3])  # the steps before, as they were
    assert info.value.history.epochs == 0


def test_keyboard_interrupt_returns_history(quick_loaders, tiny_model):
    train, _, _ = quick_loaders
    calls = []

    def interrupt_at_step_5(logits, y):
        calls.append(1)
        if len(calls) == len(train) + 6:
            raise KeyboardInterrupt
        return F.cross_entropy(logits, y)

    history = fit(tiny_model, _sgd(tiny_model), train, epochs=3, loss_fn=interrupt_at_step_5)
    assert history.interrupted and history.epochs == 1
    assert len(history.step_loss) == len(history.step_lr) == len(train) + 5
    assert len(history.epoch_lr) == 1
    assert history.table().endswith(f"(interrupted in epoch 1 after 5 of {len(train)} steps)")


@pytest.mark.parametrize("kwargs, message", [
    ({"step_every": "batch"}, "step_every must be 'epoch' or 'step', got 'batch'."),
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0."),
])
def test_bad_arguments(quick_loaders, tiny_model, kwargs, message):
    train, _, _ = quick_loaders
    args = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(tiny_model, _sgd(tiny_model), train, **args)


def test_plateau_without_val_loader(quick_loaders, tiny_model):
    opt = _sgd(tiny_model)
    with pytest.raises(ValueError, match=re.escape(
            "ReduceLROnPlateau steps on a validation metric, but val_loader is None. Fix: pass "
            "val_loader= (a split of the training data, never the test set).")):
        fit(tiny_model, opt, quick_loaders[0], epochs=1, scheduler=S.ReduceLROnPlateau(opt))


def test_plateau_mode_must_match_metric(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    opt = _sgd(tiny_model)
    with pytest.raises(ValueError, match=re.escape(
            "ReduceLROnPlateau(mode='min') cannot watch plateau_metric='val_acc', which should go up. "
            "Fix: use mode='max', or plateau_metric='val_loss'.")):
        fit(tiny_model, opt, train, epochs=1, scheduler=S.ReduceLROnPlateau(opt), val_loader=val,
            plateau_metric="val_acc")


def test_plateau_cannot_step_per_step(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    opt = _sgd(tiny_model)
    with pytest.raises(ValueError, match=re.escape("ReduceLROnPlateau must step once per epoch")):
        fit(tiny_model, opt, train, epochs=1, scheduler=S.ReduceLROnPlateau(opt), val_loader=val,
            step_every="step")


def test_scheduler_of_another_optimizer(quick_loaders, tiny_model):
    other = _sgd(tiny_model)
    with pytest.raises(ValueError, match=re.escape(
            "The scheduler is attached to a different optimizer than the one passed to fit()")):
        fit(tiny_model, _sgd(tiny_model), quick_loaders[0], epochs=1, scheduler=S.StepLR(other, 1))


def test_history_from_scratch_is_empty():
    h = History()
    assert h.lrs == [] and h.epochs == 0 and h.rows() == []


# --- the API: twelve parameters, continuation through the history -----------------------------------------

def test_fit_has_twelve_parameters():
    assert list(inspect.signature(fit).parameters) == [
        "model", "optimizer", "train_loader", "epochs", "scheduler", "step_every", "val_loader",
        "plateau_metric", "loss_fn", "history", "on_epoch_end", "precision"]


def test_device_comes_from_the_loader_else_the_model():
    class OnMeta:
        device = torch.device("meta")

    model = torch.nn.Linear(2, 1)
    assert resolve_device(model, OnMeta()) == torch.device("meta")
    assert resolve_device(model, [1, 2]) == torch.device("cpu")
    assert resolve_device(model.to("meta")) == torch.device("meta")


class _EpochLoader:
    """Two fixed batches; remembers every set_epoch call."""

    def __init__(self):
        torch.manual_seed(1)
        self.batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))) for _ in range(2)]
        self.epochs_set = []

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch):
        self.epochs_set.append(epoch)


def test_history_continues_to_the_total_and_sets_the_loader_epoch(tiny_model):
    loader = _EpochLoader()
    opt = _sgd(tiny_model, lr=0.08)
    sched = S.StepLR(opt, 1, 0.5)
    first = fit(tiny_model, opt, loader, epochs=2, scheduler=sched)
    history = fit(tiny_model, opt, loader, epochs=4, scheduler=sched, history=first)
    assert loader.epochs_set == [0, 1, 2, 3]
    assert history is first and history.epochs == 4 and len(history.step_lr) == 4 * len(loader)
    assert [row[0] for row in history.epoch_lr] == pytest.approx([0.08, 0.04, 0.02, 0.01])


def test_nothing_left_to_train(tiny_model):
    loader = _EpochLoader()
    done = fit(tiny_model, _sgd(tiny_model), loader, epochs=2)
    with pytest.raises(ValueError, match=re.escape(
            "The history already holds 2 finished epochs and epochs=2 is the run's total, so nothing is left "
            "to train. Fix: pass a larger total, e.g. epochs=7 to train 5 more.")):
        fit(tiny_model, _sgd(tiny_model), loader, epochs=2, history=done)


def test_on_epoch_end_sees_finished_epochs_after_the_scheduler_step(tiny_model):
    loader, calls = _EpochLoader(), []
    opt = _sgd(tiny_model, lr=0.08)
    hook = lambda done, h: calls.append((done, h.epochs, h, opt.param_groups[0]["lr"]))  # noqa: E731
    history = fit(tiny_model, opt, loader, epochs=3, scheduler=S.StepLR(opt, 1, 0.5), on_epoch_end=hook)
    assert [c[:2] for c in calls] == [(1, 1), (2, 2), (3, 3)]
    assert all(c[2] is history for c in calls)
    assert [c[3] for c in calls] == pytest.approx([0.04, 0.02, 0.01])


def test_same_loader_gives_the_same_order_to_every_run(quick_loaders):
    train, _, _ = quick_loaders

    def run():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        return fit(model, _sgd(model), train, epochs=1).step_loss

    first = run()
    assert run() == first  # fit sets the loader to epoch 0, whatever ran before


def test_history_must_match_steps_per_epoch(tiny_model):
    old = fit(tiny_model, _sgd(tiny_model), _EpochLoader(), epochs=1)
    data = torch.utils.data.TensorDataset(torch.randn(24, 1, 28, 28), torch.randint(0, 10, (24,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    with pytest.raises(ValueError, match=re.escape(
            "The history has 2 steps per epoch but train_loader has 3. Fix: continue with the same training "
            "loader (same data, same batch size).")):
        fit(tiny_model, _sgd(tiny_model), loader, epochs=2, history=old)


def test_fit_records_what_an_outer_watch_records(small_loaders, tiny_model):
    train, _, _ = small_loaders
    opt = _sgd(tiny_model)
    sched = S.OneCycleLR(opt, max_lr=0.1, total_steps=2 * len(train))
    with watch(opt, sched, warn=False) as log:
        history = fit(tiny_model, opt, train, epochs=2, scheduler=sched, step_every="step")
    assert history.step_lr == log.lrs and log.findings == []


# --- exact continuation after Ctrl-C inside an epoch --------------------------------------------------------

SCHEDULES = {
    "OneCycleLR per step": (lambda o, total: S.OneCycleLR(o, max_lr=0.1, total_steps=total), "step"),
    "StepLR per epoch": (lambda o, total: S.StepLR(o, step_size=1, gamma=0.5), "epoch"),
}


def _dropout_run(train, val, schedule, interrupt_at=None):
    make, step_every = SCHEDULES[schedule]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.2), torch.nn.Linear(784, 10))
    opt = _sgd(model)
    sched = make(opt, 3 * len(train))
    history = None
    if interrupt_at is not None:
        count = [0]

        def stop(*_):
            count[0] += 1
            if count[0] == interrupt_at + 1:
                raise KeyboardInterrupt

        handle = opt.register_step_pre_hook(stop)
        history = fit(model, opt, train, epochs=3, scheduler=sched, step_every=step_every, val_loader=val)
        handle.remove()
        assert history.interrupted and history.steps == interrupt_at
    history = fit(model, opt, train, epochs=3, scheduler=sched, step_every=step_every, val_loader=val,
                  history=history)
    return model, history


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_continuing_after_ctrl_c_mid_epoch_is_exact(small_loaders, schedule):
    train, val, _ = small_loaders
    whole_model, whole = _dropout_run(train, val, schedule)
    cut_model, cut = _dropout_run(train, val, schedule, interrupt_at=len(train) + 3)  # inside epoch 1
    assert all(torch.equal(a, b) for a, b in zip(whole_model.state_dict().values(),
                                                 cut_model.state_dict().values()))
    assert cut.step_lr == whole.step_lr and cut.step_loss == whole.step_loss
    assert cut.train_loss == whole.train_loss and cut.val_loss == whole.val_loss
    assert not cut.interrupted and cut.epochs == 3


# --- guard rails: refused before any training ------------------------------------------------------------

def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _unchanged(model, before):
    return all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


@pytest.mark.parametrize("name", ["OneCycleLR", "CyclicLR"])
def test_a_per_step_schedule_stepped_per_epoch_is_refused(small_loaders, tiny_model, name):
    train, _, _ = small_loaders
    opt = _sgd(tiny_model)
    sched = (S.OneCycleLR(opt, max_lr=0.1, total_steps=2 * len(train)) if name == "OneCycleLR"
             else S.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=4))
    before = _weights(tiny_model)
    with pytest.raises(ValueError, match=re.escape(
            f"{name} counts optimizer updates (its cycle is measured in steps), but step_every='epoch' would "
            "step it once per epoch, so the LR would hardly move. Fix: pass step_every='step'.")):
        fit(tiny_model, opt, train, epochs=2, scheduler=sched)
    assert _unchanged(tiny_model, before)


def test_a_onecycle_shorter_than_the_run_is_refused_before_training(small_loaders, tiny_model):
    train, _, _ = small_loaders
    opt = _sgd(tiny_model)
    sched = S.OneCycleLR(opt, max_lr=0.1, total_steps=len(train))
    before = _weights(tiny_model)
    with pytest.raises(ValueError, match=re.escape(
            f"OneCycleLR(total_steps={len(train)}) is shorter than this run's {2 * len(train)} optimizer "
            f"updates; torch would raise after {len(train)} of them and the run would be lost. Fix: "
            f"total_steps=epochs * len(train_loader) = {2 * len(train)}.")):
        fit(tiny_model, opt, train, epochs=2, scheduler=sched, step_every="step")
    assert _unchanged(tiny_model, before)


def test_a_onecycle_longer_than_the_run_warns(small_loaders, tiny_model):
    train, _, _ = small_loaders
    opt = _sgd(tiny_model)
    sched = S.OneCycleLR(opt, max_lr=0.1, total_steps=3 * len(train))
    with pytest.warns(LRWarning, match=re.escape(
            f"OneCycleLR(total_steps={3 * len(train)}) is longer than this run's {len(train)} updates: the "
            "run ends before the cycle, so the LR never anneals to its final value.")):
        fit(tiny_model, opt, train, epochs=1, scheduler=sched, step_every="step")


def test_an_optimizer_of_another_model_is_refused(small_loaders, tiny_model):
    train, _, _ = small_loaders
    stale = _sgd(copy.deepcopy(tiny_model))  # the model cell was re-run after the optimizer cell
    with pytest.raises(ValueError, match=re.escape(
            "The optimizer holds none of this model's parameters, so training would change nothing and the "
            "loss would stay flat. This happens when the model cell is re-run after the optimizer cell.")):
        fit(tiny_model, stale, train, epochs=1)


def test_a_scheduler_stepped_behind_fits_back_is_refused(tiny_model):
    loader = _EpochLoader()
    opt = _sgd(tiny_model)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    with pytest.raises(ValueError, match=re.escape(
            "StepLR has been stepped 2 times but the history has 1 epochs: something else stepped it (an "
            "extra scheduler.step() in on_epoch_end, or a preview on the training scheduler)")):
        fit(tiny_model, opt, loader, epochs=3, scheduler=sched, on_epoch_end=lambda e, h: sched.step())


def test_a_fresh_scheduler_on_resume_is_refused(tiny_model):
    loader = _EpochLoader()
    opt = _sgd(tiny_model)
    done = fit(tiny_model, opt, loader, epochs=2, scheduler=S.StepLR(opt, step_size=1, gamma=0.5))
    fresh = S.StepLR(opt, step_size=1, gamma=0.5)
    before = _weights(tiny_model)
    with pytest.raises(ValueError, match=re.escape(
            "StepLR has been stepped 0 times but the history has 2 epochs: a fresh scheduler on resume "
            "restarts the schedule.")):
        fit(tiny_model, opt, loader, epochs=4, scheduler=fresh, history=done)
    assert _unchanged(tiny_model, before)


def test_empty_loaders_are_refused(small_loaders, tiny_model):
    train, val, _ = small_loaders
    empty = TensorLoader(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), 8)
    with pytest.raises(ValueError, match=re.escape("train_loader is empty (0 batches), so there is nothing "
                                                   "to train on.")):
        fit(tiny_model, _sgd(tiny_model), empty, epochs=1)
    opt = _sgd(tiny_model)
    with pytest.raises(ValueError, match=re.escape("val_loader is empty (0 batches), so there is nothing to "
                                                   "measure.")):
        fit(tiny_model, opt, train, epochs=1, val_loader=empty, scheduler=S.ReduceLROnPlateau(opt))
    with pytest.raises(ValueError, match=re.escape("the evaluation loader is empty (0 batches)")):
        evaluate(tiny_model, empty)


class _Batches(list):
    """A list of batches with a length, like a DataLoader."""


@pytest.mark.parametrize(("x", "y", "error", "message"), [
    (torch.zeros(4, 1, 28, 28), torch.zeros(4), TypeError, "The labels are torch.float32 of shape (4,); "
     "cross-entropy needs class indices of dtype int64, one per image. Fix: y.long() (and y.view(-1))."),
    (torch.zeros(4, 1, 28, 28), torch.zeros(4, 1, dtype=torch.long), TypeError,
     "The labels are torch.int64 of shape (4, 1)"),
    (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), TypeError,
     "The images are torch.uint8; the model needs floating point."),
    (torch.zeros(4, 28, 28), torch.zeros(4, dtype=torch.long), ValueError,
     "The images have shape (4, 28, 28): the channel dimension is missing (a conv net expects (batch, "
     "channels, height, width)). Fix: x.unsqueeze(1)."),
    (torch.zeros(4, 1, 28, 28), torch.tensor([0, 3, 12, 1]), ValueError,
     "The labels run from 0 to 12 but the model has 10 outputs (classes 0..9)."),
])
def test_a_bad_first_batch_is_refused_before_the_model_trains(x, y, error, message):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    model(torch.zeros(1, 1, 28, 28))
    before = _weights(model)
    with pytest.raises(error, match=re.escape(message)):
        fit(model, _sgd(model), _Batches([(x, y)]), epochs=1)
    assert _unchanged(model, before)


@pytest.mark.parametrize("epochs", [np.int64(2), 2])
def test_numpy_integers_are_epochs(tiny_model, epochs):
    assert fit(tiny_model, _sgd(tiny_model), _EpochLoader(), epochs=epochs).epochs == 2


@pytest.mark.parametrize("epochs", [0, 2.0, True, "2"])
def test_epochs_must_be_an_integer(tiny_model, epochs):
    with pytest.raises(ValueError, match=re.escape(f"epochs must be an integer >= 1, got {epochs!r}.")):
        fit(tiny_model, _sgd(tiny_model), _EpochLoader(), epochs=epochs)


def test_no_guard_fires_on_a_correct_run(small_loaders, tiny_model):
    train, val, _ = small_loaders
    opt = _sgd(tiny_model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(tiny_model, opt, train, epochs=2, val_loader=val, step_every="step",
            scheduler=S.OneCycleLR(opt, max_lr=0.1, total_steps=2 * len(train)))


# --- precision: exact fp32 by default, bf16 by name ---------------------------------------------------------

def _conv_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 10))


def _forward_dtypes(model):
    dtypes = []
    model.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    return dtypes


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32),
                                                  (None, torch.float32)])
def test_precision_sets_the_forward_dtype_and_keeps_fp32_weights(small_loaders, precision, dtype):
    train, _, _ = small_loaders
    model = _conv_net()
    dtypes = _forward_dtypes(model)
    kwargs = {} if precision is None else {"precision": precision}
    history = fit(model, _sgd(model), train, epochs=1, **kwargs)
    assert set(dtypes) == {dtype} and len(dtypes) == len(train)
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert history.lrs == [0.05] * len(train)


def test_bf16_fit_matches_a_hand_written_autocast_loop(small_loaders):
    train, _, _ = small_loaders
    model, reference = _conv_net(), _conv_net()
    opt, ref_opt = _sgd(model), _sgd(reference)
    fit(model, opt, train, epochs=1, precision="bf16")
    train.set_epoch(0)
    for x, y in train:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(reference(x), y)
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_a_channels_last_model_trains_like_the_default_layout(small_loaders):
    train, _, _ = small_loaders
    a, b = _conv_net(), _conv_net().to(memory_format=torch.channels_last)
    fit(a, _sgd(a), train, epochs=1)
    fit(b, _sgd(b), train, epochs=1)
    assert b[0].weight.stride() == (9, 1, 3, 1)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("precision", ["auto", "fp16", "bfloat16"])
def test_unknown_precisions_are_refused(small_loaders, tiny_model, precision):
    train, _, _ = small_loaders
    with pytest.raises(ValueError) as err:
        fit(tiny_model, _sgd(tiny_model), train, epochs=1, precision=precision)
    assert str(err.value) == (f"precision must be 'fp32' (exact, the default) or 'bf16' (bf16 autocast, an "
                              f"explicit opt-in for speed), got {precision!r}.")


def _tf32_switches():
    return [torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision,
            torch.backends.cuda.matmul.fp32_precision]


@pytest.mark.parametrize(("precision", "inside"), [("fp32", ["ieee"] * 3), ("bf16", None)])
def test_fp32_training_and_evaluation_run_without_tf32_and_restore_the_switches(small_loaders, precision,
                                                                                inside):
    """Forward and backward see IEEE fp32 switches (what a GPU then computes in), bf16 training
    leaves them alone, evaluation is always exact; afterwards they are what they were."""
    train, val, _ = small_loaders
    before = _tf32_switches()
    model = _conv_net()
    seen = {"forward": [], "backward": []}
    hook = model.register_forward_hook(lambda *_: seen["forward"].append(_tf32_switches()))
    model[0].weight.register_hook(lambda grad: seen["backward"].append(_tf32_switches()))
    fit(model, _sgd(model), train, epochs=1, precision=precision)
    want = inside or before
    assert len(seen["forward"]) == len(seen["backward"]) == len(train)
    assert all(s == want for s in seen["forward"] + seen["backward"]) and _tf32_switches() == before
    hook.remove()
    model.register_forward_hook(lambda *_: seen["forward"].append(_tf32_switches()))
    evaluate(model, val)
    assert seen["forward"][len(train):] == [["ieee"] * 3] * len(val) and _tf32_switches() == before


def test_exact_fp32_restores_the_switches_after_an_error():
    from lrtools.training import exact_fp32

    before = _tf32_switches()
    with pytest.raises(RuntimeError, match="boom"), exact_fp32():
        raise RuntimeError("boom")
    assert _tf32_switches() == before and before[0] == "tf32"  # PyTorch's default for cuDNN convs
