"""History keeps its lists consistent; epoch_lr is derived; old dicts still load."""

from __future__ import annotations

import re

import pytest

from lrtools import History


def _history(epochs=2, spe=3, extra_steps=0):
    h = History(steps_per_epoch=spe)
    for e in range(epochs):
        for s in range(spe):
            h.record_step([0.1 / (e + 1), 0.2], 2.0 - e - s / 10)
        h.record_epoch(train_loss=1.0 - e / 10, train_acc=0.5, val_loss=0.9, val_acc=0.6, seconds=1.5)
    for _ in range(extra_steps):
        h.record_step([0.01, 0.02], 0.5)
    return h


def test_epoch_lr_is_step_lr_every_steps_per_epoch():
    h = _history(epochs=3, spe=4)
    assert h.epoch_lr == h.step_lr[::4] == [[0.1, 0.2], [0.05, 0.2], [0.1 / 3, 0.2]]
    assert h.lrs == [lr[0] for lr in h.step_lr] and h.steps == 12 and h.epochs == 3


def test_epoch_lr_leaves_out_the_unfinished_epoch():
    h = _history(epochs=2, spe=3, extra_steps=2)
    assert len(h.epoch_lr) == 2 and h.unfinished_steps == 2 and h.steps == 8


def test_record_epoch_needs_all_its_steps():
    h = History(steps_per_epoch=3)
    h.record_step([0.1], 1.0)
    with pytest.raises(ValueError, match=re.escape("Epoch 0 needs 3 recorded steps before it can end; the "
                                                   "history has 1.")):
        h.record_epoch(train_loss=1, train_acc=0, val_loss=1, val_acc=0, seconds=1)
    assert h.epochs == 0  # nothing appended by the refused call


def test_table_counts_epochs_from_0_and_names_the_interruption():
    h = _history(epochs=2, spe=3, extra_steps=1)
    h.mark_interrupted()
    lines = h.table().splitlines()
    assert lines[0].split() == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    assert [line.split()[0] for line in lines[1:3]] == ["0", "1"]
    assert lines[2].split()[1] == "0.05"  # epoch 1 trained at its first step's LR
    assert lines[-1] == "(interrupted in epoch 2 after 1 of 3 steps)"
    assert [r["epoch"] for r in h.rows()] == [0, 1]


def test_round_trip_and_old_dicts_with_epoch_lr():
    h = _history(extra_steps=1)
    h.keep_partial([0.5, 3, 4, 0.1])
    again = History.from_dict(h.to_dict())
    assert again == h
    old = h.to_dict() | {"epoch_lr": [[9.0, 9.0]] * 2}  # format-1 checkpoints stored it
    assert History.from_dict(old).epoch_lr == h.epoch_lr


def test_from_dict_refuses_unknown_keys_and_inconsistent_lists():
    with pytest.raises(ValueError, match=re.escape("Not a History dict: unknown keys ['lr']")):
        History.from_dict({"lr": [0.1]})
    broken = _history().to_dict()
    broken["val_acc"].append(0.7)
    with pytest.raises(ValueError, match="The per-epoch lists have different lengths"):
        History.from_dict(broken)
    short = _history().to_dict()
    del short["step_lr"][-1], short["step_loss"][-1]
    with pytest.raises(ValueError, match=re.escape("2 finished epochs of 3 steps need at least 6 recorded "
                                                   "steps")):
        History.from_dict(short)


def test_drop_last_steps_only_touches_the_unfinished_epoch():
    h = _history(extra_steps=2)
    h.drop_last_steps(1)
    assert h.steps == 7 and len(h.step_loss) == 7
    with pytest.raises(ValueError, match=re.escape("Only the 1 steps of the unfinished epoch can be dropped, "
                                                   "not 2.")):
        h.drop_last_steps(2)
