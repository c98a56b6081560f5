"""A checkpoint restores everything: resuming equals never stopping, bit for bit; mismatches fail clearly,
and before anything is changed."""

from __future__ import annotations

import copy
import pathlib
import random
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S

import lrtools.checkpoint
from lrtools import History, fit, load_checkpoint, save_checkpoint
from lrtools.utils import rng_state, seed_everything

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


def _stopped_and_resumed(schedule, train, val, path, stop_after=2):
    """Saved from on_epoch_end (inside fit, which wraps scheduler.step), stopped, loaded, continued."""
    seed_everything(0)
    model, optimizer, scheduler, step_every = _build(schedule, len(train), seed=0)

    def save_then_stop(epochs_done, history):
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, history=history)
        if epochs_done == stop_after:
            raise KeyboardInterrupt  # like Ctrl-C, or a lost machine

    part = fit(model, optimizer, train, epochs=EPOCHS, scheduler=scheduler, step_every=step_every,
               val_loader=val, on_epoch_end=save_then_stop)
    assert part.interrupted and part.epochs == stop_after
    model, optimizer, scheduler, step_every = _build(schedule, len(train), seed=1)  # fresh objects
    torch.rand(1000)  # and a different global RNG state
    state = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    assert sorted(state) == ["history"] and state["history"].epochs == stop_after
    assert "step" not in vars(scheduler)  # fit's wrapper around scheduler.step was not saved, nor restored
    history = fit(model, optimizer, train, epochs=EPOCHS, scheduler=scheduler, step_every=step_every,
                  val_loader=val, history=state["history"])
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
    monkeypatch.setattr(lrtools.checkpoint, "set_rng_state", lambda state: None)
    model_b, _, resumed = _stopped_and_resumed("StepLR", train, val, tmp_path / "run.pt")
    n = 2 * len(train)
    assert resumed.step_loss[:n] == full.step_loss[:n] and resumed.step_loss[n:] != full.step_loss[n:]
    assert not torch.equal(model_b[1].weight, model_a[1].weight)


def _setup(scheduler_class=S.StepLR, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, scheduler_class(optimizer, 1) if scheduler_class else None


def _history():
    history = History(steps_per_epoch=2)
    history.record_step([0.1], 2.3)
    history.record_step([0.1], 2.1)
    history.record_epoch(train_loss=2.2, train_acc=0.1, val_loss=2.0, val_acc=0.2, seconds=1.5)
    return history


def test_round_trip_of_history_extras_and_rng(tmp_path):
    model, optimizer, scheduler = _setup()
    history = _history()
    path = save_checkpoint(tmp_path / "sub" / "run.pt", model=model, optimizer=optimizer, scheduler=scheduler,
                           history=history, note="first try", best={"val_acc": 0.2},
                           mask=torch.tensor([1, 0]))
    assert path == tmp_path / "sub" / "run.pt" and sorted(p.name for p in path.parent.iterdir()) == ["run.pt"]
    after_save = torch.rand(3), random.random(), np.random.rand()
    state = load_checkpoint(path, model=_setup()[0], optimizer=_setup()[1], scheduler=_setup()[2],
                            map_location="cpu")
    assert sorted(state) == ["best", "history", "mask", "note"]  # no "epoch": the history says it
    assert state["history"] == history and isinstance(state["history"], History)
    assert state["history"].epochs == 1 and state["history"].epoch_lr == [[0.1]]
    assert state["note"] == "first try" and state["best"] == {"val_acc": 0.2}
    assert torch.equal(state["mask"], torch.tensor([1, 0]))
    after_load = torch.rand(3), random.random(), np.random.rand()
    assert torch.equal(after_load[0], after_save[0]) and after_load[1:] == after_save[1:]


PLAIN_EXTRAS = {
    "count": 3, "ratio": 0.25, "flag": True, "nothing": None, "name": "run-1", "big": 2**70,
    "values": [1, 2.5, "x", [3, 4]], "pair": (1, "a"), "table": {"a": 1, 2: [0.5], "nested": {"t": (1, 2)}},
    "weights": torch.arange(4.0), "half": torch.ones(2, dtype=torch.bfloat16),
}


def test_plain_extras_round_trip(tmp_path):
    model, optimizer, _ = _setup(None)
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, **PLAIN_EXTRAS)
    state = load_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer)
    assert state.pop("history") is None and sorted(state) == sorted(PLAIN_EXTRAS)
    for key, value in PLAIN_EXTRAS.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(state[key], value) and state[key].dtype == value.dtype, key
        else:
            assert state[key] == value and type(state[key]) is type(value), key


