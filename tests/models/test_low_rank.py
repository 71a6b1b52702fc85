"""The low-rank reward basis with per-user weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.helpers import D, _batch, _make, _tiny_data
from vpl.models import build
from vpl.train import callbacks_for
from vpl.train.callbacks import low_rank_e_step


def test_low_rank_bank_posterior():
    """Bank inference: the bank reweighted by the context likelihood, mean used to score."""
    model = _make("low-rank").eval()
    data = _tiny_data()
    callbacks_for(model)[0].on_epoch_start(model, data, np.random.default_rng(0))
    bank = model.bank.latents
    assert model.uses_bank and bank.shape == (4, 3)
    b = _batch()
    g = model.basis(b.ctx_chosen) - model.basis(b.ctx_rejected)  # (B, K, rank)
    for row in range(4):
        real = g[row][b.ctx_mask[row]]  # (k, rank)
        ll = torch.stack([torch.nn.functional.logsigmoid(real @ w_m).sum() for w_m in bank])
        p = torch.softmax(ll, 0)
        post = model.posterior(b)
        assert torch.allclose(post.mean[row], p @ bank, atol=1e-6)
        assert torch.allclose(post.logvar[row].exp(), p @ bank.pow(2) - (p @ bank).pow(2),
                              atol=1e-5)
    # the empty context (row 1) gets the population mean
    assert torch.allclose(model.posterior(b).mean[1], bank.mean(0), atol=1e-6)
    basis = model.basis(b.chosen) - model.basis(b.rejected)
    assert torch.allclose(model.predict(b), (basis * model.posterior(b).mean.unsqueeze(1)).sum(-1),
                          atol=1e-6)
    small = build("low-rank", D, rank=3, bank_size=2)
    low_rank_e_step(small, data)
    assert small.bank.latents.shape == (2, 3)
    with pytest.raises(ValueError, match="inference"):
        build("low-rank", D, inference="amortized")
