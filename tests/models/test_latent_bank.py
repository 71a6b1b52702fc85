"""The VPL latent bank: empirical-Bayes inference over the training users' latents."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from vpl.checkpoint import load_model, save_model
from vpl.evaluate import evaluate_pairs
from vpl.losses import noisy_logits
from vpl.models import build
from vpl.models.bank import subsample_rows
from vpl.train import TrainConfig, fit
from vpl.train.refine import fill_bank, map_latents, refine, refine_candidates, user_latents


def _ctx(k=5, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, k, d, generator=g), torch.randn(2, k, d, generator=g)
    mask = torch.ones(2, k, dtype=torch.bool)
    mask[1, 3:] = False
    return a, b, mask


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


def test_fit_fills_the_bank_and_checkpoints_keep_it(linear_users, tmp_path):
    train, test = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, inference="bank", bank_size=64)
    fit(model, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    assert model.bank.latents.shape == (64, 4)  # 100 training users, capped at 64
    assert fill_bank(model, train.subset(train.by_user()[0]), 4, per_user=5) == 5
    assert fill_bank(model, train, 4, per_user=5) == 64  # the cap holds
    assert fill_bank(model, train, 4) == 64
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert torch.equal(loaded.bank.latents, model.bank.latents)
    assert loaded.uses_bank
    ev = [evaluate_pairs(m, test, context_size=4).logits for m in (model, loaded)]
    assert np.array_equal(*ev)


def test_checkpoint_without_a_bank_loads(tmp_path):
    model = build("vpl", 12, hidden=16).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "bank.latents"}
    fresh = build("vpl", 12, hidden=16)
    fresh.load_state_dict(state)
    assert fresh.bank.latents.shape == (0, 16)


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


def test_unknown_inference_rejected():
    with pytest.raises(ValueError, match="unknown inference"):
        build("vpl", 12, inference="nope")


def test_auto_inference_uses_the_bank_only_in_head_mode():
    assert build("vpl", 12, hidden=16).inference == "bank"
    assert build("vpl", 12, hidden=16, latent_mode="concat").inference == "amortized"
    assert build("vpl", 12, hidden=16, latent_mode="concat", inference="bank").inference == "bank"
    assert build("vpl", 12, hidden=16, inference="amortized").inference == "amortized"


def _padded_contexts(data):
    from vpl.data.pairs import build_batch

    by = data.by_user()
    users = sorted(by)
    ctx = np.full((len(users), max(len(by[u]) for u in users)), -1, dtype=np.int64)
    for i, u in enumerate(users):
        ctx[i, : len(by[u])] = by[u]
    return np.array(users), build_batch(data, ctx[:, :1], data, ctx)


def test_user_latents_are_the_bank_posterior_given_all_pairs(linear_users):
    train, _ = linear_users
    data = train.subset(np.flatnonzero(train.user < 6))
    torch.manual_seed(0)
    model = build("vpl", data.dim, latent_dim=3, hidden=16, inference="bank").eval()
    model.bank.latents = torch.randn(9, 3)
    users, z = user_latents(model, data, chunk=7)  # a chunk that splits users' pairs
    want_users, batch = _padded_contexts(data)
    assert np.array_equal(users, want_users)
    want = model.bank_posterior(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask).mean
    assert torch.allclose(z, want, atol=1e-5)


def test_refine_retrains_the_decoder_under_the_users_latents(linear_users):
    train, _ = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, bank_size=64, refine_epochs=0,
                  refine_latents="bank")
    fit(model, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    users, z = user_latents(model, train)

    def nll(m):
        with torch.no_grad():
            zz = z[torch.from_numpy(np.searchsorted(users, train.user))]
            items = torch.from_numpy(train.items)
            lg = (m.reward(items[train.chosen].unsqueeze(1), zz)
                  - m.reward(items[train.rejected].unsqueeze(1), zz))
            return float(torch.nn.functional.softplus(-lg).mean())

    nll_before = nll(model)
    refine(model, train, epochs=3, seed=0)
    after = model.state_dict()
    for name in before:
        if name == "bank.latents":
            continue
        moved = not torch.equal(before[name], after[name])
        assert moved == (name.split(".")[0] in ("features", "head_base", "head_from_z")), name
    assert nll(model) < nll_before  # the M-step fits the pairs under the E-step latents
    keep = subsample_rows(len(users), model.bank.size, 0)
    assert model.bank.latents.shape == (64, 4) and torch.equal(model.bank.latents, z[keep])


def test_map_latents_zero_each_users_objective_gradient(linear_users):
    train, _ = linear_users
    data = train.subset(np.flatnonzero(train.user < 5))
    torch.manual_seed(0)
    model = build("vpl", data.dim, latent_dim=3, hidden=16)
    users, z = map_latents(model, data, chunk=9)
    assert np.array_equal(users, np.arange(5)) and z.shape == (5, 3)
    items = torch.from_numpy(data.items)
    for u in users:
        idx = np.flatnonzero(data.user == u)
        zu = z[u].clone().requires_grad_(True)
        lg = (model.reward(items[data.chosen[idx]].unsqueeze(0), zu.unsqueeze(0))
              - model.reward(items[data.rejected[idx]].unsqueeze(0), zu.unsqueeze(0)))
        obj = torch.nn.functional.softplus(-lg).sum() + 0.5 * zu.pow(2).sum()
        (grad,) = torch.autograd.grad(obj, zu)
        assert grad.abs().max() < 1e-3 * max(1.0, float(zu.detach().abs().max()))


def test_refine_with_map_latents_recovers_a_collapsed_encoder(linear_users):
    """An encoder that outputs one latent for everyone (the collapse of relabeled HH): the bank
    E-step can only hand every user that latent; the MAP E-step fits each user's own."""
    train, test = linear_users
    acc = {}
    for estep in ("bank", "map"):
        torch.manual_seed(0)
        model = build("vpl", train.dim, latent_dim=4, hidden=32, refine_epochs=0,
                      refine_latents=estep)
        fit(model, train, None, TrainConfig(epochs=3, seed=0), progress=False)
        with torch.no_grad():
            model.to_posterior.weight.zero_()  # q(z | context) no longer depends on the context
        fill_bank(model, train, context_size=8)
        assert float(model.bank.latents.std(0).max()) < 1e-6
        refine(model, train, epochs=4, seed=0)
        model.eval()
        acc[estep] = evaluate_pairs(model, test, None, context_size=8, seed=0).accuracy
        if estep == "map":
            assert float(model.bank.latents.std(0).max()) > 0.1
    assert acc["bank"] < 0.75
    assert acc["map"] > acc["bank"] + 0.15