def _a_function():
    return 1


@pytest.mark.parametrize("key, value, where", [
    ("best", np.float64(0.97), "best (float64)"),  # a float subclass: saves, but is refused on load
    ("steps", np.int64(10), "steps (int64)"),
    ("accs", np.array([0.9, 0.8]), "accs (ndarray)"),
    ("folder", pathlib.Path("runs"), "folder (PosixPath)" if isinstance(pathlib.Path(), pathlib.PosixPath)
     else "folder (WindowsPath)"),
    ("previous", History(), "previous (History)"),
    ("make", _a_function, "make (function)"),
    ("scores", {"val": [0.5, np.float32(0.6)]}, "scores['val'][1] (float32)"),
    ("by_seed", {np.int64(0): 0.5}, "by_seed (key np.int64(0) of type int64)"),
])
def test_extras_that_would_not_load_are_refused_at_save_time(tmp_path, key, value, where):
    model, optimizer, _ = _setup(None)
    with pytest.raises(TypeError, match=re.escape(
            "These extras could be saved but not loaded (load_checkpoint uses torch's safe weights-only "
            f"loading): {where}. Fix: store plain values")):
        save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, ok=1, **{key: value})
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_refused_extras_really_would_not_load(tmp_path):
    """The check above is not stricter than torch: each refused value fails torch's weights-only load."""
    for value in (np.float64(0.97), np.int64(10), np.array([1.0]), pathlib.Path("runs"), History(),
                  _a_function, {np.int64(0): 0.5}):
        torch.save({"x": value}, tmp_path / "x.pt")
        with pytest.raises(Exception, match="Weights only load failed"):
            torch.load(tmp_path / "x.pt", weights_only=True)


def test_a_failed_save_leaves_no_tmp_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, _ = _setup(None)
    path = save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, note="good")
    good = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        pathlib.Path(f).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint(path, model=model, optimizer=optimizer, note="bad")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"] and path.read_bytes() == good
    assert load_checkpoint(path, model=model, optimizer=optimizer)["note"] == "good"


def test_an_inconsistent_history_is_refused_and_nothing_written(tmp_path):
    model, optimizer, _ = _setup(None)
    with pytest.raises(ValueError, match=re.escape("The per-epoch lists have different lengths")):
        save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer,
                        history=History(train_loss=[1.0]))
    assert not (tmp_path / "run.pt").exists()


def test_an_empty_file_says_it_is_empty(tmp_path):
    model, optimizer, _ = _setup(None)
    (tmp_path / "run.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'run.pt'} is empty (0 bytes): the save that wrote it did not finish. Fix: load an "
            "earlier checkpoint, or train again from the start.")):
        load_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer)


def _everything(model, optimizer, scheduler=None):
    """Copies of all the state a load could change: to check that a refused load changed nothing."""
    return (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()),
            None if scheduler is None else copy.deepcopy(scheduler.state_dict()),
            rng_state()["torch"].clone())


def _assert_unchanged(before, model, optimizer, scheduler=None):
    weights, opt_state, sched_state, rng = before
    _assert_tensors_equal(model.state_dict(), weights)
    assert optimizer.state_dict()["param_groups"] == opt_state["param_groups"]
    assert optimizer.state_dict()["state"].keys() == opt_state["state"].keys()
    assert scheduler is None or scheduler.state_dict() == sched_state
    assert torch.equal(torch.get_rng_state(), rng)


def _trained_checkpoint(tmp_path):
    model, optimizer, scheduler = _setup(seed=0)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()  # momentum buffers
    scheduler.step()
    return save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, scheduler=scheduler)


