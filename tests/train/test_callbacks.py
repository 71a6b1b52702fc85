"""Training phases of the models: the mixture's and the low-rank model's E-steps, VPL's bank
and refinement after fitting."""

from __future__ import annotations

import numpy as np
import torch

from tests.models.helpers import D, _batch, _make, _tiny_data
from vpl.models import build
from vpl.models.mixture import mixture_log_odds
from vpl.train import TrainConfig, callbacks_for, fit, seed_everything


def test_mixture_em_step_and_empty_context():
    model = _make("mixture").eval()
    data = _tiny_data()
    callbacks_for(model)[0].on_epoch_start(model, data, np.random.default_rng(0))
    assert model.train_log_resp.shape == (4, 3)
    assert torch.allclose(model.log_pi.exp().sum(), torch.tensor(1.0))
    model.bind(data)  # a new binding drops the stale responsibilities
    assert len(model.train_log_resp) == 0
    b = _batch()
    heads = model.head_logits(b.chosen, b.rejected)  # (B, T, M)
    # row 1 has an empty context: the prediction is the pi-weighted mixture
    expect = mixture_log_odds(model.log_pi, heads[1])
    assert torch.allclose(model.predict(b)[1], expect, atol=1e-6)


def test_low_rank_e_step_prior_and_empty_context():
    seed_everything(0)
    model = build("low-rank", D, rank=3, inference="map").eval()
    data = _tiny_data()
    callbacks_for(model)[0].on_epoch_start(model, data, np.random.default_rng(0))
    w = model.train_weights
    assert w.shape == (4, 3)
    assert torch.allclose(model.prior_mean, w.mean(0), atol=1e-6)
    assert torch.allclose(model.prior_cov, torch.cov(w.T), atol=1e-6)
    assert torch.equal(model.bank.latents, w) and not model.uses_bank  # kept, unused by map
    model.bind(data)  # a new binding drops the stale weights table
    assert len(model.train_weights) == 0
    b = _batch()
    basis = model.basis(b.chosen) - model.basis(b.rejected)  # (B, T, rank)
    # row 1 has an empty context: the population-average reward under the prior mean
    assert torch.allclose(model.predict(b)[1], basis[1] @ model.prior_mean, atol=1e-6)
    post = model.posterior(b)
    assert torch.allclose(post.mean[1], model.prior_mean, atol=1e-6)
    prior_var = torch.linalg.inv(model.prior_prec).diagonal()
    assert torch.allclose(post.logvar[1].exp(), prior_var, rtol=1e-4)
    assert (post.logvar[2].exp() < prior_var + 1e-6).all()  # context only sharpens


def test_fit_refines_only_with_bank_inference(linear_users):
    train, _ = linear_users
    kw = dict(latent_dim=4, hidden=32, latent_mode="concat", refine_epochs=3)
    models = []
    for inference in ("amortized", "bank"):
        torch.manual_seed(0)
        m = build("vpl", train.dim, inference=inference, **kw)
        fit(m, train, None, TrainConfig(epochs=1, seed=0), progress=False)
        models.append(m)
    amortized, bank = models
    # same seed and data: training is identical, only the bank model was refined after it
    assert torch.equal(amortized.to_posterior.weight, bank.to_posterior.weight)
    assert not torch.equal(amortized.reward_net[0].weight, bank.reward_net[0].weight)


def test_callbacks_for_picks_the_phases_by_model_class():
    from vpl.train.callbacks import LowRankEM, MixtureEM, VPLBankRefinement

    def kinds(name, **kw):
        return [type(cb) for cb in callbacks_for(build(name, D, **kw))]

    assert MixtureEM in kinds("mixture", hidden=16, heads=3)
    assert LowRankEM in kinds("low-rank", rank=3)
    assert VPLBankRefinement in kinds("vpl", hidden=16)
    assert kinds("btl", hidden=16) == [] and kinds("dpl-meanvar", hidden=16) == []
    assert callbacks_for(build("mixture", D, hidden=16)) is not callbacks_for(
        build("mixture", D, hidden=16))  # fresh phases per call


def test_vpl_bank_refinement_fills_the_bank_and_refines_only_with_bank_inference():
    from vpl.train.callbacks import VPLBankRefinement

    data = _tiny_data()
    cfg = TrainConfig(context_size=4, seed=0)
    for inference, refined in (("bank", True), ("amortized", False)):
        torch.manual_seed(0)
        model = build("vpl", D, hidden=16, latent_dim=2, inference=inference, refine_epochs=1,
                      refine_latents="bank")
        before = model.features[0].weight.detach().clone()
        info = VPLBankRefinement().on_fit_end(model, data, cfg, validate=None)
        assert model.bank.latents.shape == (4, 2)  # one latent per training user
        assert bool(info) == refined
        assert torch.equal(model.features[0].weight, before) != refined
