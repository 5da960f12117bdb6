"""Training and evaluation: configs, trainer (plain, streaming, Multigrid, DDP), metrics."""

from .config import Config, ConfigError, load_config, save_config
from .evaluate import evaluate, stream_video
from .metrics import ClassificationMeter, ViewAggregator, frame_map, mean_average_precision
from .multigrid import MultigridBatchSampler, MultigridSchedule
from .optim import build_optimizer, build_scheduler, lr_factor
from .trainer import Trainer, build_model

__all__ = [
    "ClassificationMeter", "Config", "ConfigError", "MultigridBatchSampler",
    "MultigridSchedule", "Trainer", "ViewAggregator", "build_model", "build_optimizer",
    "build_scheduler", "evaluate", "frame_map", "load_config", "lr_factor",
    "mean_average_precision", "save_config", "stream_video",
]
