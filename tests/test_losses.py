import math

import pytest
import torch

from vpl.losses import (
    bradley_terry_nll,
    gaussian_kl,
    kl_anneal,
    kl_with_free_bits,
    masked_mean,
    noisy_logits,
    pair_accuracy,
    preference_log_likelihood,
)


def test_bradley_terry_known_values():
    logits = torch.tensor([0.0, 2.0, -1.0])
    expected = [math.log(2.0), math.log1p(math.exp(-2.0)), math.log1p(math.exp(1.0))]
    assert bradley_terry_nll(logits).item() == pytest.approx(sum(expected) / 3, rel=1e-6)


def test_bradley_terry_mask_and_stability():
    logits = torch.tensor([[0.0, 1000.0], [-1000.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[True, False], [True, True]])
    loss = bradley_terry_nll(logits, mask)
    assert loss.item() == pytest.approx((math.log(2.0) + 1000.0 + math.log1p(math.exp(-3))) / 3)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0.0  # masked entry gets no gradient


def test_label_noise_likelihood_known_values_and_bounds():
    eps = 0.05
    logits = torch.tensor([-1e4, -3.0, 0.0, 2.0, 1e4])
    ll = preference_log_likelihood(logits, eps)
    want = [math.log(eps + (1 - 2 * eps) / (1 + math.exp(-x))) for x in (-700.0, -3.0, 0.0, 2.0)]
    want.append(math.log(1 - eps))
    assert ll.tolist() == pytest.approx(want, rel=1e-5)  # -1e4: the floor log(eps), not -1e4
    assert torch.equal(preference_log_likelihood(logits, 0.0), torch.nn.functional.logsigmoid(logits))
    assert bradley_terry_nll(torch.tensor([0.0]), label_noise=eps).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError, match="label_noise"):
        preference_log_likelihood(logits, 0.5)


def test_noisy_logits_keep_the_sign_and_give_the_noisy_probability():
    eps = 0.1
    logits = torch.tensor([-50.0, -0.3, 0.0, 0.7, 50.0], requires_grad=True)
    out = noisy_logits(logits, eps)
    p = eps + (1 - 2 * eps) * torch.sigmoid(logits)
    assert torch.allclose(torch.sigmoid(out), p, atol=1e-6)
    assert torch.equal(torch.sign(out), torch.sign(logits))
    assert out.abs().max().item() == pytest.approx(math.log((1 - eps) / eps), rel=1e-5)
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert noisy_logits(logits, 0.0) is logits


def test_gaussian_kl_known_values():
    assert gaussian_kl(torch.zeros(3), torch.zeros(3)).sum().item() == 0.0
    # KL(N(1, e^2) || N(0, 1)) = 0.5 * (1 + e^2 - 1 - 2)
    kl = gaussian_kl(torch.tensor([1.0]), torch.tensor([2.0])).item()
    assert kl == pytest.approx(0.5 * (1 + math.exp(2.0) - 1 - 2.0))


def test_free_bits_floor_and_gradients():
    mean = torch.zeros(4, 3, requires_grad=True)
    logvar = torch.zeros(4, 3, requires_grad=True)
    assert kl_with_free_bits(mean, logvar, 0.0).item() == 0.0
    assert kl_with_free_bits(mean, logvar, 0.5).item() == pytest.approx(1.5)
    mean2 = torch.full((4, 3), 2.0, requires_grad=True)
    kl = kl_with_free_bits(mean2, torch.zeros(4, 3), 0.1)
    kl.backward()
    assert kl.item() == pytest.approx(3 * 2.0)
    assert torch.isfinite(mean2.grad).all() and (mean2.grad > 0).all()


@pytest.mark.parametrize("schedule", ["linear", "cosine", "cyclical", "constant"])
def test_kl_anneal_bounds(schedule):
    values = [kl_anneal(schedule, p / 100) for p in range(101)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[-1] == pytest.approx(1.0) or schedule == "cyclical"
    if schedule != "constant":
        assert values[0] == pytest.approx(0.0)


def test_kl_anneal_rejects_unknown():
    with pytest.raises(ValueError, match="unknown KL schedule"):
        kl_anneal("sigmoid", 0.5)


def test_masked_mean_and_accuracy():
    v = torch.tensor([1.0, 2.0, 3.0])
    assert masked_mean(v, torch.tensor([True, False, True])).item() == 2.0
    assert pair_accuracy(torch.tensor([1.0, -1.0, 0.0, 2.0])).item() == pytest.approx(0.625)
