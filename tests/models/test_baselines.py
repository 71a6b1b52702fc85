"""Baseline reward models: DPL, EM mixture, PAL prototypes, BTL + per-user head, low-rank basis,
type oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from vpl.checkpoint import load_model, save_model
from vpl.data.pairs import ContextBatch, PairData
from vpl.evaluate import evaluate_pairs
from vpl.models import REGISTRY, build
from vpl.models.dpl import (
    categorical_win_probs,
    log_odds_from_probs,
    mean_variance_log_probs,
)
from vpl.models.mixture import mixture_log_odds
from vpl.models.oracle import oracle_for
from vpl.models.prototypes import fit_mixture_logits
from vpl.models.solvers import newton_map, newton_map_dual
from vpl.train import TrainConfig, callbacks_for, fit, seed_everything
from vpl.train.callbacks import low_rank_e_step

D = 12
SMALL = {
    "dpl-meanvar": {"hidden": 16},
    "dpl-categorical": {"hidden": 16, "atoms": 6},
    "mixture": {"hidden": 16, "heads": 3},
    "prototypes": {"hidden": 16, "feature_dim": 8, "prototypes": 3},
    "btl-head": {"hidden": 16},
    "low-rank": {"rank": 3},
    "oracle-type": {"hidden": 16, "types": ["type0", "type1"]},
}
NAMES = list(SMALL)
CONTEXT_MODELS = ["mixture", "prototypes", "btl-head", "low-rank"]


def _tiny_data(n_users: int = 4, seed: int = 0) -> PairData:
    """Users of alternating types type0/type1 over random D-dim items."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(30, D)).astype(np.float32)
    user = np.repeat(np.arange(n_users), 6)
    pairs = np.stack([rng.choice(30, 2, replace=False) for _ in user])
    return PairData(items=items, user=user, chosen=pairs[:, 0], rejected=pairs[:, 1],
                    users=[f"u{i}" for i in range(n_users)],
                    user_types=[f"type{i % 2}" for i in range(n_users)])


