"""The EM mixture of reward heads."""

from __future__ import annotations

import pytest
import torch

from vpl.models.mixture import mixture_log_odds


def test_mixture_log_odds_of_one_head_is_that_head():
    logits = torch.tensor([[-3.0, 0.5, 7.0]]).T  # (T, 1)
    assert torch.allclose(mixture_log_odds(torch.zeros(1), logits), logits[:, 0], atol=1e-5)


def test_mixture_log_odds_are_exact_with_and_without_gradients_and_where_sums_underflow():
    g = torch.Generator().manual_seed(1)
    log_w = torch.log_softmax(3 * torch.randn(4, 6, generator=g), -1)
    logits = 5 * torch.randn(4, 3, 6, generator=g)
    logits[0, 0] = -200.0  # P underflows in float32: log-odds near -200
    logits[1, 1] = 150.0 + torch.arange(6.0)  # 1 - P underflows
    lw, lg = log_w.double().unsqueeze(-2), logits.double()
    want = (torch.logsumexp(lw + torch.nn.functional.logsigmoid(lg), -1)
            - torch.logsumexp(lw + torch.nn.functional.logsigmoid(-lg), -1)).float()
    with torch.no_grad():
        fast = mixture_log_odds(log_w, logits)
    torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-4)
    assert fast[0, 0] == pytest.approx(-200.0, abs=1e-3) and fast[1, 1] > 150
    graded = logits.clone().requires_grad_()
    out = mixture_log_odds(log_w, graded)
    torch.testing.assert_close(out.detach(), want, rtol=1e-5, atol=1e-4)
    out.sum().backward()
    assert torch.isfinite(graded.grad).all()


def test_head_posterior_adds_the_context_log_likelihood_to_the_prior():
    from vpl.models.mixture import head_posterior

    g = torch.Generator().manual_seed(0)
    log_prior = torch.log_softmax(torch.randn(3, generator=g), 0)
    logits = torch.randn(2, 4, 3, generator=g)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    post = head_posterior(log_prior, logits, mask)
    ll = torch.nn.functional.logsigmoid(logits[0, :2]).sum(0)
    assert torch.allclose(post[0], torch.log_softmax(log_prior + ll, 0), atol=1e-6)
    assert torch.allclose(post[1], log_prior, atol=1e-6)  # no context: the prior
    junk = logits.clone()
    junk[~mask] = 1e4
    assert torch.allclose(head_posterior(log_prior, junk, mask), post)
