"""Metric loggers for long runs: a protocol whose default does nothing, and adapters.

`make_logger("tensorboard:DIR")` or `make_logger("wandb:PROJECT")` builds an adapter; the
libraries are imported only then (optional extras `vpl-rlhf[tensorboard]`, `vpl-rlhf[wandb]`).
"""

from __future__ import annotations

from typing import Any, Protocol


class Logger(Protocol):
    """Receives scalar metrics by step."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record `metrics` at `step`."""

    def close(self) -> None:
        """Flush and release resources."""


class NullLogger:
    """Logs nothing (the default)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        return None

    def close(self) -> None:
        return None


class TensorBoardLogger:
    """Scalars to a TensorBoard event directory."""

    def __init__(self, log_dir: str, prefix: str = "") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard is an optional extra
            raise ImportError("--log tensorboard:DIR needs the tensorboard package: "
                              "pip install 'vpl-rlhf[tensorboard]'") from exc
        self.writer = SummaryWriter(log_dir=log_dir)
        self.prefix = prefix

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(self.prefix + k, float(v), step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """Scalars to a Weights & Biases run (offline unless WANDB_MODE says otherwise)."""

    def __init__(self, project: str, config: dict[str, Any] | None = None) -> None:
        try:
            import wandb
        except ImportError as exc:  # wandb is an optional extra
            raise ImportError("--log wandb:PROJECT needs the wandb package: "
                              "pip install 'vpl-rlhf[wandb]'") from exc
        import os

        os.environ.setdefault("WANDB_MODE", "offline")
        self.run = wandb.init(project=project, config=config or {})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


def make_logger(spec: str | None, config: dict[str, Any] | None = None) -> Logger:
    """A logger from `KIND:TARGET` (`tensorboard:DIR`, `wandb:PROJECT`); None or `none`: none."""
    if not spec or spec == "none":
        return NullLogger()
    kind, _, target = spec.partition(":")
    if kind == "tensorboard":
        return TensorBoardLogger(target or "runs")
    if kind == "wandb":
        return WandbLogger(target or "vpl", config)
    raise ValueError(f"--log {spec!r}: expected none, tensorboard:DIR or wandb:PROJECT")
