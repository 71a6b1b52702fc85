"""The contract every registered model keeps (registry, build, save/load, gradients, context
handling), and the quality of each against BTL on two user types."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.helpers import SMALL, _batch, _make, _replace, _tiny_data
from vpl.checkpoint import load_model, save_model
from vpl.evaluate import evaluate_pairs
from vpl.models import REGISTRY, build
from vpl.models.oracle import oracle_for
from vpl.train import TrainConfig, callbacks_for, fit, seed_everything

NAMES = list(SMALL)
CONTEXT_MODELS = ["mixture", "prototypes", "btl-head", "low-rank"]


def test_models_are_registered():
    assert set(NAMES) <= set(REGISTRY)


def test_build_rejects_unknown():
    with pytest.raises(ValueError, match="unknown model"):
        build("nope", 3)
    with pytest.raises(ValueError, match="no option"):
        build("btl", 3, latent_dim=4)
    assert {"btl", "vpl"} <= set(REGISTRY)


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
