"""The EM mixture of reward heads."""

from __future__ import annotations

import torch

from vpl.models.mixture import mixture_log_odds


def test_mixture_log_odds_of_one_head_is_that_head():
    logits = torch.tensor([[-3.0, 0.5, 7.0]]).T  # (T, 1)
    assert torch.allclose(mixture_log_odds(torch.zeros(1), logits), logits[:, 0], atol=1e-5)


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
