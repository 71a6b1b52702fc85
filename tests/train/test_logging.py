"""Metric loggers: the default logs nothing, a logger sees every epoch, specs are checked."""

from __future__ import annotations

import pytest

from vpl.models import build
from vpl.train import NullLogger, TrainConfig, fit, make_logger


class Recorder:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append((step, dict(metrics)))

    def close(self) -> None:
        pass


def test_fit_sends_every_epoch_and_the_after_fit_phase_to_the_logger(linear_users):
    train, test = linear_users
    rec = Recorder()
    res = fit(build("vpl", train.dim, hidden=32, refine_epochs=1), train, test, TrainConfig(
        epochs=3, patience=5, seed=0), progress=False, logger=rec)
    epochs = [m for step, m in rec.rows if "loss" in m]
    assert len(epochs) == len(res.history) == 3
    assert [m["val_accuracy"] for m in epochs] == [r["val_accuracy"] for r in res.history]
    assert rec.rows[-1][1] == res.after_fit and "refine_epochs_kept" in res.after_fit


def test_make_logger_specs():
    assert isinstance(make_logger(None), NullLogger)
    assert isinstance(make_logger("none"), NullLogger)
    with pytest.raises(ValueError, match="tensorboard:DIR"):
        make_logger("mlflow:x")


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    log = make_logger(f"tensorboard:{tmp_path}")
    log.log_metrics({"loss": 0.5}, step=0)
    log.close()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
