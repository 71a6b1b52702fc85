"""The latent bank: empirical-Bayes inference over the training users' latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.helpers import _ctx
from vpl.models import build
from vpl.models.bank import LatentBank, subsample_rows


@pytest.mark.parametrize("mode", ["head", "concat"])
def test_bank_weights_are_the_normalized_context_likelihood(mode):
    torch.manual_seed(0)
    model = build("vpl", 12, latent_dim=3, hidden=16, latent_mode=mode, inference="bank").eval()
    model.bank.latents = torch.randn(7, 3)
    a, b, mask = _ctx()
    # a tiny chunk budget exercises the chunked path of the concat reward
    w = model.bank_weights(a, b, mask)
    ll_chunked = model.bank_log_likelihood(a, b, mask, budget=40)
    for i in range(2):
        ll = []
        for z in model.bank.latents:
            zz = z.expand(1, -1)
            lg = model.reward(a[i : i + 1], zz) - model.reward(b[i : i + 1], zz)  # (1, K)
            ll.append(torch.nn.functional.logsigmoid(lg)[0][mask[i]].sum())
        ll = torch.stack(ll)
        assert torch.allclose(w[i], torch.softmax(ll, 0), atol=1e-5)
        assert torch.allclose(ll_chunked[i], ll, atol=1e-4)
    post = model.bank_posterior(a, b, mask)
    assert torch.allclose(post.mean, w @ model.bank.latents, atol=1e-5)
    var = w @ model.bank.latents**2 - post.mean**2
    assert torch.allclose(post.logvar.exp(), var.clamp_min(np.exp(-8.0)), rtol=1e-3, atol=1e-6)


def test_checkpoint_without_a_bank_loads(tmp_path):
    model = build("vpl", 12, hidden=16).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "bank.latents"}
    fresh = build("vpl", 12, hidden=16)
    fresh.load_state_dict(state)
    assert fresh.bank.latents.shape == (0, 16)


def test_subsample_rows_keeps_all_or_a_seeded_sorted_subset():
    np.testing.assert_array_equal(subsample_rows(5, 8, 0), np.arange(5))
    np.testing.assert_array_equal(subsample_rows(8, 8, 0), np.arange(8))
    rows = subsample_rows(100, 10, 3)
    assert len(rows) == 10 and len(set(rows.tolist())) == 10
    assert (np.diff(rows) > 0).all() and rows.max() < 100
    np.testing.assert_array_equal(rows, subsample_rows(100, 10, 3))
    assert not np.array_equal(rows, subsample_rows(100, 10, 4))


def test_bank_fill_posterior_and_particles():
    bank = LatentBank(2, 3)
    assert len(bank) == 0
    z = torch.arange(10.0).reshape(5, 2)
    bank.fill(z, seed=1)
    assert torch.equal(bank.latents, z[torch.from_numpy(subsample_rows(5, 3, 1))])
    # uniform likelihood: the bank's mean and (population) variance
    post = bank.posterior(torch.zeros(1, 3), torch.tensor([0]))
    assert torch.allclose(post.mean[0], bank.latents.mean(0))
    assert torch.allclose(post.logvar[0].exp(), bank.latents.var(0, unbiased=False), rtol=1e-5)
    # a context that singles out one latent: its value, the variance clamped from below
    sharp = bank.posterior(torch.tensor([[0.0, -50.0, -50.0]]), torch.tensor([4]),
                           logvar_range=(-6.0, 4.0))
    assert torch.allclose(sharp.mean[0], bank.latents[0], atol=1e-6)
    assert torch.allclose(sharp.logvar, torch.full((1, 2), -6.0))
    ll = torch.tensor([0.0, 1.0, 2.0])
    latents, w = bank.particles(ll, 3)
    assert torch.equal(latents, bank.latents) and torch.allclose(w, torch.softmax(ll, 0))
    # more latents than particles: resampled, duplicates merged, weights the draw shares
    big = LatentBank(1, 50)
    big.fill(torch.randn(50, 1))
    latents, w = big.particles(torch.zeros(50), 0, max_particles=8,
                               generator=torch.Generator().manual_seed(0))
    assert len(latents) <= 8 and torch.allclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w * 8, (w * 8).round())


def test_temperature_is_kept_per_context_size():
    from vpl.models.bank import CONTEXT_SIZES

    bank = LatentBank(1, 4)
    bank.fill(torch.tensor([[0.0], [1.0]]))
    bank.temperature.copy_(torch.linspace(0.0, 1.0, len(CONTEXT_SIZES)))
    # n pairs use the temperature of the largest size <= n (sizes below 1 the first)
    n = torch.tensor([0, 1, 3, 8, 15, 100])
    want = bank.temperature[torch.tensor([0, 0, 1, 3, 3, 5])]
    assert torch.equal(bank.tau(n), want)
    ll = torch.tensor([[0.0, -2.0]]).expand(6, -1)
    w = bank.weights(ll, n)
    assert torch.allclose(w, torch.softmax(want.unsqueeze(1) * ll, -1))
    # a checkpoint from before: one temperature for every size
    other = LatentBank(1, 4)
    other.load_state_dict({"latents": bank.latents, "temperature": torch.tensor(0.5)})
    assert torch.equal(other.temperature, torch.full((len(CONTEXT_SIZES),), 0.5))
