"""DDP on the CPU (gloo, 2 processes): shards, equivalence with one process, plateau sync, checkpoints."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

import lrtools
from lrtools import ShardedLoader, TensorLoader, scale_lr_for_batch, shard_loader

ROOT = Path(__file__).resolve().parents[1]
N, B, EPOCHS = 64, 8, 3  # tiny data: 64 images, 8 per rank and step, 4 steps per epoch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(seed: int, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _model() -> nn.Module:
    lrtools.seed_everything(0)
    return lrtools.SmallCNN(channels=(4, 8), hidden=16)


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _plateau_run(rank: int, sync: bool, history=None, model=None, optimizer=None, scheduler=None,
                 on_end=None):
    """fit under DDP with ReduceLROnPlateau; rank 0 validates on its shard, rank 1 on it with wrong labels.

    So rank 0's validation loss falls as the model learns, rank 1's rises: stepped on its own metric,
    only rank 1 cuts its LR.
    """
    train = shard_loader(TensorLoader(*_data(0), B, shuffle=True), rank, 2)
    positions = train.order()
    val = TensorLoader(train.images[positions], (train.labels[positions] + rank) % 10, 32)
    model = model or _model()
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = scheduler or ReduceLROnPlateau(optimizer, factor=0.5, patience=0)

    def end(epochs_done, h):
        if not sync:
            scheduler.step(h.val_loss[-1])  # each rank on its own metric: what fit must not do
        if on_end is not None:
            on_end(epochs_done, h)

    ddp = nn.parallel.DistributedDataParallel(model)
    h = lrtools.fit(ddp, optimizer, train, epochs=EPOCHS + 2, scheduler=scheduler if sync else None,
                    val_loader=val, history=history, on_epoch_end=end)
    return model, optimizer, scheduler, h


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    result = {}
    # 1. equivalence: 2 ranks x batch B, one epoch of SGD with momentum
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lrtools.fit(nn.parallel.DistributedDataParallel(model), opt,
                shard_loader(TensorLoader(*_data(0), B, shuffle=True), rank, 2), epochs=1)
    result["weights"] = _flat(model).tolist()
    # 2. plateau through fit (synchronised) and stepped per rank (unsynchronised)
    result["sync_lrs"] = _plateau_run(rank, sync=True)[3].lrs
    result["unsync_lrs"] = _plateau_run(rank, sync=False)[3].lrs
    # 3. checkpoint: rank 0 saves after epoch 1, every rank resumes from it in fresh objects
    path = Path(out) / "ckpt.pt"

    def save(epochs_done, h, m_o_s):
        if epochs_done == 2:
            if rank == 0:
                lrtools.save_checkpoint(path, model=m_o_s[0], optimizer=m_o_s[1], scheduler=m_o_s[2],
                                        history=h)
            dist.barrier()

    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = ReduceLROnPlateau(opt, factor=0.5, patience=0)
    _plateau_run(rank, True, model=model, optimizer=opt, scheduler=sched,
                 on_end=lambda e, h: save(e, h, (model, opt, sched)))
    model2 = _model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
    sched2 = ReduceLROnPlateau(opt2, factor=0.5, patience=0)
    state = lrtools.load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
    _, _, _, h2 = _plateau_run(rank, True, history=state["history"], model=model2, optimizer=opt2,
                               scheduler=sched2)
    result["resume_max_diff"] = float((_flat(model) - _flat(model2)).abs().max())
    result["resume_lrs_equal"] = h2.lrs == result["sync_lrs"]
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_two_ranks_of_batch_b_train_like_one_process_of_batch_2b(ddp_results):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    lrtools.fit(model, opt, TensorLoader(*_data(0), 2 * B, shuffle=True), epochs=1)
    single = _flat(model)
    for result in ddp_results:
        diff = (torch.tensor(result["weights"]) - single).abs().max().item()
        assert diff < 1e-5, diff
    assert ddp_results[0]["weights"] == ddp_results[1]["weights"]


def test_plateau_through_fit_gives_every_rank_the_same_lr_history(ddp_results):
    sync = [r["sync_lrs"] for r in ddp_results]
    assert sync[0] == sync[1], sync
    assert any(sync[0] != r["unsync_lrs"] for r in ddp_results)  # not simply every rank's own schedule


def test_plateau_stepped_per_rank_without_all_reduce_diverges(ddp_results):
    unsync = [r["unsync_lrs"] for r in ddp_results]
    assert unsync[0] != unsync[1], unsync


def test_rank0_checkpoint_resumes_exactly_on_every_rank(ddp_results):
    for result in ddp_results:
        assert result["resume_max_diff"] == 0.0
        assert result["resume_lrs_equal"]


def test_shards_are_disjoint_equal_and_reshuffled_per_epoch():
    full = TensorLoader(torch.zeros(11, 1), torch.arange(11), batch_size=2, shuffle=True, seed=3)
    shards = [shard_loader(full, rank, 2) for rank in range(2)]
    for epoch in (0, 1):
        for s in shards:
            s.set_epoch(epoch)
        seen = [[v for _, y in s for v in y.tolist()] for s in shards]
        assert len(seen[0]) == len(seen[1]) == 5 and not set(seen[0]) & set(seen[1])
        if epoch == 0:
            first = seen
    assert seen != first  # a new order in epoch 1
    shards[0].set_epoch(0)
    assert [v for _, y in shards[0] for v in y.tolist()] == first[0]  # a pure function of (seed, epoch)


def test_scale_lr_closed_forms_and_warmup_in_updates():
    for k in (1, 2, 4, 8, 32):
        assert math.isclose(scale_lr_for_batch(0.1, 64, 64 * k).lr, 0.1 * k)
        assert math.isclose(scale_lr_for_batch(0.1, 64, 64 * k, rule="sqrt").lr, 0.1 * math.sqrt(k))
    assert scale_lr_for_batch(0.1, 64, 256, warmup_epochs=2, steps_per_epoch=30).warmup_steps == 60
    with pytest.raises(ValueError, match="rule must be one of"):
        scale_lr_for_batch(0.1, 64, 256, rule="square")


@pytest.mark.parametrize("rank, world_size, message", [
    (0, 0, "world_size must be >= 1"), (2, 2, r"rank must be in \[0, world_size\)"),
    (-1, 2, r"rank must be in \[0, world_size\)")])
def test_bad_world_size_or_rank_is_a_clear_error(rank, world_size, message):
    with pytest.raises(ValueError, match=message):
        ShardedLoader(TensorLoader(torch.zeros(4, 1), torch.arange(4), 2), rank, world_size)


def _module(*args: str, env: dict | None = None, torchrun: bool = False) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun else []
    return subprocess.run([sys.executable, *launcher, "-m", "lrtools.ddp_train", *args], cwd=ROOT,
                          env={**base, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True, text=True,
                          timeout=120)


def test_module_help_works():
    done = _module("--help")
    assert done.returncode == 0 and "--sync-metric" in done.stdout and "--resume" in done.stdout


def test_module_without_torchrun_env_exits_with_one_clear_line():
    done = _module("--epochs", "1")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "torchrun --standalone --nproc_per_node=2 -m lrtools.ddp_train" in lines[0]


def test_module_under_torchrun_writes_every_ranks_lr_history(tmp_path, mnist_root):
    out = tmp_path / "run.json"
    done = _module("--epochs", "2", "--batch-size", "32", "--train-size", "256", "--val-size", "200",
                   "--plateau", "--out", str(out), torchrun=True, env={"LRTOOLS_DATA": str(mnist_root)})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["steps_per_epoch"] == 4 and result["same_weights"]
    assert result["ranks"][0]["epoch_lr"] == result["ranks"][1]["epoch_lr"]


def test_rank_device_auto_takes_gpus_only_with_one_per_process(monkeypatch):
    from lrtools.ddp_train import rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert rank_device("auto", 1, 2) == torch.device("cpu")  # 2 processes, 1 GPU: a one-GPU Colab
    assert rank_device("auto", 0, 1) == torch.device("cuda", 0)
    assert rank_device("cpu", 0, 1) == torch.device("cpu")
    message = r"2 processes on this machine, 1 GPU\(s\)\. Fix: --nproc_per_node=1"
    with pytest.raises(SystemExit, match=message):
        rank_device("cuda", 0, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="torch sees no GPU. Fix: --device cpu."):
        rank_device("cuda", 0, 1)
