"""Train ``SmallCNN`` on MNIST with DistributedDataParallel: one process per rank, under torchrun.

    torchrun --standalone --nproc_per_node=2 -m lrtools.ddp_train --epochs 2 --batch-size 64 --lr 0.05

Each rank trains on its shard of the training data (:func:`lrtools.shard_loader`) and
validates on its shard of the validation data; :func:`lrtools.fit` runs the loop. Rank 0
prints a line per epoch, saves checkpoints and writes ``--out`` (JSON: every rank's LR
history, weight checksums, timing). The backend is ``nccl`` on GPUs (one per process),
``gloo`` on the CPU (``--device cpu`` forces it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from .checkpoint import load_checkpoint, save_checkpoint
from .data import TensorLoader, mnist_loaders
from .distributed import mean_across_ranks, scale_lr_for_batch, shard_loader
from .history import History
from .models import SmallCNN
from .training import fit
from .utils import seed_everything

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
LAUNCH = "torchrun --standalone --nproc_per_node=2 -m lrtools.ddp_train --epochs 2 --batch-size 64 --lr 0.05"


@dataclass(frozen=True)
class RunConfig:
    """One run's settings: the command-line flags, typed (``--batch-size`` is ``batch_size``)."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 0.05
    base_batch: int | None = None
    scale: str = "none"
    warmup: float = 0.0
    plateau: bool = False
    patience: int = 0
    sync_metric: bool = True
    train_size: int | None = None
    val_size: int = 1000
    device: str = "auto"
    seed: int = 0
    checkpoint: Path | None = None
    resume: Path | None = None
    out: Path | None = None


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """The :class:`RunConfig` of a command line (``--help`` lists the flags)."""
    p = argparse.ArgumentParser(prog="python -m lrtools.ddp_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2, help="total epochs of the run (default 2)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size per rank (default 64)")
    p.add_argument("--lr", type=float, default=0.05, help="LR tuned for --base-batch (default 0.05)")
    p.add_argument("--base-batch", type=int, default=None,
                   help="batch --lr was tuned for (default: --batch-size)")
    p.add_argument("--scale", choices=["none", "linear", "sqrt"], default="none",
                   help="scale --lr to the global batch, batch-size x world size (default none)")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="linear warmup, in epochs (converted to updates)")
    p.add_argument("--plateau", action="store_true", help="ReduceLROnPlateau on the validation loss")
    p.add_argument("--patience", type=int, default=0, help="ReduceLROnPlateau patience (default 0)")
    p.add_argument("--sync-metric", action=argparse.BooleanOptionalAction, default=True,
                   help="average the validation loss across ranks before the plateau step (default on)")
    p.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    p.add_argument("--val-size", type=int, default=1000, help="validation images, split across ranks")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="cuda: one GPU per process, nccl; cpu: gloo, one thread per process; "
                        "auto (default): cuda if there is a GPU for every process on this machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="rank 0 saves here after every epoch; {epoch} in the name becomes the epoch")
    p.add_argument("--resume", type=Path, default=None, help="every rank loads this checkpoint first")
    p.add_argument("--out", type=Path, default=None, help="rank 0 writes the run's JSON summary here")
    config = RunConfig(**vars(p.parse_args(argv)))
    if config.plateau and config.warmup:
        p.error("--plateau and --warmup cannot be combined (fit takes one scheduler).")
    return config


def require_torchrun_env() -> None:
    """Exit with one clear line when the torchrun variables are missing."""
    missing = [name for name in TORCHRUN_VARS if name not in os.environ]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not set: launch this module with torchrun, e.g. `{LAUNCH}`.")


def build_data(batch_size: int, *, train_size: int | None, val_size: int, seed: int,
               device: torch.device) -> tuple[TensorLoader, TensorLoader]:
    """The unsharded training loader (``batch_size``, shuffled) and validation loader of a run:
    :func:`lrtools.mnist_loaders`'s, so the same seed gives the same split as in the notebooks."""
    train, val, _ = mnist_loaders(batch_size, val_size=val_size, device=device, seed=seed,
                                  train_size=train_size)
    return train, val


def build_model(seed: int) -> nn.Module:
    """The initial ``SmallCNN`` of a run with ``seed`` (every rank builds the same one)."""
    seed_everything(seed)
    return SmallCNN()


