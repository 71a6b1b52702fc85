"""Embedded comparisons and the padded batches models read.

Text (or maze states) become item vectors once; a comparison is then a pair of item indices
plus a user index. A *context* for a target pair of user u is a set of K other comparisons of
u, padded to a common K and masked, so any model runs on a whole batch of users at once
(sampled by `vpl.data.contexts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class PairData:
    """Comparisons over a matrix of item vectors.

    items: (N, D) item vectors; item_keys: (N,) ids that are equal iff two items show the same
    response (used for item-disjoint evaluation); user/chosen/rejected: (P,) indices.
    """

    items: np.ndarray
    user: np.ndarray
    chosen: np.ndarray
    rejected: np.ndarray
    users: list[str]
    item_keys: np.ndarray | None = None
    user_types: list[str | None] | None = None
    pair_keys: list[str] | None = None
    id_dim: int = 0
    """How many trailing columns of `items` are item identity codes (`vpl.embed.identity`)."""
    _by_user: dict[int, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.items = np.ascontiguousarray(self.items, dtype=np.float32)
        for name in ("user", "chosen", "rejected"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        if self.item_keys is None:
            self.item_keys = np.arange(len(self.items), dtype=np.int64)
        if not (len(self.user) == len(self.chosen) == len(self.rejected)):
            raise ValueError("user, chosen and rejected must have the same length")

    @property
    def dim(self) -> int:
        """Item vector size D."""
        return int(self.items.shape[1])

    def __len__(self) -> int:
        return len(self.user)

    def by_user(self) -> dict[int, np.ndarray]:
        """Pair indices of each user index that has pairs."""
        if self._by_user is None:
            order = np.argsort(self.user, kind="stable")
            uniq, starts = np.unique(self.user[order], return_index=True)
            self._by_user = dict(zip(uniq.tolist(), np.split(order, starts[1:]), strict=True))
        return self._by_user

    def subset(self, idx: np.ndarray) -> PairData:
        """The same items and users, restricted to the given pairs."""
        idx = np.asarray(idx, dtype=np.int64)
        return PairData(
            items=self.items, user=self.user[idx], chosen=self.chosen[idx],
            rejected=self.rejected[idx], users=self.users, item_keys=self.item_keys,
            user_types=self.user_types,
            pair_keys=None if self.pair_keys is None else [self.pair_keys[i] for i in idx],
            id_dim=self.id_dim,
        )

    def user_type_of(self, u: int) -> str | None:
        """The declared type of user index u, if the data has types."""
        return None if self.user_types is None else self.user_types[u]


@dataclass(frozen=True)
class ContextBatch:
    """B target groups, each with T target pairs and a context of up to K pairs of its user.

    ctx_chosen, ctx_rejected: (B, K, D); ctx_mask: (B, K) True for real pairs.
    chosen, rejected: (B, T, D); target_mask: (B, T) True for real targets; user: (B,).
    Optionally (`build_batch(..., distinct=True)`) the distinct context pairs once:
    ctx_distinct: their chosen and rejected vectors (n, D) x2; ctx_slot: (B, K) which of them
    fills each context slot (0 where padded). Contexts drawn from one user's pairs overlap, so
    a model may score the n distinct pairs instead of the B * K slots.
    """

    ctx_chosen: torch.Tensor
    ctx_rejected: torch.Tensor
    ctx_mask: torch.Tensor
    chosen: torch.Tensor
    rejected: torch.Tensor
    target_mask: torch.Tensor
    user: torch.Tensor
    ctx_slot: torch.Tensor | None = None
    ctx_distinct: tuple[torch.Tensor, torch.Tensor] | None = None

    def to(self, device: torch.device | str) -> ContextBatch:
        """Move every tensor to a device."""
        return ContextBatch(
            *(t.to(device) for t in (self.ctx_chosen, self.ctx_rejected, self.ctx_mask,
                                     self.chosen, self.rejected, self.target_mask, self.user)),
            ctx_slot=None if self.ctx_slot is None else self.ctx_slot.to(device),
            ctx_distinct=(None if self.ctx_distinct is None
                          else (self.ctx_distinct[0].to(device), self.ctx_distinct[1].to(device))))


def _gather(items: np.ndarray, idx: np.ndarray) -> torch.Tensor:
    # idx: (B, M) with -1 for padding -> (B, M, D), zeros where padded
    out = items[np.maximum(idx, 0)]
    out[idx < 0] = 0.0
    return torch.from_numpy(out)


def build_batch(targets: PairData, target_idx: np.ndarray, pool: PairData,
                ctx_idx: np.ndarray, *, distinct: bool = False) -> ContextBatch:
    """Tensors for target pairs `target_idx` (B, T) and context pairs `ctx_idx` (B, K) of `pool`
    (with `distinct`, also the distinct context pairs and the slot each fills).

    Padding entries are -1 in either index array.
    """
    t_ok = target_idx >= 0
    c_ok = ctx_idx >= 0
    t_safe = np.maximum(target_idx, 0)
    c_safe = np.maximum(ctx_idx, 0)
    t_ch = np.where(t_ok, targets.chosen[t_safe], -1)
    t_rj = np.where(t_ok, targets.rejected[t_safe], -1)
    c_ch = np.where(c_ok, pool.chosen[c_safe], -1)
    c_rj = np.where(c_ok, pool.rejected[c_safe], -1)
    first = np.where(t_ok.any(1), t_safe[np.arange(len(t_safe)), t_ok.argmax(1)], 0)
    slot = ctx_distinct = None
    if distinct and c_ok.any():  # (not for empty contexts)
        pairs, inverse = np.unique(ctx_idx[c_ok], return_inverse=True)
        filled = np.zeros(ctx_idx.shape, dtype=np.int64)
        filled[c_ok] = inverse
        slot = torch.from_numpy(filled)
        ctx_distinct = (torch.from_numpy(pool.items[pool.chosen[pairs]]),
                        torch.from_numpy(pool.items[pool.rejected[pairs]]))
    return ContextBatch(
        ctx_chosen=_gather(pool.items, c_ch),
        ctx_rejected=_gather(pool.items, c_rj),
        ctx_mask=torch.from_numpy(c_ok),
        chosen=_gather(targets.items, t_ch),
        rejected=_gather(targets.items, t_rj),
        target_mask=torch.from_numpy(t_ok),
        user=torch.from_numpy(targets.user[first]),
        ctx_slot=slot,
        ctx_distinct=ctx_distinct,
    )
