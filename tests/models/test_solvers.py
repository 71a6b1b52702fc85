"""Per-user Newton solvers: MAP weights (primal, grouped) and the dual form, and the Laplace
variance."""

from __future__ import annotations

import torch

from vpl.models.solvers import dual_posterior_variance, newton_map, newton_map_dual


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


def test_dual_laplace_variance_is_the_inverse_hessian_diagonal():
    g = torch.Generator().manual_seed(4)
    h, k, lam = 7, 4, 0.5
    x = torch.randn(2, k, h, generator=g, dtype=torch.float64)
    w0 = torch.randn(h, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    beta = newton_map_dual(x, w0, mask, l2=lam, steps=20)
    var = dual_posterior_variance(x, w0, beta, mask, l2=lam)
    for i in range(2):
        xi = x[i][mask[i]]
        w = w0 + xi.T @ beta[i][mask[i]]
        s = torch.sigmoid(xi @ w) * torch.sigmoid(-xi @ w)
        hess = 2 * lam * torch.eye(h, dtype=x.dtype) + xi.T @ (s[:, None] * xi)
        assert torch.allclose(var[i], torch.linalg.inv(hess).diagonal(), atol=1e-10)
