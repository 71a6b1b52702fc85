"""The training loop: seeding, early stopping, and the validation set its phases see."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vpl.evaluate import evaluate_pairs
from vpl.models import build
from vpl.train import TrainConfig, fit, seed_everything
from vpl.train.optim import adamw, clip_grad_norm


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
    vpl = {"hidden": 16, "refine_epochs": 0, "bank_temperature": 1.0, "item_effects": 0.0}
    model = build(name, small.dim, **(vpl if name == "vpl" else {}))
    res = fit(model, small, small, TrainConfig(epochs=40, patience=patience), progress=False)
    assert res.best_epoch == 0 and len(res.history) == epochs_run


def test_fit_passes_its_validation_set_to_the_refinement(linear_users):
    train, val = linear_users
    model = build("vpl", train.dim, latent_dim=4, hidden=32, refine_epochs=2,
                  bank_temperature=1.0, item_effects=0.0)  # no later phase changes it
    res = fit(model, train, val, TrainConfig(epochs=2, seed=0), progress=False)
    assert {"refine_epochs_kept", "refine_val_accuracy_before", "refine_val_accuracy_after",
            "refine_map"} <= set(res.after_fit)
    assert res.after_fit["refine_val_accuracy_after"] >= res.after_fit["refine_val_accuracy_before"]
    # what fit reports is the accuracy of the model it returns
    got = evaluate_pairs(model, val, pool=train, context_size=8, seed=0).accuracy
    assert got == pytest.approx(res.after_fit["refine_val_accuracy_after"])


def test_adamw_takes_the_fused_kernel_and_equals_the_per_tensor_loop():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 1))
    twin, start = copy.deepcopy(net), copy.deepcopy(net)
    fast = adamw(net.parameters(), lr=1e-2, weight_decay=0.1)
    slow = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert fast.defaults["fused"] and not slow.defaults["fused"]
    x = torch.randn(32, 6)
    for _ in range(20):
        for m, opt in ((net, fast), (twin, slow)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for a, b, a0 in zip(net.parameters(), twin.parameters(), start.parameters(), strict=True):
        assert (a - a0).abs().max() > 1e-3  # they trained
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # parameter groups (the LoRA phase's two learning rates) take it too
    groups = adamw([{"params": net[0].parameters(), "lr": 1e-3},
                    {"params": net[2].parameters()}], lr=1e-2)
    assert groups.defaults["fused"] and [g["lr"] for g in groups.param_groups] == [1e-3, 1e-2]


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipped, and within the bound
def test_clip_grad_norm_equals_torchs_bit_for_bit(max_norm):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 1))
    twin = copy.deepcopy(net)
    x = torch.randn(32, 6)
    for m in (net, twin):
        m(x).square().mean().backward()
    before = [p.grad.clone() for p in net.parameters()]
    ours = clip_grad_norm(list(net.parameters()), max_norm)
    theirs = torch.nn.utils.clip_grad_norm_(list(twin.parameters()), max_norm)
    assert torch.equal(ours, theirs)
    for a, b, g in zip(net.parameters(), twin.parameters(), before, strict=True):
        assert torch.equal(a.grad, b.grad)
        assert torch.equal(a.grad, g) == (max_norm > float(theirs))  # scaled only when clipped


def test_groups_per_step_default_depends_on_whether_the_model_reads_a_context(linear_users,
                                                                            monkeypatch):
    from vpl.train import loop

    train, _ = linear_users
    vpl, btl = build("vpl", train.dim, hidden=16), build("btl", train.dim)
    assert vpl.uses_context and not btl.uses_context
    assert loop.groups_per_step(TrainConfig(), vpl) == 16
    assert loop.groups_per_step(TrainConfig(), btl) == 8
    assert loop.groups_per_step(TrainConfig(users_per_batch=5), vpl) == 5
    # fit builds its batches with it
    asked = []
    real = loop.training_batches

    def spy(*args, **kwargs):
        asked.append(kwargs["users_per_batch"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "training_batches", spy)
    small = train.subset(np.arange(200))
    for model in (vpl, btl):
        fit(model, small, None, TrainConfig(epochs=1), progress=False, callbacks=[])
    assert asked == [16, 8]
