"""Per-user MAP fits of L2-regularized Bradley-Terry (logistic) objectives by Newton's method.

Every personalized model that fits a user's weights to their comparisons solves
    min_w  sum_k -log sigmoid(o_k + w . g_k) + (1/2)(w - m)^T P (w - m),
which is strictly convex. `newton_map` solves it in the primal, for many users at once with
pairs grouped by owner (B x B solves per user); `newton_map_dual` in the dual, for a context of
K pairs per batch row when the weights live in a wide feature space (K x K solves). Both are
plain tensor programs, differentiable in their inputs, so models can train through them.
"""

from __future__ import annotations

import torch


def newton_map(g: torch.Tensor, owner: torch.Tensor, groups: int, prior_mean: torch.Tensor,
               prior_prec: torch.Tensor, *, steps: int, offset: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """MAP weights of `groups` users from their pairs' basis differences, by Newton's method.

    g: (P, B) basis-reward differences v(chosen) - v(rejected) of each pair; owner: (P,) the
    group (0..groups-1) each pair belongs to; prior N(prior_mean (B,), prior_prec^-1 (B, B));
    offset: (P,) a fixed part o_k of each pair's logit (default 0).
    Minimizes sum_{k of u} -log sigmoid(o_k + w_u . g_k) + (1/2)(w_u - m)^T P (w_u - m) for every
    group at once, from w = m. Pairs are accumulated with index_add, so groups of very
    different sizes cost no padding. Returns (weights (groups, B), Hessians (groups, B, B)) at
    the last iterate; differentiable in g.
    """
    b = g.shape[1]
    w = prior_mean.expand(groups, b).clone()
    outer = g.unsqueeze(-1) * g.unsqueeze(-2)  # (P, B, B)
    hess = prior_prec.expand(groups, b, b)
    for step in range(steps + 1):
        t = (w[owner] * g).sum(-1)  # (P,) margins
        if offset is not None:
            t = t + offset
        grad = torch.zeros_like(w).index_add(0, owner, -torch.sigmoid(-t).unsqueeze(-1) * g)
        grad = grad + (w - prior_mean) @ prior_prec
        curv = (torch.sigmoid(t) * torch.sigmoid(-t)).view(-1, 1, 1) * outer
        hess = prior_prec + torch.zeros(groups, b, b, dtype=g.dtype, device=g.device
                                        ).index_add(0, owner, curv)
        if step == steps:
            break
        w = w - torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
    return w, hess


def newton_map_dual(x: torch.Tensor, w0: torch.Tensor, mask: torch.Tensor, *, l2: float,
                    steps: int) -> torch.Tensor:
    """Newton steps for beta (B, K) with w = w0 + X^T beta minimizing the L2-regularized
    logistic loss sum_k -log sigmoid(w . x_k) + l2 ||w - w0||^2.

    x: (B, K, H) context feature differences; w0: (H,) prior head; mask: (B, K) True = real.
    Differentiable in x and w0 (the steps are plain tensor ops).
    """
    w = mask.to(x.dtype)  # (B, K)
    x = x * w.unsqueeze(-1)  # padded rows -> 0
    gram = x @ x.transpose(1, 2)  # (B, K, K)
    base = x @ w0  # (B, K)
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    beta = x.new_zeros(x.shape[:2])  # (B, K)
    for _ in range(steps):
        t = base + (gram @ beta.unsqueeze(-1)).squeeze(-1)  # (B, K) margins
        curv = torch.sigmoid(t) * torch.sigmoid(-t) * w  # (B, K) diag of S
        rhs = 2 * l2 * beta - torch.sigmoid(-t) * w  # (B, K)
        lhs = curv.unsqueeze(-1) * gram + 2 * l2 * eye  # (B, K, K) S G + 2 l2 I
        beta = beta - torch.linalg.solve(lhs, rhs.unsqueeze(-1)).squeeze(-1)
    return beta


def dual_posterior_variance(x: torch.Tensor, w0: torch.Tensor, beta: torch.Tensor,
                            mask: torch.Tensor, *, l2: float) -> torch.Tensor:
    """Diagonal (B, H) of the inverse Hessian (Laplace covariance) of `newton_map_dual`'s
    objective at w = w0 + X^T beta, without forming an H x H matrix.

    The Hessian is c I + X^T S X with c = 2 l2 and S = diag(sigmoid(t) sigmoid(-t)); by
    Woodbury its inverse is I / c - X^T R^{1/2} (c I + R^{1/2} G R^{1/2})^{-1} R^{1/2} X / c,
    where G = X X^T (K x K). x: (B, K, H); beta: (B, K); mask: (B, K).
    """
    w = mask.to(x.dtype)
    x = x * w.unsqueeze(-1)  # (B, K, H) padded rows -> 0
    gram = x @ x.transpose(1, 2)  # (B, K, K)
    t = x @ w0 + (gram @ beta.unsqueeze(-1)).squeeze(-1)  # (B, K) margins
    root = (torch.sigmoid(t) * torch.sigmoid(-t) * w).sqrt()  # (B, K) S^{1/2}
    c = 2.0 * l2
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    inner = c * eye + root.unsqueeze(-1) * gram * root.unsqueeze(-2)  # (B, K, K)
    y = root.unsqueeze(-1) * x  # (B, K, H) S^{1/2} X
    sol = torch.linalg.solve(inner, y)  # (B, K, H)
    return (1.0 - (y * sol).sum(1)) / c  # (B, H)
