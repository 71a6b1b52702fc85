"""Training: one loop for every reward model, the per-model phases it runs, and loggers."""

from vpl.train.callbacks import Callback, callbacks_for
from vpl.train.logging import Logger, NullLogger, make_logger
from vpl.train.loop import TrainConfig, TrainResult, fit, seed_everything

__all__ = ["Callback", "Logger", "NullLogger", "TrainConfig", "TrainResult", "callbacks_for",
           "fit", "make_logger", "seed_everything"]
