"""A checkpoint restores everything: resuming equals never stopping, bit for bit; mismatches fail clearly."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S

import lrtools.checkpoint
from lrtools.checkpoint import load_checkpoint, save_checkpoint
from lrtools.training import History, fit
from lrtools.utils import seed_everything

EPOCHS = 4
SCHEDULES = {  # name -> (factory(optimizer, steps_per_epoch), step_every)
    "StepLR": (lambda opt, n: S.StepLR(opt, step_size=1, gamma=0.5), "epoch"),
    "OneCycleLR": (lambda opt, n: S.OneCycleLR(opt, max_lr=0.1, total_steps=EPOCHS * n), "step"),
}



def _build(schedule, steps_per_epoch, seed):
    """A small net with dropout (so the RNG state matters), its optimizer and scheduler."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    make, step_every = SCHEDULES[schedule]
    return model, optimizer, make(optimizer, steps_per_epoch), step_every


def _assert_tensors_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _uninterrupted(schedule, train, val):
    seed_everything(0)
    model, optimizer, scheduler, step_every = _build(schedule, len(train), seed=0)
    history = fit(model, optimizer, train, epochs=EPOCHS, scheduler=scheduler, step_every=step_every,
                  val_loader=val)
    return model, optimizer, history


def _stopped_and_resumed(schedule, train, val, path):
    seed_everything(0)
    model, optimizer, scheduler, step_every = _build(schedule, len(train), seed=0)

    def save_then_stop_after_2(epochs_done, history):
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, epoch=epochs_done,
                        history=history)
        if epochs_done == 2:
            raise KeyboardInterrupt  # like Ctrl-C, or a lost machine

    part = fit(model, optimizer, train, epochs=EPOCHS, scheduler=scheduler, step_every=step_every,
               val_loader=val, on_epoch_end=save_then_stop_after_2)
    assert part.interrupted and part.epochs == 2
    model, optimizer, scheduler, step_every = _build(schedule, len(train), seed=1)  # fresh objects
    torch.rand(1000)  # and a different global RNG state
    state = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    assert state["epoch"] == 2 and state["history"].epochs == 2
    history = fit(model, optimizer, train, epochs=EPOCHS, scheduler=scheduler, step_every=step_every,
                  val_loader=val, start_epoch=state["epoch"], history=state["history"])
    return model, optimizer, history


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_resume_equals_an_uninterrupted_run(small_loaders, tmp_path, schedule):
    train, val, _ = small_loaders
    model_a, opt_a, full = _uninterrupted(schedule, train, val)
    model_b, opt_b, resumed = _stopped_and_resumed(schedule, train, val, tmp_path / "run.pt")
    assert len(full.step_lr) == EPOCHS * len(train)
    assert resumed.step_lr == full.step_lr and resumed.epoch_lr == full.epoch_lr
    assert len(set(full.lrs)) > 2  # the schedule really moved the LR
    assert resumed.step_loss == full.step_loss
    assert resumed.train_loss == full.train_loss and resumed.val_loss == full.val_loss
    assert resumed.val_acc == full.val_acc and not resumed.interrupted
    _assert_tensors_equal(model_b.state_dict(), model_a.state_dict())
    for state_a, state_b in zip(opt_a.state_dict()["state"].values(), opt_b.state_dict()["state"].values()):
        _assert_tensors_equal(state_b, state_a)


def test_without_the_rng_state_dropout_would_differ(small_loaders, tmp_path, monkeypatch):
    """Proves the resume test is sensitive: skipping the RNG restore breaks equality."""
    train, val, _ = small_loaders
    model_a, _, full = _uninterrupted("StepLR", train, val)
    monkeypatch.setattr(lrtools.checkpoint, "_set_rng_state", lambda state: None)
    model_b, _, resumed = _stopped_and_resumed("StepLR", train, val, tmp_path / "run.pt")
    n = 2 * len(train)
    assert resumed.step_loss[:n] == full.step_loss[:n] and resumed.step_loss[n:] != full.step_loss[n:]
    assert not torch.equal(model_b[1].weight, model_a[1].weight)


def _setup(scheduler_class=S.StepLR):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, scheduler_class(optimizer, 1) if scheduler_class else None