def test_a_param_group_mismatch_is_found_before_the_weights_are_overwritten(tmp_path):
    path = _trained_checkpoint(tmp_path)
    torch.manual_seed(1)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=0.3, momentum=0.9)
    before = _everything(model, optimizer)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint's optimizer has 1 param groups, this one 2. Fix: build the optimizer with the "
            "same groups (add_param_group calls included) before loading.")):
        load_checkpoint(path, model=model, optimizer=optimizer, scheduler=None)
    _assert_unchanged(before, model, optimizer)


def test_an_optimizer_on_other_parameters_is_refused_before_anything_changes(tmp_path):
    path = _trained_checkpoint(tmp_path)
    torch.manual_seed(1)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD([model.weight], lr=0.3, momentum=0.9)  # one group, but not the bias
    scheduler = S.StepLR(optimizer, 1)
    before = _everything(model, optimizer, scheduler)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint's optimizer groups hold [2] parameters, this one's [1]. Fix: build the optimizer "
            "on the same parameters as in the saved run")):
        load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    _assert_unchanged(before, model, optimizer, scheduler)


def test_another_architecture_is_refused_before_anything_changes(tmp_path):
    torch.manual_seed(0)
    saved = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(saved.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "run.pt", model=saved, optimizer=opt)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))  # 3 classes: the first layer fits
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before = _everything(model, optimizer)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint's weights do not fit this model (missing [], unexpected [], other shapes "
            "['2.bias', '2.weight']). Fix: build the model exactly as in the saved run")):
        load_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer)
    _assert_unchanged(before, model, optimizer)  # not even the first layer, which would have fit
    other = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=re.escape("(missing ['1.bias', '1.weight', '3.bias'], unexpected "
                                                   "['0.bias', '0.weight', '2.bias']")):
        load_checkpoint(tmp_path / "run.pt", model=other,
                        optimizer=torch.optim.SGD(other.parameters(), lr=0.5))


def test_loading_restores_the_lr_into_fresh_objects(tmp_path):
    model, optimizer, scheduler = _setup(lambda opt, _: S.StepLR(opt, 1, gamma=0.5))
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, scheduler=scheduler)
    fresh_model, fresh_opt, fresh_sched = _setup(lambda opt, _: S.StepLR(opt, 1, gamma=0.5), seed=1)
    state = load_checkpoint(tmp_path / "run.pt", model=fresh_model, optimizer=fresh_opt,
                            scheduler=fresh_sched)
    assert state == {"history": None}
    assert fresh_opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 3 == fresh_sched.get_last_lr()[0]
    _assert_tensors_equal(fresh_model.state_dict(), model.state_dict())
    fresh_sched.step()
    assert fresh_opt.param_groups[0]["lr"] == 0.1 * 0.5 ** 4


def test_another_optimizer_type(tmp_path):
    model, optimizer, _ = _setup(None)
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer)
    with pytest.raises(TypeError, match=re.escape(
            "The checkpoint was saved with optimizer SGD, but optimizer=Adam was passed. Fix: build the "
            "optimizer as in the saved run (SGD(model.parameters(), ...)) and load into it.")):
        load_checkpoint(tmp_path / "run.pt", model=model, optimizer=torch.optim.Adam(model.parameters()))


def test_scheduler_missing_or_unexpected_or_of_another_type(tmp_path):
    model, optimizer, scheduler = _setup()
    save_checkpoint(tmp_path / "with.pt", model=model, optimizer=optimizer, scheduler=scheduler)
    save_checkpoint(tmp_path / "without.pt", model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint was saved with scheduler StepLR, but scheduler=None was passed, so its state "
            "would be lost. Fix: build the same StepLR and pass it as scheduler=.")):
        load_checkpoint(tmp_path / "with.pt", model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint was saved without a scheduler, but scheduler=StepLR was passed, which would "
            "restart it. Fix: pass scheduler=None.")):
        load_checkpoint(tmp_path / "without.pt", model=model, optimizer=optimizer, scheduler=scheduler)
    with pytest.raises(TypeError, match=re.escape(
            "The checkpoint was saved with scheduler StepLR, but scheduler=CosineAnnealingLR was passed. "
            "Fix: build the same StepLR, as in the saved run.")):
        load_checkpoint(tmp_path / "with.pt", model=model, optimizer=optimizer,
                        scheduler=S.CosineAnnealingLR(optimizer, 10))


