"""BTL: one reward for everyone; the log-odds of a pair are its reward difference."""

from __future__ import annotations

import torch

from tests.models.helpers import _batch, _replace
from vpl.models import build


def test_logits_are_the_reward_difference_and_ignore_the_context():
    torch.manual_seed(0)
    model = build("btl", 12, hidden=16, layers=1).eval()
    b = _batch()
    with torch.no_grad():
        want = model.reward(b.chosen) - model.reward(b.rejected)
        assert torch.allclose(model.logits(b), want)
        assert torch.equal(model.predict(_replace(b, ctx_chosen=b.ctx_rejected,
                                                  ctx_rejected=b.ctx_chosen)), model.predict(b))
        z = torch.randn(4, 3)
        assert torch.equal(model.reward(b.chosen, z), model.reward(b.chosen))
    assert not model.uses_context and model.posterior(b) is None
    assert model.reward_net[-1].bias is None  # an output bias would cancel in every pair


def test_loss_is_the_bradley_terry_nll_of_the_targets():
    model = build("btl", 12, hidden=16)
    b = _batch()
    out = model.loss(b)
    want = torch.nn.functional.softplus(-out.logits)[b.target_mask].mean()
    assert torch.allclose(out.loss, want) and out.metrics["nll"] == out.loss.item()
