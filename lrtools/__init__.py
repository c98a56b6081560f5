"""lrtools: helpers for the lr-workbook notebooks on adjusting the learning rate in PyTorch."""

from .checkpoint import load_checkpoint, save_checkpoint
from .data import TensorLoader, mnist_loaders
from .experiments import format_table, run_many, summarize
from .finder import RangeTestResult, lr_range_test, suggest_min_div10, suggest_steepest, suggest_valley
from .models import SmallCNN
from .plotting import plot_compare, plot_digits, plot_history, plot_lr
from .schedules import get_lr, preview_schedule, scale_lr, set_lr
from .training import DivergenceError, History, evaluate, fit
from .utils import bf16_supported, describe_environment, pick_device, quick_mode, seed_everything

__version__ = "0.1.0"

__all__ = [
    "mnist_loaders", "TensorLoader",
    "SmallCNN",
    "fit", "evaluate", "History", "DivergenceError",
    "preview_schedule", "get_lr", "set_lr", "scale_lr",
    "plot_lr", "plot_history", "plot_compare", "plot_digits",
    "lr_range_test", "RangeTestResult", "suggest_steepest", "suggest_min_div10", "suggest_valley",
    "save_checkpoint", "load_checkpoint",
    "run_many", "summarize", "format_table",
    "seed_everything", "pick_device", "describe_environment", "quick_mode", "bf16_supported",
]
