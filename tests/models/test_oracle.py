"""The type oracle: one head per declared user type."""

from __future__ import annotations

import pytest
import torch

from tests.models.helpers import D, _batch, _make, _replace, _tiny_data
from vpl.models import build
from vpl.models.oracle import oracle_for


def test_oracle_types_from_data_and_errors():
    data = _tiny_data()
    model = oracle_for(data, hidden=8)
    assert model.config.types == ("type0", "type1")
    assert build("oracle-type", D, **model.config_dict()["config"]).config == model.config
    with pytest.raises(ValueError, match="oracle_for"):
        build("oracle-type", D)
    fresh = build("oracle-type", D, types=["type0", "type1"], hidden=8)
    with pytest.raises(RuntimeError, match="bind"):
        fresh.predict(_batch())
    other = _tiny_data()
    other.user_types = ["type0", "type1", "type9", "type1"]
    model.bind(other)
    with pytest.raises(ValueError, match="'u2' has type 'type9'"):
        model.predict(_batch())


def test_oracle_heads_are_independent():
    """A batch of type0 users gives no gradient to type1's head: joint = separate training."""
    model = _make("oracle-type")
    b = _replace(_batch(), user=torch.tensor([0, 2, 0, 2]))  # u0 and u2 are type0
    model.loss(b).loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.heads[0].parameters())
    assert all(p.grad is None or not p.grad.any() for p in model.heads[1].parameters())
