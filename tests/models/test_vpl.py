"""VPL: shapes, invariances of the posterior, the ELBO, inference modes, label noise, and
personalization on two user types."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from tests.models.helpers import _ctx
from tests.models.helpers import vpl_batch as _batch
from vpl.evaluate import evaluate_pairs, latent_diagnostics
from vpl.losses import noisy_logits
from vpl.models import build
from vpl.train import TrainConfig, fit

VPL_VARIANTS = [
    {},
    {"set_encoder": "attention"},
    {"latent_mode": "concat"},
    {"latent_mode": "concat", "set_encoder": "attention"},
    {"latent_mode": "head", "pair_input": "items"},
    {"layers": 2},
]


@pytest.mark.parametrize("opts", VPL_VARIANTS)
def test_vpl_shapes(opts):
    model = build("vpl", 12, latent_dim=4, hidden=16, **opts)
    b = _batch()
    assert model.logits(b).shape == (3, 2)
    post = model.posterior(b)
    assert post.mean.shape == (3, 4) and post.logvar.shape == (3, 4)
    out = model.loss(b)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)


@pytest.mark.parametrize("opts", VPL_VARIANTS)
def test_padding_does_not_change_posterior(opts):
    model = build("vpl", 12, latent_dim=4, hidden=16, **opts).eval()
    b = _batch()
    ref = model.posterior(b).mean[0]
    # overwrite padded entries of row 0 with garbage: posterior must not move
    cc, cr = b.ctx_chosen.clone(), b.ctx_rejected.clone()
    cc[0, 3:] = 100.0
    cr[0, 3:] = -7.0
    b2 = type(b)(cc, cr, b.ctx_mask, b.chosen, b.rejected, b.target_mask, b.user)
    assert torch.allclose(model.posterior(b2).mean[0], ref, atol=1e-5)
    # trimming the padding away entirely gives the same posterior too
    b3 = type(b)(b.ctx_chosen[:1, :3], b.ctx_rejected[:1, :3], b.ctx_mask[:1, :3], b.chosen[:1],
                 b.rejected[:1], b.target_mask[:1], b.user[:1])
    assert torch.allclose(model.posterior(b3).mean[0], ref, atol=1e-5)


@pytest.mark.parametrize("opts", VPL_VARIANTS)
def test_permuting_context_does_not_change_posterior(opts):
    model = build("vpl", 12, latent_dim=4, hidden=16, **opts).eval()
    b = _batch()
    perm = torch.tensor([4, 2, 0, 1, 3])
    b2 = type(b)(b.ctx_chosen[:, perm], b.ctx_rejected[:, perm], b.ctx_mask[:, perm], b.chosen,
                 b.rejected, b.target_mask, b.user)
    assert torch.allclose(model.posterior(b).mean, model.posterior(b2).mean, atol=1e-5)


def test_swapping_chosen_and_rejected_changes_posterior():
    model = build("vpl", 12, latent_dim=4, hidden=16).eval()
    b = _batch()
    b2 = type(b)(b.ctx_rejected, b.ctx_chosen, b.ctx_mask, b.chosen, b.rejected, b.target_mask,
                 b.user)
    assert not torch.allclose(model.posterior(b).mean, model.posterior(b2).mean)


def test_empty_context_is_finite():
    model = build("vpl", 12, latent_dim=4, hidden=16).eval()
    b = _batch(K=0)
    assert torch.isfinite(model.logits(b)).all()


@pytest.mark.parametrize("name", ["btl", "vpl"])
def test_parameters_move_after_a_step(name):
    torch.manual_seed(0)
    model = build(name, 12, hidden=16)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss(_batch(), kl_weight=1.0).loss.backward()
    opt.step()
    for k, v in model.named_parameters():
        assert not torch.equal(before[k], v), f"{name}: parameter {k} did not change"


def test_vpl_rejects_feature_input_without_head():
    with pytest.raises(ValueError, match="needs latent_mode='head'"):
        build("vpl", 12, latent_mode="concat", pair_input="features")
    x = torch.zeros(2, 12)
    with pytest.raises(ValueError, match="pair heads need latent_mode='head'"):
        build("vpl", 12, latent_mode="concat").pair_head(x, x)


def test_context_likelihood_adds_the_context_pairs_nll():
    b = _batch()
    torch.manual_seed(0)
    with_ctx = build("vpl", 12, latent_dim=4, hidden=16, context_nll=1.0, init_logvar=-8.0)
    without = build("vpl", 12, latent_dim=4, hidden=16, context_nll=0.0, init_logvar=-8.0)
    without.load_state_dict(with_ctx.state_dict())
    torch.manual_seed(1)
    nll_with = with_ctx.loss(b, kl_weight=0.0).metrics["nll"]
    torch.manual_seed(1)
    nll_without = without.loss(b, kl_weight=0.0).metrics["nll"]
    # z ~ q with std e^-4: the context pairs' own NLL under (nearly) the posterior mean
    post = with_ctx.posterior(b)
    ctx_logits = (with_ctx.reward(b.ctx_chosen, post.mean)
                  - with_ctx.reward(b.ctx_rejected, post.mean))
    ctx_nll = torch.nn.functional.softplus(-ctx_logits)[b.ctx_mask].mean().item()
    assert nll_with - nll_without == pytest.approx(ctx_nll, abs=1e-2)


@pytest.mark.parametrize("opts", VPL_VARIANTS)
def test_vpl_loss_matches_the_elbo_through_encode_and_reward(opts):
    # the loss shares one feature pass between encoder and rewards in head mode; it must equal
    # the ELBO written with the public encode / reward, under the same posterior sample
    b = _batch()
    model = build("vpl", 12, latent_dim=4, hidden=16, beta=0.5, **opts)
    torch.manual_seed(3)
    out = model.loss(b, kl_weight=0.7)
    torch.manual_seed(3)
    post = model.encode(b.ctx_chosen, b.ctx_rejected, b.ctx_mask)
    z = post.mean + torch.randn_like(post.mean) * (0.5 * post.logvar).exp()
    logits = model.reward(b.chosen, z) - model.reward(b.rejected, z)
    ctx = model.reward(b.ctx_chosen, z) - model.reward(b.ctx_rejected, z)
    nll = (torch.nn.functional.softplus(-logits).mean()
           + torch.nn.functional.softplus(-ctx)[b.ctx_mask].mean())
    kl = 0.5 * (post.mean.pow(2) + post.logvar.exp() - 1 - post.logvar).sum(-1).mean()
    assert out.metrics["nll"] == pytest.approx(nll.item(), rel=1e-5)
    assert out.metrics["kl"] == pytest.approx(kl.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx((nll + 0.5 * 0.7 * kl).item(), rel=1e-5)
    torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opts", [{}, {"layers": 2}, {"latent_mode": "concat"}])
def test_bank_differences_are_the_reward_differences_under_every_bank_latent(opts):
    # in head mode they are computed from each pair's feature difference, in one product
    # when the features are linear
    model = build("vpl", 12, latent_dim=3, hidden=16, **opts).eval()
    g = torch.Generator().manual_seed(4)
    model.bank.latents = torch.randn(5, 3, generator=g)
    c, r = torch.randn(2, 7, 12, generator=g), torch.randn(2, 7, 12, generator=g)
    with torch.no_grad():
        got = model.bank_differences(c, r)  # (2, 7, 5)
        z = model.bank.latents
        want = torch.stack([model.reward(c, z[m].expand(2, -1))
                            - model.reward(r, z[m].expand(2, -1)) for m in range(5)], -1)
    assert got.shape == (2, 7, 5)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opts", VPL_VARIANTS)
def test_the_posterior_pools_the_whole_pair_encoder(opts):
    # embed_pairs stops before the encoder's last layer, which pool applies (after the mean)
    model = build("vpl", 12, latent_dim=3, hidden=16, **opts).eval()
    c, r, mask = _ctx(5, 12)
    mask[0] = False  # an empty context too
    if model.pair_input == "items":
        h = model.pair_encoder(c, r)
    else:
        h = model.pair_encoder(model.pair_features(c, r))
    mean, logvar = model.to_posterior(model.set_encoder(h, mask)).chunk(2, dim=-1)
    post = model.encode(c, r, mask)
    torch.testing.assert_close(post.mean, mean)
    torch.testing.assert_close(post.logvar, logvar.clamp(model.config.logvar_min, 4.0))


@pytest.mark.parametrize("opts", VPL_VARIANTS)
@pytest.mark.parametrize("shape", [(4, 6), (40, 1)])  # a direction per latent; heads per pair
def test_pair_logits_are_the_reward_differences(opts, shape):
    model = build("vpl", 12, latent_dim=3, hidden=16, **opts)
    g = torch.Generator().manual_seed(5)
    c, r, z = (torch.randn(*shape, 12, generator=g), torch.randn(*shape, 12, generator=g),
               torch.randn(shape[0], 3, generator=g))
    torch.testing.assert_close(model.pair_logits(c, r, z),
                               model.reward(c, z) - model.reward(r, z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("opts", "label_noise"), [
    ({}, 0.0), ({}, 0.1), ({"latent_mode": "concat", "inference": "bank"}, 0.0)])
def test_scoring_each_distinct_context_pair_once_changes_no_prediction(linear_users, opts,
                                                                       label_noise):
    from vpl.data.pairs import build_batch
    from vpl.evaluate import pair_contexts

    data, _ = linear_users
    data = data.subset(np.flatnonzero(data.user < 4))
    model = build("vpl", data.dim, latent_dim=3, hidden=16, label_noise=label_noise,
                  **opts).eval()
    model.bank.latents = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    model.bank.hidden = torch.tensor([False, True, False, False, True, False])
    model.bank.temperature.fill_(0.7)
    model.item_effect.fill_(0.5)  # the context pairs' mixtures are used too
    model.bind(data)
    assert model.reads_distinct_contexts
    ctx, _ = pair_contexts(data, data, 4, seed=0)
    ctx[0] = -1  # a row without context beside rows with one
    rows = np.arange(len(data))[:, None]
    shared = build_batch(data, rows, data, ctx, distinct=True)
    assert len(shared.ctx_distinct[0]) < int(shared.ctx_mask.sum())  # contexts overlap
    every = dataclasses.replace(shared, ctx_slot=None, ctx_distinct=None)
    with torch.no_grad():
        got, want = model.scorer(shared)(), model.scorer(every)()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_empty_context_gives_the_bank_mean_and_training_uses_the_encoder():
    torch.manual_seed(0)
    model = build("vpl", 12, latent_dim=3, hidden=16, inference="bank")
    model.bank.latents = torch.randn(5, 3)
    a, b, _ = _ctx(k=0)
    none = torch.zeros(2, 0, dtype=torch.bool)
    model.eval()
    assert torch.allclose(model.infer(a, b, none).mean, model.bank.latents.mean(0).expand(2, -1),
                          atol=1e-6)
    model.train()  # training always encodes, whatever the inference mode
    assert torch.equal(model.infer(a, b, none).mean, model.encode(a, b, none).mean)
    model.eval()
    model.bank.latents = torch.zeros(0, 3)  # an empty bank falls back to the encoder
    assert torch.equal(model.infer(a, b, none).mean, model.encode(a, b, none).mean)


def test_unknown_inference_rejected():
    with pytest.raises(ValueError, match="unknown inference"):
        build("vpl", 12, inference="nope")


def test_auto_inference_uses_the_bank_only_in_head_mode():
    assert build("vpl", 12, hidden=16).inference == "bank"
    assert build("vpl", 12, hidden=16, latent_mode="concat").inference == "amortized"
    assert build("vpl", 12, hidden=16, latent_mode="concat", inference="bank").inference == "bank"
    assert build("vpl", 12, hidden=16, inference="amortized").inference == "amortized"


def test_label_noise_bounds_the_likelihood_and_the_predictions(linear_users):
    import math

    train, _ = linear_users
    eps = 0.05
    torch.manual_seed(0)
    noisy = build("vpl", train.dim, latent_dim=4, hidden=32, label_noise=eps,
                  inference="amortized")  # the bank is filled all the same
    fit(noisy, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    plain = copy.deepcopy(noisy)
    plain.config = dataclasses.replace(noisy.config, label_noise=0.0)
    items = torch.from_numpy(train.items)
    # a pair scored backwards by ten reward units costs at most -log(eps) per bank latent
    c, r = items[train.chosen[:50]], items[train.rejected[:50]]
    ll_noisy = noisy.pair_log_likelihood(r * 10, c * 10)
    ll_plain = plain.pair_log_likelihood(r * 10, c * 10)
    assert ll_noisy.min().item() >= math.log(eps) - 1e-5
    assert ll_plain.min().item() < math.log(eps)  # without the noise term it is unbounded
    # with the same latents (the encoder's), predictions are the plain ones squashed
    scores = evaluate_pairs(noisy, train, context_size=4, seed=0).logits
    plain_scores = evaluate_pairs(plain, train, context_size=4, seed=0).logits
    assert np.abs(scores).max() <= math.log((1 - eps) / eps) + 1e-5
    want = noisy_logits(torch.from_numpy(plain_scores), eps).numpy()
    assert np.allclose(scores, want, atol=1e-4)
    with pytest.raises(ValueError, match="label_noise"):
        build("vpl", train.dim, label_noise=0.5)


def test_vpl_personalizes_where_btl_cannot(linear_users):
    """Two user types with different linear utilities: only a context-aware model separates them."""
    train, test = linear_users
    cfg = TrainConfig(epochs=12, seed=0)
    accs = {}
    for name in ("btl", "vpl"):
        model = build(name, train.dim)
        fit(model, train, None, cfg, progress=False)
        accs[name] = evaluate_pairs(model, test, context_size=8).accuracy
        if name == "vpl":
            diag = latent_diagnostics(model, test, context_size=8)
            assert diag["active_units"] >= 1
            assert diag["between_user_std"] > 2 * diag["within_user_std"]
    assert accs["vpl"] > 0.88
    assert accs["vpl"] > accs["btl"] + 0.15


def test_bank_inference_personalizes_on_new_users(linear_users):
    """On two user types the bank posterior is at least as accurate as the encoder's."""
    train, test = linear_users
    model = build("vpl", train.dim, inference="bank")
    fit(model, train, None, TrainConfig(epochs=12, seed=0), progress=False)
    acc_bank = evaluate_pairs(model, test, context_size=4).accuracy
    model.config = dataclasses.replace(model.config, inference="amortized")
    acc_enc = evaluate_pairs(model, test, context_size=4).accuracy
    assert acc_bank > 0.85
    assert acc_bank >= acc_enc - 0.01