def _batch(B: int = 4, T: int = 3, K: int = 5, seed: int = 0, scale: float = 1.0
           ) -> ContextBatch:
    """Random batch; row 0 has 3 real context pairs, row 1 none, the others K."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1, :] = False
    return ContextBatch(
        ctx_chosen=scale * torch.randn(B, K, D, generator=g),
        ctx_rejected=scale * torch.randn(B, K, D, generator=g), ctx_mask=mask,
        chosen=scale * torch.randn(B, T, D, generator=g),
        rejected=scale * torch.randn(B, T, D, generator=g),
        target_mask=torch.ones(B, T, dtype=torch.bool), user=torch.arange(B) % 4)


def _make(name: str, seed: int = 0):
    seed_everything(seed)
    model = build(name, D, **SMALL[name])
    model.bind(_tiny_data())  # user indices of _batch -> users u0..u3 (oracle needs types)
    return model


def _replace(b: ContextBatch, **kw) -> ContextBatch:
    fields = {k: getattr(b, k) for k in ("ctx_chosen", "ctx_rejected", "ctx_mask", "chosen",
                                         "rejected", "target_mask", "user")}
    return ContextBatch(**{**fields, **kw})


def test_models_are_registered():
    assert set(NAMES) <= set(REGISTRY)


# ---------------------------------------------------------------- shared model contract


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    model = _make(name)
    if name in ("mixture", "low-rank"):  # move the prior buffers off their initial values
        callbacks_for(model)[0].on_epoch_start(model, _tiny_data(), np.random.default_rng(0))
    model.eval()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    loaded.bind(_tiny_data())
    b = _batch()
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    out = model.predict(b)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    assert torch.equal(out, loaded.predict(b))


@pytest.mark.parametrize("name", NAMES)
def test_parameters_move_after_a_step(name):
    # every parameter is used: DPL-meanvar has no mu bias (its log-sigma offset is separate),
    # the mixture's responsibilities are soft so every head gets gradient, and the batch holds
    # users of both oracle types
    model = _make(name)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = model.loss(_batch(), kl_weight=1.0)
    assert out.loss.ndim == 0 and out.logits.shape == (4, 3)
    out.loss.backward()
    opt.step()
    for k, v in model.named_parameters():
        assert not torch.equal(before[k], v), f"{name}: parameter {k} did not change"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_finite_loss_and_gradients(name, scale):
    model = _make(name)
    out = model.loss(_batch(scale=scale))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()
    for k, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {k}"


@pytest.mark.parametrize("name", NAMES)
def test_padding_and_order_of_context_do_not_matter(name):
    model = _make(name).eval()
    b = _batch()
    ref = model.predict(b)
    # garbage in padded entries (row 0 after 3, all of row 1)
    cc, cr = b.ctx_chosen.clone(), b.ctx_rejected.clone()
    cc[~b.ctx_mask] = 100.0
    cr[~b.ctx_mask] = -7.0
    assert torch.allclose(model.predict(_replace(b, ctx_chosen=cc, ctx_rejected=cr)), ref,
                          atol=1e-5)
    # padding trimmed away entirely
    b0 = _replace(b, **{k: getattr(b, k)[:1] for k in ("chosen", "rejected", "target_mask",
                                                       "user")},
                  ctx_chosen=b.ctx_chosen[:1, :3], ctx_rejected=b.ctx_rejected[:1, :3],
                  ctx_mask=b.ctx_mask[:1, :3])
    assert torch.allclose(model.predict(b0)[0], ref[0], atol=1e-5)
    # permuted context
    perm = torch.tensor([4, 2, 0, 1, 3])
    bp = _replace(b, ctx_chosen=b.ctx_chosen[:, perm], ctx_rejected=b.ctx_rejected[:, perm],
                  ctx_mask=b.ctx_mask[:, perm])
    assert torch.allclose(model.predict(bp), ref, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_context_use(name):
    """Context models react to the context; context-free ones ignore it."""
    model = _make(name).eval()
    b = _batch()
    swapped = _replace(b, ctx_chosen=b.ctx_rejected, ctx_rejected=b.ctx_chosen)
    moved = not torch.allclose(model.predict(b)[2:], model.predict(swapped)[2:])
    assert moved == (name in CONTEXT_MODELS)
    assert type(model).uses_context == (name in CONTEXT_MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_swapping_chosen_and_rejected_negates_logits(name):
    model = _make(name).eval()
    b = _batch()
    flipped = _replace(b, chosen=b.rejected, rejected=b.chosen)
    assert torch.allclose(model.predict(flipped), -model.predict(b), atol=1e-5)


# ---------------------------------------------------------------- DPL likelihoods


def test_meanvar_equal_means_is_one_half():
    mu = torch.tensor([0.3, -2.0])
    log_win, log_lose = mean_variance_log_probs(mu, torch.tensor([0.0, 1.0]), mu,
                                                torch.tensor([-1.0, 2.0]))
    assert torch.allclose(log_win.exp(), torch.full((2,), 0.5))
    assert torch.allclose(log_win - log_lose, torch.zeros(2))


@pytest.mark.parametrize(("mu_c", "s_c", "mu_r", "s_r"),
                         [(1.0, 0.5, 0.0, 1.0), (-0.7, 2.0, 0.4, 0.3), (0.0, 0.1, 9.0, 0.1)])
def test_meanvar_matches_scipy(mu_c, s_c, mu_r, s_r):
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    log_win, log_lose = mean_variance_log_probs(t(mu_c), t(math.log(s_c)), t(mu_r),
                                                t(math.log(s_r)))
    z = (mu_c - mu_r) / math.hypot(s_c, s_r)
    assert math.isclose(float(log_win), norm.logcdf(z), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(float(log_lose), norm.logcdf(-z), rel_tol=1e-9, abs_tol=1e-12)


def test_meanvar_tail_is_stable():
    # z = -40: Phi(z) underflows in float32, log_ndtr does not
    log_win, log_lose = mean_variance_log_probs(torch.tensor([0.0]), torch.tensor([0.0]),
                                                torch.tensor([40 * math.sqrt(2)]),
                                                torch.tensor([0.0]))
    assert math.isclose(float(log_win), norm.logcdf(-40.0), rel_tol=1e-4)
    assert float(log_lose) == pytest.approx(0.0, abs=1e-6)


def test_meanvar_model_logits_are_probit_log_odds():
    model = _make("dpl-meanvar").eval()
    b = _batch()
    mu_c, ls_c = model.distribution(b.chosen)
    mu_r, ls_r = model.distribution(b.rejected)
    z = ((mu_c - mu_r) / torch.sqrt(torch.exp(2 * ls_c) + torch.exp(2 * ls_r))).detach().double()
    p = torch.from_numpy(norm.cdf(z.numpy()))
    assert torch.allclose(model.predict(b).double(), torch.log(p / (1 - p)), atol=1e-4)
    assert torch.equal(model.predict(_replace(b, rejected=b.chosen)), torch.zeros(4, 3))


def test_categorical_hand_example():
    p_c = torch.tensor([0.2, 0.3, 0.5])
    p_r = torch.tensor([0.5, 0.5, 0.0])
    # P(U_c > U_r) = 0.3 * 0.5 + 0.5 * 1.0 = 0.65; P(tie) = 0.1 + 0.15 = 0.25
    win, lose = categorical_win_probs(p_c, p_r)
    assert float(win) == pytest.approx(0.65 + 0.125)
    assert float(lose) == pytest.approx(0.2 * 0.5 + 0.125)
    assert float(log_odds_from_probs(win, lose)) == pytest.approx(math.log(0.775 / 0.225))


def test_categorical_identical_and_certain():
    p = torch.softmax(torch.randn(5, 7), -1)
    win, lose = categorical_win_probs(p, p)
    assert torch.allclose(win, torch.full((5,), 0.5)) and torch.allclose(lose, win)
    top, bottom = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    win, lose = categorical_win_probs(top, bottom)
    assert float(win) == 1.0 and float(lose) == 0.0
    assert math.isfinite(float(log_odds_from_probs(win, lose)))  # clamped, not inf


# ---------------------------------------------------------------- model-specific pieces


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


def test_mixture_log_odds_of_one_head_is_that_head():
    logits = torch.tensor([[-3.0, 0.5, 7.0]]).T  # (T, 1)
    assert torch.allclose(mixture_log_odds(torch.zeros(1), logits), logits[:, 0], atol=1e-5)


def test_btl_head_without_context_is_btl():
    model = _make("btl-head").eval()
    b = _batch()
    shared = (model.features(b.chosen) - model.features(b.rejected)) @ model.head
    out = model.predict(b)
    assert torch.allclose(out[1], shared[1], atol=1e-6)  # row 1: all context masked
    empty = _replace(b, ctx_chosen=b.ctx_chosen[:, :0], ctx_rejected=b.ctx_rejected[:, :0],
                     ctx_mask=b.ctx_mask[:, :0])
    assert torch.allclose(model.predict(empty), shared, atol=1e-6)


def test_btl_head_newton_reaches_the_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 10, generator=g, dtype=torch.float64)
    w0 = torch.randn(10, generator=g, dtype=torch.float64)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    lam = 0.5
    beta = newton_map_dual(x, w0, mask, l2=lam, steps=20)
    xm = x * mask.unsqueeze(-1)
    w = w0 + (xm * beta.unsqueeze(-1)).sum(1)  # (B, H)
    margin = (xm * w.unsqueeze(1)).sum(-1)
    grad = -(torch.sigmoid(-margin) * mask).unsqueeze(-1).mul(xm).sum(1) + 2 * lam * (w - w0)
    assert grad.abs().max() < 1e-8
    assert torch.all(beta[0, 4:] == 0)


def test_prototype_inner_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    s, grad_in = torch.randn(2, 5, generator=g), torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    alpha1 = fit_mixture_logits(s, grad_in, mask, steps=1, lr=1.0, l2=0.3)
    alpha = torch.zeros(2, 3, requires_grad=True)
    a = torch.softmax(alpha, -1)
    obj = (-torch.nn.functional.logsigmoid(s + (grad_in * a.unsqueeze(1)).sum(-1)) * mask).sum()
    (grad,) = torch.autograd.grad(obj + 0.15 * alpha.pow(2).sum(), alpha)
    assert torch.allclose(alpha1, -grad, atol=1e-6)
    # many steps: the fit converges (gradient ~ 0) without moving masked pairs' influence
    alpha_n = fit_mixture_logits(s, grad_in, mask, steps=300, lr=1.0, l2=0.3)
    assert torch.allclose(fit_mixture_logits(s, grad_in, mask, steps=301, lr=1.0, l2=0.3),
                          alpha_n, atol=1e-5)


def test_low_rank_map_weights_reach_the_optimum():
    """Grouped Newton MAP: zero gradient of each group's objective, groups independent."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 4, generator=g, dtype=torch.float64)
    owner = torch.tensor([0, 0, 0, 2, 2, 2, 2, 2, 0, 2, 0])  # group 1 has no pairs
    mean = torch.randn(4, generator=g, dtype=torch.float64)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    prec = a @ a.T + 0.5 * torch.eye(4, dtype=torch.float64)
    w, hess = newton_map(x, owner, 3, mean, prec, steps=15)
    for u in range(3):
        xs = x[owner == u]
        grad = -(torch.sigmoid(-(xs @ w[u])).unsqueeze(-1) * xs).sum(0) + prec @ (w[u] - mean)
        assert grad.abs().max() < 1e-9
        alone, _ = newton_map(xs, torch.zeros(len(xs), dtype=torch.long), 1, mean, prec,
                               steps=15)
        assert torch.allclose(alone[0], w[u], atol=1e-10)
    assert torch.allclose(w[1], mean) and torch.allclose(hess[1], prec)  # no pairs: the prior
    # the Hessian returned is the objective's at the MAP
    s = torch.sigmoid(x[owner == 0] @ w[0])
    h0 = prec + (x[owner == 0].T * (s * (1 - s))) @ x[owner == 0]
    assert torch.allclose(hess[0], h0, atol=1e-10)


