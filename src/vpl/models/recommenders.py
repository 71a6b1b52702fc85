"""Recommender baselines where items recur: what a recommender engineer would try first.

Both read only the item identity codes (`vpl.embed.identity`) of the item vectors, never the
text, so they exist only for data whose items recur across users.

* `item-bt`: item popularity, Bradley-Terry on item ids: r(i) = b_i, one score per item
  (0 for items never seen in training). The same for every user.
* `mf-als`: matrix factorization from the `implicit` library (alternating least squares on the
  user-item matrix of chosen items; Hu, Koren and Volinsky, ICDM 2008), on top of item
  popularity: r_u(i) = b_i + alpha * p_u . q_i, the matrix holding +1 for each chosen and -1
  (negative feedback) for each rejected item. A new user's factors p_u are folded in from the
  items chosen and rejected in their context (`recalculate_user`), without retraining; with no context
  p_u = 0 and the model is item popularity. The item factors are fitted after the popularity
  scores (`vpl.train.callbacks.MatrixFactorization`), alpha on the training pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vpl.data.pairs import ContextBatch, PairData
from vpl.models.base import RewardModel, register


def interactions(row: np.ndarray, chosen: np.ndarray, rejected: np.ndarray, users: int,
                 items: int) -> Any:
    """The (users, items) matrix ALS factorizes: +1 for every time a user chose an item, -1 for
    every time they rejected it, summed (negative entries are negative feedback to `implicit`);
    item index -1 (unknown items) is left out."""
    from scipy.sparse import csr_matrix

    r = np.concatenate([row[chosen >= 0], row[rejected >= 0]])
    c = np.concatenate([chosen[chosen >= 0], rejected[rejected >= 0]])
    v = np.concatenate([np.ones((chosen >= 0).sum()), -np.ones((rejected >= 0).sum())])
    mat = csr_matrix((v.astype(np.float32), (r, c)), shape=(users, items))
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


def one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (`implicit` parallelizes itself)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


def _needs_identity(name: str, data: PairData) -> dict[str, Any]:
    if not data.id_dim:
        raise ValueError(f"{name} needs items that recur across users (item identity codes, "
                         "`vpl.embed.identity`); this data has none")
    return {"id_dim": int(data.id_dim)}


@dataclass(frozen=True)
class ItemBTConfig:
    """Item popularity: one Bradley-Terry score per known item."""

    id_dim: int = 0
    """Size of the identity code at the end of every item vector (read off the data)."""


@register("item-bt")
class ItemBT(RewardModel):
    """r(i) = b . code(i): a Bradley-Terry score per item id, no text, no user."""

    Config = ItemBTConfig

    def __init__(self, input_dim: int, config: ItemBTConfig) -> None:
        super().__init__(input_dim, config)
        if not 0 < config.id_dim <= input_dim:
            raise ValueError(f"item-bt: id_dim must be in 1..{input_dim}, got {config.id_dim}")
        self.scores = nn.Linear(config.id_dim, 1, bias=False)
        nn.init.zeros_(self.scores.weight)

    @classmethod
    def options_from_data(cls, data: PairData) -> dict[str, Any]:
        return _needs_identity("item-bt", data)

    def reward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Score b_i of items x (..., D) from their identity codes -> (...)."""
        return self.scores(x[..., -self.config.id_dim:]).squeeze(-1)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        return self.reward(batch.chosen) - self.reward(batch.rejected)  # (B, T)


@dataclass(frozen=True)
class MFConfig:
    """Item popularity plus ALS factors of the `implicit` library, folded in per user."""

    id_dim: int = 0
    """Size of the identity code at the end of every item vector (read off the data)."""
    factors: int = 16
    """Size of the user and item factors."""
    regularization: float = 0.05
    """L2 regularization of ALS."""
    iterations: int = 15
    """ALS sweeps."""


@register("mf-als")
class MatrixFactorizationALS(ItemBT):
    """r_u(i) = b_i + alpha * p_u . q_i with q from ALS and p_u folded in from the context."""

    Config = MFConfig
    uses_context = True

    def __init__(self, input_dim: int, config: MFConfig) -> None:
        super().__init__(input_dim, ItemBTConfig(config.id_dim))
        self.config = config  # the ALS settings too
        self.register_buffer("item_factors", torch.zeros(config.id_dim, config.factors))
        self.register_buffer("alpha", torch.tensor(0.0))
        self.als: Any = None  # the fitted implicit model (rebuilt from item_factors on load)

    @classmethod
    def options_from_data(cls, data: PairData) -> dict[str, Any]:
        return _needs_identity("mf-als", data)

    def item_index(self, x: torch.Tensor) -> torch.Tensor:
        """Vocabulary row of each item (..., D) from its code (-1: not in the vocabulary)."""
        code = x[..., -self.config.id_dim:]
        best = code.abs().max(-1)
        return torch.where(best.values > 0.5, code.argmax(-1), -1)

    def als_model(self) -> Any:
        """The implicit ALS model holding the item factors (for fold-in)."""
        if self.als is None:
            from implicit.cpu.als import AlternatingLeastSquares

            with one_blas_thread():  # implicit warns (and slows down) with a BLAS thread pool
                self.als = AlternatingLeastSquares(factors=self.config.factors,
                                                   regularization=self.config.regularization,
                                                   iterations=self.config.iterations,
                                                   random_state=0)
            self.als.item_factors = self.item_factors.cpu().numpy().astype(np.float32)
        return self.als

    def user_factors(self, ctx_chosen: torch.Tensor, ctx_rejected: torch.Tensor,
                     ctx_mask: torch.Tensor) -> torch.Tensor:
        """Folded-in factors (B, F) of users from the items they chose and rejected in their
        contexts (zeros for an empty context)."""
        rows, k = ctx_mask.shape
        ch = torch.where(ctx_mask, self.item_index(ctx_chosen), -1).reshape(-1).numpy()
        rj = torch.where(ctx_mask, self.item_index(ctx_rejected), -1).reshape(-1).numpy()
        mat = interactions(np.repeat(np.arange(rows), k), ch, rj, rows, self.config.id_dim)
        if not mat.nnz:
            return torch.zeros(rows, self.config.factors)
        f = self.als_model().recalculate_user(np.arange(rows), mat)
        out = torch.from_numpy(np.asarray(f, dtype=np.float32)).reshape(rows, -1)
        has = torch.from_numpy(np.diff(mat.indptr) > 0).unsqueeze(1)
        return torch.where(has, out, 0.0)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        base = self.reward(batch.chosen) - self.reward(batch.rejected)  # (B, T)
        if self.training or float(self.alpha) == 0.0:
            return base
        p = self.user_factors(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask)  # (B, F)
        q = torch.cat([self.item_factors, self.item_factors.new_zeros(1, self.config.factors)])
        qc = q[self.item_index(batch.chosen)]  # (B, T, F); row -1 is the zero row
        qr = q[self.item_index(batch.rejected)]
        return base + self.alpha * ((qc - qr) * p.unsqueeze(1)).sum(-1)
