"""The latent-model interface: every implementation agrees with itself across its methods."""

from __future__ import annotations

import pytest
import torch

from vpl.data.pairs import ContextBatch
from vpl.models import REGISTRY, build
from vpl.models.latent import LatentRewardModel

D = 6
LATENT = sorted(n for n, c in REGISTRY.items() if issubclass(c, LatentRewardModel))


def _model(name: str) -> LatentRewardModel:
    torch.manual_seed(0)
    model = build(name, D)
    assert isinstance(model, LatentRewardModel)
    return model.eval()


def test_the_personalized_models_implement_the_interface():
    assert set(LATENT) >= {"vpl", "low-rank", "prototypes", "mixture", "btl-head"}
    assert not issubclass(REGISTRY["btl"], LatentRewardModel)


@pytest.mark.parametrize("name", LATENT)
def test_reward_table_equals_reward(name):
    model = _model(name)
    g = torch.Generator().manual_seed(1)
    items = torch.randn(9, D, generator=g)
    z = model.prior().mean + 0.3 * torch.randn(4, model.latent_dim, generator=g)
    if name in ("mixture", "prototypes"):  # z lives on the simplex
        z = torch.softmax(z, -1)
    with torch.no_grad():
        table = model.reward_table(model.item_part(items), z)  # (S, U)
        direct = model.reward(items.unsqueeze(0).expand(4, -1, -1), z)  # (S, U)
    assert torch.allclose(table, direct, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in LATENT if n != "mixture"])  # mixture: below
def test_logits_are_the_reward_difference_under_the_posterior_mean(name):
    model = _model(name)
    g = torch.Generator().manual_seed(2)
    b, k, t = 3, 4, 5
    batch = ContextBatch(torch.randn(b, k, D, generator=g), torch.randn(b, k, D, generator=g),
                         torch.ones(b, k, dtype=torch.bool), torch.randn(b, t, D, generator=g),
                         torch.randn(b, t, D, generator=g), torch.ones(b, t, dtype=torch.bool),
                         torch.arange(b))
    with torch.no_grad():
        z = model.posterior(batch).mean
        diff = model.reward(batch.chosen, z) - model.reward(batch.rejected, z)
        logits = model.predict(batch)
    assert torch.allclose(logits, diff, atol=1e-5)


@pytest.mark.parametrize("name", LATENT)
def test_prior_is_the_posterior_of_an_empty_context(name):
    model = _model(name)
    prior = model.prior()
    assert prior.mean.shape == (1, model.latent_dim)
    a, b = torch.zeros(0, D), torch.zeros(0, D)
    with torch.no_grad():
        z, w = model.particles(a, b, 8, torch.Generator().manual_seed(0))
    assert z.shape[1] == model.latent_dim and abs(float(w.sum()) - 1.0) < 1e-5


def test_mixture_particles_give_the_mixture_prediction():
    model = _model("mixture")
    g = torch.Generator().manual_seed(3)
    ca, cb = torch.randn(3, D, generator=g), torch.randn(3, D, generator=g)
    z, w = model.particles(ca, cb, 0)
    qa, qb = torch.randn(1, 5, D, generator=g), torch.randn(1, 5, D, generator=g)
    with torch.no_grad():
        r = model.reward_table(model.item_part(torch.cat([qa[0], qb[0]])), z)  # (M, 10)
        prob = w @ torch.sigmoid(r[:, :5] - r[:, 5:])
        batch = ContextBatch(ca[None], cb[None], torch.ones(1, 3, dtype=torch.bool), qa, qb,
                             torch.ones(1, 5, dtype=torch.bool), torch.zeros(1, dtype=torch.long))
        expect = torch.sigmoid(model.predict(batch))[0]
    assert torch.allclose(prob, expect, atol=1e-5)