def test_refine_latents_are_validated():
    with pytest.raises(ValueError, match="refine_latents"):
        build("vpl", 8, refine_latents="mean")
    with pytest.raises(ValueError, match="needs latent_mode='head'"):
        build("vpl", 8, refine_latents="map", latent_mode="concat")
    assert refine_candidates(build("vpl", 8).config, validated=True) == ("bank", "map")
    assert refine_candidates(build("vpl", 8).config, validated=False) == ("map",)
    assert refine_candidates(build("vpl", 8, label_noise=0.05).config, validated=True) == ("bank",)
    assert refine_candidates(build("vpl", 8, latent_mode="concat").config, validated=True) == ("bank",)
    assert refine_candidates(build("vpl", 8, refine_latents="map").config, validated=True) == ("map",)


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


def _scripted(scores):
    """A validate() that returns the given accuracies in turn."""
    it = iter(scores)
    return lambda: next(it)


def test_refine_keeps_the_epoch_with_the_best_validation_accuracy(linear_users):
    train, _ = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, refine_epochs=0,
                  refine_latents="bank")
    fit(model, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    one_epoch = copy.deepcopy(model)
    refine(one_epoch, train, epochs=1, seed=0)
    # before, then after epochs 1-3: epoch 1 is best, later epochs are worse and get undone
    info = refine(model, train, epochs=3, seed=0, validate=_scripted([0.60, 0.70, 0.65, 0.50]))
    assert info == {"refine_epochs_kept": 1.0, "refine_val_accuracy_before": 0.60,
                    "refine_val_accuracy_after": 0.70, "refine_map": 0.0}
    for name, p in one_epoch.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name


@pytest.mark.parametrize(("estep", "scores"), [
    ("bank", [0.70, 0.70, 0.60]),
    ("auto", [0.70, 0.70, 0.60, 0.70, 0.65, 0.70]),  # bank's run, then map's from the start
])
def test_refine_is_undone_when_validation_accuracy_never_improves(linear_users, estep, scores):
    train, _ = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, refine_epochs=0,
                  refine_latents=estep)
    fit(model, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    before = copy.deepcopy(model.state_dict())
    info = refine(model, train, epochs=2, seed=0, validate=_scripted(scores))
    assert info["refine_epochs_kept"] == 0.0  # a tie keeps the unrefined model
    assert info["refine_map"] == 0.0
    for name, p in before.items():
        assert torch.equal(p, model.state_dict()[name]), name


def test_auto_refinement_keeps_the_map_e_step_when_it_validates_better(linear_users):
    train, _ = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, refine_epochs=0)
    fit(model, train, None, TrainConfig(epochs=2, seed=0), progress=False)
    assert refine_candidates(model.config, validated=True) == ("bank", "map")
    map_only = copy.deepcopy(model)
    map_only.config = dataclasses.replace(model.config, refine_latents="map")
    refine(map_only, train, epochs=1, seed=0, validate=_scripted([0.60, 0.70]))
    # bank: before 0.60, epochs 0.65 / 0.60; map (from the same start): 0.60, 0.70 / 0.60
    info = refine(model, train, epochs=2, seed=0,
                        validate=_scripted([0.60, 0.65, 0.60, 0.60, 0.70, 0.60]))
    assert info == {"refine_epochs_kept": 1.0, "refine_val_accuracy_before": 0.60,
                    "refine_val_accuracy_after": 0.70, "refine_map": 1.0}
    for name, p in map_only.state_dict().items():
        assert torch.equal(p, model.state_dict()[name]), name


def test_fit_passes_its_validation_set_to_the_refinement(linear_users):
    train, val = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, refine_epochs=2)
    res = fit(model, train, val, TrainConfig(epochs=2, seed=0), progress=False)
    assert set(res.after_fit) == {"refine_epochs_kept", "refine_val_accuracy_before",
                                  "refine_val_accuracy_after", "refine_map"}
    assert res.after_fit["refine_val_accuracy_after"] >= res.after_fit["refine_val_accuracy_before"]
    # what fit reports is the accuracy of the model it returns
    got = evaluate_pairs(model, val, pool=train, context_size=8, seed=0).accuracy
    assert got == pytest.approx(res.after_fit["refine_val_accuracy_after"])


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