def test_map_weights_with_an_offset_zeroes_the_offset_objective_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    off = torch.randn(9, generator=g, dtype=torch.float64)
    owner = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 1])
    mean, prec = torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    w, _ = newton_map(x, owner, 2, mean, prec, steps=15, offset=off)
    for u in range(2):
        xs, os_ = x[owner == u], off[owner == u]
        grad = -(torch.sigmoid(-(os_ + xs @ w[u])).unsqueeze(-1) * xs).sum(0) + w[u]
        assert grad.abs().max() < 1e-9
    plain, _ = newton_map(x, owner, 2, mean, prec, steps=15)
    assert not torch.allclose(plain, w, atol=1e-3)  # the offset does change the optimum


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


# ---------------------------------------------------------------- quality on 2 user types


@pytest.fixture(scope="module")
def accuracies(linear_users) -> dict[str, float]:
    train, test = linear_users
    accs = {}
    for name in ["btl", *NAMES]:
        seed_everything(0)
        model = oracle_for(train) if name == "oracle-type" else build(name, train.dim)
        fit(model, train, None, TrainConfig(epochs=15, seed=0), progress=False)
        accs[name] = evaluate_pairs(model, test, context_size=8).accuracy
    return accs


@pytest.mark.parametrize("name", ["mixture", "prototypes", "btl-head", "low-rank",
                                  "oracle-type"])
def test_personalized_models_beat_btl(accuracies, name):
    assert accuracies[name] > 0.85, accuracies
    assert accuracies[name] > accuracies["btl"] + 0.15, accuracies


@pytest.mark.parametrize("name", ["dpl-meanvar", "dpl-categorical"])
def test_context_free_dpl_does_not_beat_btl(accuracies, name):
    assert accuracies[name] < accuracies["btl"] + 0.05, accuracies