def test_a_grad_scaler_round_trips_and_must_be_passed_back(tmp_path):
    model, optimizer, _ = _setup(None)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_factor=3.0, growth_interval=7)
    save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, scaler=scaler)
    fresh = torch.amp.GradScaler("cpu")
    assert fresh.state_dict() != scaler.state_dict()
    load_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer, scaler=fresh)
    assert fresh.state_dict() == scaler.state_dict()
    assert fresh.get_scale() == 1024.0 and fresh.get_growth_interval() == 7
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint was saved with scaler GradScaler, but scaler=None was passed, so its state would "
            "be lost. Fix: build the same GradScaler and pass it as scaler=.")):
        load_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer)
    save_checkpoint(tmp_path / "plain.pt", model=model, optimizer=optimizer)
    with pytest.raises(ValueError, match=re.escape(
            "The checkpoint was saved without a scaler, but scaler=GradScaler was passed, which would "
            "restart it. Fix: pass scaler=None.")):
        load_checkpoint(tmp_path / "plain.pt", model=model, optimizer=optimizer, scaler=fresh)


def _raw(path, **changes):
    """The checkpoint at ``path`` as a dict, changed and written back (a file by another version)."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(changes)
    torch.save(checkpoint, path)


@pytest.mark.parametrize("number", [0, 3, "2"])
def test_an_unknown_format_number_is_refused_clearly(tmp_path, number):
    model, optimizer, _ = _setup(None)
    path = save_checkpoint(tmp_path / "run.pt", model=model, optimizer=optimizer)
    _raw(path, lrtools_checkpoint=number)
    with pytest.raises(ValueError, match=re.escape(
            f"{path} has checkpoint format {number}, but this lrtools reads formats 1 and 2. Fix: load it "
            "with the lrtools version that wrote it")):
        load_checkpoint(path, model=model, optimizer=optimizer)


def test_a_format_1_checkpoint_still_loads(tmp_path):
    """As lrtools 0.1 wrote it: an "epoch" key, a stored epoch_lr, no scaler keys."""
    model, optimizer, scheduler = _setup()
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    history = {"steps_per_epoch": 2, "step_lr": [[0.1], [0.1]], "step_loss": [2.3, 2.1], "epoch_lr": [[0.1]],
               "train_loss": [2.2], "train_acc": [0.1], "val_loss": [2.0], "val_acc": [0.2], "seconds": [1.5],
               "interrupted": False}
    seed_everything(7)
    torch.save({"lrtools_checkpoint": 1, "epoch": 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "optimizer_class": "SGD",
                "scheduler": scheduler.state_dict(), "scheduler_class": "StepLR", "history": history,
                "rng": rng_state(), "extra": {"note": "from 0.1"}}, tmp_path / "old.pt")
    expected = torch.rand(3)
    fresh_model, fresh_opt, fresh_sched = _setup(seed=1)
    state = load_checkpoint(tmp_path / "old.pt", model=fresh_model, optimizer=fresh_opt,
                            scheduler=fresh_sched)
    assert sorted(state) == ["history", "note"] and state["note"] == "from 0.1"
    assert state["history"].epochs == 1 and state["history"].epoch_lr == [[0.1]]
    assert state["history"] == _history()
    _assert_tensors_equal(fresh_model.state_dict(), model.state_dict())
    assert fresh_sched.last_epoch == 1 and fresh_opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert torch.equal(torch.rand(3), expected)


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path):
    model, optimizer, _ = _setup(None)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'weights.pt'} is not an lrtools checkpoint. Fix: load a file written by "
            "lrtools.save_checkpoint (plain state_dicts load with torch.load).")):
        load_checkpoint(tmp_path / "weights.pt", model=model, optimizer=optimizer)