def test_round_trip_of_history_extras_and_rng(tmp_path):
    model, optimizer, scheduler = _setup()
    history = History(steps_per_epoch=2, step_lr=[[0.1], [0.1]], step_loss=[2.3, 2.1], epoch_lr=[[0.1]],
                      train_loss=[2.2], train_acc=[0.1], val_loss=[2.0], val_acc=[0.2], seconds=[1.5])
    path = save_checkpoint(tmp_path / "sub" / "run.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                           epoch=1, history=history, note="first try", best={"val_acc": 0.2},
                           mask=torch.tensor([1, 0]))
    assert path == tmp_path / "sub" / "run.pt" and sorted(p.name for p in path.parent.iterdir()) == ["run.pt"]
    after_save = torch.rand(3), random.random(), np.random.rand()
    state = load_checkpoint(path, model=_setup()[0], optimizer=_setup()[1], scheduler=_setup()[2],
                            map_location="cpu")
    assert sorted(state) == ["best", "epoch", "history", "mask", "note"]
    assert state["history"] == history and isinstance(state["history"], History)
    assert state["note"] == "first try" and state["best"] == {"val_acc": 0.2}
    assert torch.equal(state["mask"], torch.tensor([1, 0]))
    after_load = torch.rand(3), random.random(), np.random.rand()
    assert torch.equal(after_load[0], after_save[0]) and after_load[1:] == after_save[1:]


def test_loading_restores_the_lr_into_fresh_objects(tmp_path):
    model, optimizer, scheduler = _setup(lambda opt, _: S.StepLR(opt, 1, gamma=0.5))
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, scheduler=scheduler, epoch=3)
    fresh_model, fresh_opt, fresh_sched = _setup(lambda opt, _: S.StepLR(opt, 1, gamma=0.5))
    state = load_checkpoint(tmp_path / "run.pt", model=fresh_model, optimizer=fresh_opt,
                            scheduler=fresh_sched)
    assert state == {"epoch": 3, "history": None}
    assert fresh_opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 3 == fresh_sched.get_last_lr()[0]
    _assert_tensors_equal(fresh_model.state_dict(), model.state_dict())
    fresh_sched.step()
    assert fresh_opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 4


def test_another_optimizer_type(tmp_path):
    model, optimizer, _ = _setup(None)
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, epoch=0)
    with pytest.raises(TypeError, match=re.escape(
            "The checkpoint was saved with optimizer SGD, but optimizer=Adam was passed. Fix: build the "
            "optimizer as in the saved run (SGD(model.parameters(), ...)) and load into it.")):
        load_checkpoint(tmp_path / "run.pt", model=model, optimizer=torch.optim.Adam(model.parameters()))


def test_scheduler_missing_or_unexpected_or_of_another_type(tmp_path):
    model, optimizer, scheduler = _setup()
    save_checkpoint(tmp_path / "with.pt", model=model, optimizer=optimizer, scheduler=scheduler, epoch=0)
    save_checkpoint(tmp_path / "without.pt", model=model, optimizer=optimizer, epoch=0)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint was saved with scheduler StepLR, but scheduler=None was passed, so the LR "
            "schedule would be lost. Fix: build the same StepLR on the optimizer and pass it as "
            "scheduler=.")):
        load_checkpoint(tmp_path / "with.pt", model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint was saved without a scheduler, but scheduler=StepLR was passed, which would "
            "restart its schedule. Fix: pass scheduler=None.")):
        load_checkpoint(tmp_path / "without.pt", model=model, optimizer=optimizer, scheduler=scheduler)
    with pytest.raises(TypeError, match=re.escape(
            "The checkpoint was saved with scheduler StepLR, but scheduler=CosineAnnealingLR was passed. "
            "Fix: build the same StepLR on the optimizer, as in the saved run.")):
        load_checkpoint(tmp_path / "with.pt", model=model, optimizer=optimizer,
                        scheduler=S.CosineAnnealingLR(optimizer, 10))


def test_epoch_must_match_the_history(tmp_path):
    model, optimizer, _ = _setup(None)
    with pytest.raises(ValueError, match=re.escape(
            "epoch=2 but the history has 1 finished epochs. `epoch` counts finished epochs (the start_epoch "
            "to resume with): pass epoch=history.epochs (1).")):
        save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, epoch=2,
                        history=History(train_loss=[1.0]))
    assert not (tmp_path / "run.pt").exists()


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path):
    model, optimizer, _ = _setup(None)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'weights.pt'} is not an lrtools checkpoint. Fix: load a file written by "
            "lrtools.save_checkpoint (plain state_dicts load with torch.load).")):
        load_checkpoint(tmp_path / "weights.pt", model=model, optimizer=optimizer)
