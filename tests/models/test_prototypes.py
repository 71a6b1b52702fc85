"""PAL-style prototypes: the inner fit of the mixture logits."""

from __future__ import annotations

import torch

from vpl.models.prototypes import fit_mixture_logits


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
