"""BTL with a per-user head fitted to the context."""

from __future__ import annotations

import torch

from tests.models.helpers import _batch, _make, _replace


def test_btl_head_without_context_is_btl():
    model = _make("btl-head").eval()
    b = _batch()
    shared = (model.features(b.chosen) - model.features(b.rejected)) @ model.head
    out = model.predict(b)
    assert torch.allclose(out[1], shared[1], atol=1e-6)  # row 1: all context masked
    empty = _replace(b, ctx_chosen=b.ctx_chosen[:, :0], ctx_rejected=b.ctx_rejected[:, :0],
                     ctx_mask=b.ctx_mask[:, :0])
    assert torch.allclose(model.predict(empty), shared, atol=1e-6)
