"""fit() records exactly the LR the scheduler produced; bad input fails clearly."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler as S

from lrtools import DivergenceError, History, evaluate, fit, mnist_loaders, preview_schedule, seed_everything


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


def test_history_epoch_numbers(quick_loaders, tiny_model):
    train, val, _ = quick_loaders
    history = fit(tiny_model, _sgd(tiny_model), train, epochs=2, val_loader=val)
    assert history.epochs == 2 and history.steps_per_epoch == len(train)
    assert history.val_loss[1] < history.val_loss[0] + 0.5
    assert 0.5 < history.val_acc[-1] <= 1.0 and all(s > 0 for s in history.seconds)
    # train_loss is the size-weighted mean of the step losses of that epoch
    n = len(train)
    sizes = [64] * n
    want = sum(v * s for v, s in zip(history.step_loss[n:], sizes)) / sum(sizes)
    assert history.train_loss[1] == pytest.approx(want)
    assert history.table().splitlines()[0].split() == ["epoch", "lr", "train_loss", "train_acc",
                                                       "val_loss", "val_acc", "seconds"]
    assert [r["epoch"] for r in history.rows()] == [1, 2]


def test_same_seed_same_history(mnist_root):
    def run():
        seed_everything(0)
        train, val, _ = mnist_loaders(64, root=mnist_root, device="cpu", quick=True, download=False)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return fit(model, opt, train, epochs=2, scheduler=S.StepLR(opt, 1, 0.5), val_loader=val)

    a, b = run(), run()
    assert a.step_loss == b.step_loss and a.val_loss == b.val_loss and a.step_lr == b.step_lr


def test_evaluate_restores_mode(quick_loaders, tiny_model):
    _, val, _ = quick_loaders
    tiny_model.train()
    loss, acc = evaluate(tiny_model, val)
    assert tiny_model.training and loss > 0 and 0 <= acc <= 1


def test_fit_accepts_a_torch_dataloader(tiny_model):
    data = torch.utils.data.TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    history = fit(tiny_model, _sgd(tiny_model), loader, epochs=1)
    assert len(history.step_loss) == 4


def test_divergence_names_step_and_lr(quick_loaders, tiny_model):
    train, _, _ = quick_loaders
    calls = []

    def nan_at_step_3(logits, y, reduction="mean"):
        calls.append(1)
        loss = F.cross_entropy(logits, y, reduction=reduction)
        return loss * float("nan") if len(calls) == 4 else loss

    with pytest.raises(DivergenceError, match=re.escape(
            "Training diverged: the loss became nan at step 3 (epoch 0) with lr=[0.05]. The learning "
            "rate is too large for this model")) as info:
        fit(tiny_model, _sgd(tiny_model), train, epochs=2, loss_fn=nan_at_step_3)
    assert isinstance(info.value, FloatingPointError)
    assert info.value.history.step_loss[:3] == pytest.approx(info.value.history.step_loss[:3])
    assert info.value.history.epochs == 0


def test_keyboard_interrupt_returns_history(quick_loaders, tiny_model):
    train, _, _ = quick_loaders
    calls = []

    def interrupt_at_step_5(logits, y, reduction="mean"):
        calls.append(1)
        if len(calls) == len(train) + 6:
            raise KeyboardInterrupt
        return F.cross_entropy(logits, y, reduction=reduction)

    history = fit(tiny_model, _sgd(tiny_model), train, epochs=3, loss_fn=interrupt_at_step_5)
    assert history.interrupted and history.epochs == 1
    assert len(history.step_loss) == len(history.step_lr) == len(train) + 5
    assert len(history.epoch_lr) == 1 and "(interrupted)" in history.table()


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


# --- resuming: start_epoch, history, on_epoch_end, set_epoch ---------------------------------------------

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


def test_start_epoch_runs_the_remaining_epochs_and_sets_the_loader_epoch(tiny_model):
    loader = _EpochLoader()
    opt = _sgd(tiny_model, lr=0.08)
    sched = S.StepLR(opt, 1, 0.5)
    first = fit(tiny_model, opt, loader, epochs=2, scheduler=sched)
    history = fit(tiny_model, opt, loader, epochs=4, scheduler=sched, start_epoch=2, history=first)
    assert loader.epochs_set == [0, 1, 2, 3]
    assert history is first and history.epochs == 4 and len(history.step_lr) == 4 * len(loader)
    assert [row[0] for row in history.epoch_lr] == pytest.approx([0.08, 0.04, 0.02, 0.01])
    assert [r["epoch"] for r in history.rows()] == [1, 2, 3, 4]


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
    assert train.epoch == 1
    assert run() == first  # without set_epoch the second run would see the order of epoch 1


def test_continuing_an_interrupted_history_redoes_the_unfinished_epoch(tiny_model):
    loader, calls = _EpochLoader(), []

    def interrupt_at_step_3(logits, y, reduction="mean"):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return F.cross_entropy(logits, y, reduction=reduction)

    old = fit(tiny_model, _sgd(tiny_model), loader, epochs=3, loss_fn=interrupt_at_step_3)
    assert old.interrupted and old.epochs == 1 and len(old.step_loss) == 3
    history = fit(tiny_model, _sgd(tiny_model), loader, epochs=3, start_epoch=1, history=old)
    assert not history.interrupted and history.epochs == 3
    assert len(history.step_loss) == len(history.step_lr) == 3 * len(loader)
    assert loader.epochs_set == [0, 1, 1, 2]


@pytest.mark.parametrize("start_epoch", [-1, 3, 1.0])
def test_start_epoch_out_of_range(tiny_model, start_epoch):
    with pytest.raises(ValueError, match=re.escape(
            f"start_epoch must be an integer in [0, epochs) = [0, 3), got {start_epoch!r}. It counts "
            "finished epochs and epochs is the total: to resume after k of 10 epochs, pass start_epoch=k, "
            "epochs=10.")):
        fit(tiny_model, _sgd(tiny_model), _EpochLoader(), epochs=3, start_epoch=start_epoch)


def test_history_must_match_start_epoch(tiny_model):
    loader = _EpochLoader()
    old = fit(tiny_model, _sgd(tiny_model), loader, epochs=2)
    with pytest.raises(ValueError, match=re.escape(
            "The history has 2 finished epochs but start_epoch=1. Fix: pass start_epoch=history.epochs (2), "
            "with the history saved in the same checkpoint as the model.")):
        fit(tiny_model, _sgd(tiny_model), loader, epochs=3, start_epoch=1, history=old)
    assert old.epochs == 2  # untouched by the refused call


def test_history_must_match_steps_per_epoch(tiny_model):
    old = fit(tiny_model, _sgd(tiny_model), _EpochLoader(), epochs=1)
    data = torch.utils.data.TensorDataset(torch.randn(24, 1, 28, 28), torch.randint(0, 10, (24,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    with pytest.raises(ValueError, match=re.escape(
            "The history has 2 steps per epoch but train_loader has 3. Fix: resume with the same training "
            "loader (same data, same batch size).")):
        fit(tiny_model, _sgd(tiny_model), loader, epochs=2, start_epoch=1, history=old)


# ---------------------------------------------------------------- precision and memory format

def _conv_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 7 * 7, 10))


def _forward_dtypes(model):
    dtypes = []
    model.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    return dtypes


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp32", torch.float32),
                                                  ("auto", torch.float32)])
def test_precision_sets_the_forward_dtype_and_keeps_fp32_weights(small_loaders, precision, dtype):
    train, _, _ = small_loaders
    model = _conv_net()
    dtypes = _forward_dtypes(model)
    history = fit(model, _sgd(model), train, epochs=1, precision=precision)
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


@pytest.mark.parametrize(("channels_last", "expected"), [(True, True), (False, False), (None, False)])
def test_channels_last_changes_the_layout_not_the_values(small_loaders, channels_last, expected):
    train, _, _ = small_loaders
    model = _conv_net()
    weight = model[0].weight
    before = weight.detach().clone()
    fit(model, torch.optim.SGD(model.parameters(), lr=0.0), train, epochs=1, channels_last=channels_last)
    assert model[0].weight is weight  # the optimizer still holds the same parameter
    assert weight.stride() == ((9, 1, 3, 1) if expected else (9, 9, 3, 1))  # shape (4, 1, 3, 3)
    assert torch.equal(weight, before)


def test_channels_last_training_matches_the_default_layout(small_loaders):
    train, _, _ = small_loaders
    a, b = _conv_net(), _conv_net()
    fit(a, _sgd(a), train, epochs=1)
    fit(b, _sgd(b), train, epochs=1, channels_last=True)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.parameters(), b.parameters()))


def test_auto_is_the_fast_path_on_cuda_only(monkeypatch):
    import lrtools.training as training

    monkeypatch.setattr(training, "bf16_supported", lambda device: True)
    assert training._resolve_fast_path("auto", None, torch.device("cuda")) == (torch.bfloat16, True)
    assert training._resolve_fast_path("auto", None, torch.device("cpu")) == (None, False)
    assert training._resolve_fast_path("fp32", False, torch.device("cuda")) == (None, False)
    monkeypatch.setattr(training, "bf16_supported", lambda device: False)  # e.g. a V100
    assert training._resolve_fast_path("auto", None, torch.device("cuda")) == (None, True)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"precision": "fp16"}, "precision must be 'auto', 'fp32' or 'bf16', got 'fp16'. 'auto' uses bf16 "
                            "autocast on a CUDA GPU that supports it and exact fp32 elsewhere."),
    ({"channels_last": "yes"}, "channels_last must be True, False or None (auto: True on CUDA), got 'yes'."),
])
def test_bad_fast_path_arguments(small_loaders, tiny_model, kwargs, message):
    train, _, _ = small_loaders
    with pytest.raises(ValueError) as err:
        fit(tiny_model, _sgd(tiny_model), train, epochs=1, **kwargs)
    assert str(err.value) == message
