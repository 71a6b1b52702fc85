"""VPL after training: filling the bank, the users' latents (bank posterior or MAP) and the
refinement of the decoder under them, guarded by validation."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from vpl.checkpoint import load_model, save_model
from vpl.evaluate import evaluate_pairs
from vpl.models import build
from vpl.models.bank import subsample_rows
from vpl.train import TrainConfig, fit
from vpl.train.refine import fill_bank, map_latents, refine, refine_candidates, user_latents


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