def checksum(model: nn.Module) -> str:
    """A short SHA-256 of the weights' bytes: equal on two ranks iff the weights are identical."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def make_scheduler(config: RunConfig, optimizer, warmup_steps: int):
    """(scheduler, step_every) for the flags: plateau per epoch, warmup per step, or none."""
    if config.plateau:
        return ReduceLROnPlateau(optimizer, factor=0.5, patience=config.patience), "epoch"
    if warmup_steps:
        return LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps)), "step"
    return None, "epoch"


def summary(config: RunConfig, rank: int, world: int, history: History, model: nn.Module, lr: float,
            warmup: int, seconds: float) -> dict | None:
    """Gather every rank's record; rank 0 gets the JSON-ready summary, the others None."""
    mine = {"rank": rank, "epoch_lr": [lrs[0] for lrs in history.epoch_lr], "val_loss": history.val_loss,
            "train_loss": history.train_loss, "checksum": checksum(model)}
    records = [None] * world
    dist.all_gather_object(records, mine)
    if rank:
        return None
    return {"world_size": world, "backend": dist.get_backend(), "batch_per_rank": config.batch_size,
            "global_batch": config.batch_size * world, "lr": lr, "warmup_steps": warmup,
            "steps_per_epoch": history.steps_per_epoch, "epochs": history.epochs, "plateau": config.plateau,
            "sync_metric": config.sync_metric, "seconds": seconds, "ranks": records,
            "same_weights": len({r["checksum"] for r in records}) == 1}


def train(config: RunConfig, rank: int, world: int, device: torch.device) -> dict | None:
    train_full, val_full = build_data(config.batch_size, train_size=config.train_size,
                                      val_size=config.val_size, seed=config.seed, device=device)
    train_loader, val_loader = shard_loader(train_full, rank, world), shard_loader(val_full, rank, world)
    base = config.base_batch or config.batch_size
    rule = None if config.scale == "none" else config.scale
    lr, warmup = (scale_lr_for_batch(config.lr, base, config.batch_size * world, rule=rule,
                                     warmup_epochs=config.warmup,
                                     steps_per_epoch=len(train_loader)) if rule else
                  (config.lr, round(config.warmup * len(train_loader))))
    model = build_model(config.seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler, step_every = make_scheduler(config, optimizer, warmup)
    history = None
    if config.resume is not None:
        history = load_checkpoint(config.resume, model=model, optimizer=optimizer, scheduler=scheduler,
                                  map_location=device)["history"]
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    # fit averages the plateau metric across ranks; unsynchronised, each rank steps its own scheduler
    own_plateau = config.plateau and not config.sync_metric

    def end_of_epoch(epochs_done: int, hist: History) -> None:
        if own_plateau:
            scheduler.step(hist.val_loss[-1])
        if rank == 0:
            print(f"epoch {epochs_done - 1}: lr {hist.epoch_lr[-1][0]:.4g}, rank-0 val loss "
                  f"{hist.val_loss[-1]:.4f}, mean val loss {mean_across_ranks(hist.val_loss[-1]):.4f}",
                  flush=True)
        else:
            mean_across_ranks(hist.val_loss[-1])  # a collective: every rank takes part
        if config.checkpoint is not None:
            if rank == 0:
                save_checkpoint(str(config.checkpoint).format(epoch=epochs_done - 1), model=model,
                                optimizer=optimizer, scheduler=scheduler, history=hist)
            dist.barrier()  # no rank reads a checkpoint rank 0 is still writing

    start = time.perf_counter()
    history = fit(ddp, optimizer, train_loader, epochs=config.epochs,
                  scheduler=None if own_plateau else scheduler,
                  step_every=step_every, val_loader=val_loader, history=history, on_epoch_end=end_of_epoch)
    return summary(config, rank, world, history, model, lr, warmup, time.perf_counter() - start)


def rank_device(choice: str, local_rank: int, local_world_size: int) -> torch.device:
    """This rank's device: GPU ``local_rank`` (nccl) or the CPU (gloo); ``"auto"`` takes the GPUs
    when this machine has one per local rank. Exits with the fix when ``"cuda"`` cannot be honoured."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if choice == "auto":
        choice = "cuda" if gpus >= local_world_size else "cpu"
    if choice == "cuda" and gpus < local_world_size:
        sys.exit(f"error: --device cuda needs one GPU per process: {local_world_size} processes on this "
                 f"machine, {gpus} GPU(s). Fix: --nproc_per_node={gpus}" if gpus else
                 "error: --device cuda, but torch sees no GPU. Fix: --device cpu.")
    return torch.device("cuda", local_rank) if choice == "cuda" else torch.device("cpu")


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    require_torchrun_env()
    rank, world, local = (int(os.environ[name]) for name in TORCHRUN_VARS)
    device = rank_device(config.device, local, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        result = train(config, rank, world, device)
        if result is not None:
            print(f"done: {world} ranks x batch {config.batch_size} = global batch {result['global_batch']}, "
                  f"lr {result['lr']:.4g}, {result['steps_per_epoch']} steps per epoch per rank, "
                  f"same weights on every rank: {result['same_weights']}", flush=True)
            if config.out is not None:
                config.out.parent.mkdir(parents=True, exist_ok=True)
                config.out.write_text(json.dumps(result, indent=1))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
