"""lrtools: helpers for the lr-workbook notebooks on adjusting the learning rate in PyTorch.

Example:
    >>> import lrtools
    >>> sorted(lrtools.__all__)[:3]
    ['DivergenceError', 'History', 'LRWarning']
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .data import TensorLoader, mnist_loaders
from .distributed import ScaledLR, ShardedLoader, mean_across_ranks, scale_lr_for_batch, shard_loader
from .experiments import format_table, run_many, summarize
from .explorer import explorer_lrs, schedule_explorer
from .finder import RangeTestResult, lr_range_test, suggest_min_div10, suggest_steepest, suggest_valley
from .history import History
from .models import SmallCNN
from .plotting import plot_compare, plot_digits, plot_history, plot_lr
from .schedules import current_lrs, preview_schedule, scale_lr, set_lr
from .training import DivergenceError, evaluate, fit
from .utils import bf16_supported, describe_environment, pick_device, quick_mode, seed_everything
from .watch import LRWarning, watch

__version__ = "0.2.0"

__all__ = [
    "mnist_loaders", "TensorLoader",
    "SmallCNN",
    "fit", "evaluate", "History", "DivergenceError",
    "preview_schedule", "current_lrs", "set_lr", "scale_lr", "explorer_lrs", "schedule_explorer",
    "watch", "LRWarning",
    "plot_lr", "plot_history", "plot_compare", "plot_digits",
    "lr_range_test", "RangeTestResult", "suggest_steepest", "suggest_min_div10", "suggest_valley",
    "save_checkpoint", "load_checkpoint",
    "run_many", "summarize", "format_table",
    "mean_across_ranks", "shard_loader", "ShardedLoader", "scale_lr_for_batch", "ScaledLR",
    "seed_everything", "pick_device", "describe_environment", "quick_mode", "bf16_supported",
]
