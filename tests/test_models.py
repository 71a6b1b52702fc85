import numpy as np
import pytest
import torch

from vpl.checkpoint import load_model, save_model
from vpl.data.pairs import build_batch
from vpl.evaluate import evaluate_pairs, latent_diagnostics
from vpl.models import REGISTRY, build
from vpl.train import TrainConfig, fit, seed_everything


def _batch(B=3, T=2, K=5, D=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    from vpl.data.pairs import ContextBatch

    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 3:] = False
    return ContextBatch(
        ctx_chosen=torch.randn(B, K, D, generator=g), ctx_rejected=torch.randn(B, K, D, generator=g),
        ctx_mask=mask, chosen=torch.randn(B, T, D, generator=g),
        rejected=torch.randn(B, T, D, generator=g), target_mask=torch.ones(B, T, dtype=torch.bool),
        user=torch.arange(B))


VPL_VARIANTS = [
    {},
    {"set_encoder": "attention"},
    {"latent_mode": "concat"},
    {"latent_mode": "concat", "set_encoder": "attention"},
    {"latent_mode": "head", "pair_input": "items"},
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


@pytest.mark.parametrize("name", ["btl", "vpl"])
def test_save_load_round_trip(name, tmp_path):
    model = build(name, 12, hidden=16).eval()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    b = _batch()
    assert type(loaded) is type(model)
    assert torch.equal(model.predict(b), loaded.predict(b))
    assert loaded.config == model.config


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_a_pickle_never_executes_it(tmp_path):
    import pickle

    model = build("btl", 12, hidden=16)
    save_model(model, tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(Exception):  # noqa: B017 - any parse error is fine, execution is not
        load_model(tmp_path)
    assert not marker.exists()


def test_build_rejects_unknown():
    with pytest.raises(ValueError, match="unknown model"):
        build("nope", 3)
    with pytest.raises(ValueError, match="no option"):
        build("btl", 3, latent_dim=4)
    assert {"btl", "vpl"} <= set(REGISTRY)


def test_vpl_rejects_feature_input_without_head():
    with pytest.raises(ValueError, match="needs latent_mode='head'"):
        build("vpl", 12, latent_mode="concat", pair_input="features")


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


def test_training_is_seeded(linear_users):
    train, _ = linear_users
    small = train.subset(np.arange(400))
    outs = []
    for _ in range(2):
        seed_everything(3)
        model = build("vpl", small.dim, hidden=32)
        r = fit(model, small, None, TrainConfig(epochs=2, seed=3), progress=False)
        outs.append(r.history[-1]["loss"])
    assert outs[0] == outs[1]


def test_batch_builder_pads_with_zeros(linear_users):
    train, _ = linear_users
    t = np.array([[0, 1], [2, -1]])
    c = np.array([[3, -1, -1], [4, 5, 6]])
    b = build_batch(train, t, train, c)
    assert b.ctx_mask.tolist() == [[True, False, False], [True, True, True]]
    assert b.target_mask.tolist() == [[True, True], [True, False]]
    assert float(b.ctx_chosen[0, 1:].abs().sum()) == 0.0
    assert torch.equal(b.chosen[0, 0], torch.from_numpy(train.items[train.chosen[0]]))


@pytest.mark.parametrize(("name", "patience", "epochs_run"),
                         [("btl", None, 11), ("vpl", None, 21), ("vpl", 3, 4)])
def test_early_stopping_patience_defaults_by_whether_the_model_reads_a_context(
        linear_users, monkeypatch, name, patience, epochs_run):
    import types

    import vpl.evaluate

    # validation accuracy that never improves after the first epoch
    monkeypatch.setattr(vpl.evaluate, "evaluate_pairs",
                        lambda *a, **k: types.SimpleNamespace(accuracy=0.5))
    train, _ = linear_users
    small = train.subset(np.flatnonzero(train.user < 10))
    model = build(name, small.dim, **({"hidden": 16, "refine_epochs": 0} if name == "vpl" else {}))
    res = fit(model, small, small, TrainConfig(epochs=40, patience=patience), progress=False)
    assert res.best_epoch == 0 and len(res.history) == epochs_run
