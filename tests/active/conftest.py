"""Models trained once for every test of the active package."""

from __future__ import annotations

import pytest

from vpl.models import build
from vpl.train import TrainConfig, fit


@pytest.fixture(scope="package")
def trained(linear_users):
    train, _ = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, layers=1)
    fit(model, train, config=TrainConfig(epochs=3, seed=0), progress=False)
    return model


@pytest.fixture(scope="package", params=["bank", "map"])
def trained_low_rank(linear_users, request):
    train, _ = linear_users
    model = build("low-rank", train.dim, rank=3, inference=request.param)
    fit(model, train, config=TrainConfig(epochs=3, seed=0), progress=False)
    return model
