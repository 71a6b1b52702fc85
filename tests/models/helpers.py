"""Tiny problems shared by the model tests: random D-dim items of four users of two types,
random context batches, and small configurations of every baseline model."""

from __future__ import annotations

import numpy as np
import torch

from vpl.data.pairs import ContextBatch, PairData
from vpl.models import build
from vpl.train import seed_everything

D = 12
SMALL = {
    "dpl-meanvar": {"hidden": 16},
    "dpl-categorical": {"hidden": 16, "atoms": 6},
    "mixture": {"hidden": 16, "heads": 3},
    "prototypes": {"hidden": 16, "feature_dim": 8, "prototypes": 3},
    "btl-head": {"hidden": 16},
    "low-rank": {"rank": 3},
    "oracle-type": {"hidden": 16, "types": ["type0", "type1"]},
}


def _tiny_data(n_users: int = 4, seed: int = 0) -> PairData:
    """Users of alternating types type0/type1 over random D-dim items."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(30, D)).astype(np.float32)
    user = np.repeat(np.arange(n_users), 6)
    pairs = np.stack([rng.choice(30, 2, replace=False) for _ in user])
    return PairData(items=items, user=user, chosen=pairs[:, 0], rejected=pairs[:, 1],
                    users=[f"u{i}" for i in range(n_users)],
                    user_types=[f"type{i % 2}" for i in range(n_users)])


def _batch(B: int = 4, T: int = 3, K: int = 5, seed: int = 0, scale: float = 1.0
           ) -> ContextBatch:
    """Random batch; row 0 has 3 real context pairs, row 1 none, the others K."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1, :] = False
    return ContextBatch(
        ctx_chosen=scale * torch.randn(B, K, D, generator=g),
        ctx_rejected=scale * torch.randn(B, K, D, generator=g), ctx_mask=mask,
        chosen=scale * torch.randn(B, T, D, generator=g),
        rejected=scale * torch.randn(B, T, D, generator=g),
        target_mask=torch.ones(B, T, dtype=torch.bool), user=torch.arange(B) % 4)


def _make(name: str, seed: int = 0):
    seed_everything(seed)
    model = build(name, D, **SMALL[name])
    model.bind(_tiny_data())  # user indices of _batch -> users u0..u3 (oracle needs types)
    return model


def _replace(b: ContextBatch, **kw) -> ContextBatch:
    fields = {k: getattr(b, k) for k in ("ctx_chosen", "ctx_rejected", "ctx_mask", "chosen",
                                         "rejected", "target_mask", "user")}
    return ContextBatch(**{**fields, **kw})


def vpl_batch(B=3, T=2, K=5, D=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    from vpl.data.pairs import ContextBatch

    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 3:] = False
    return ContextBatch(
        ctx_chosen=torch.randn(B, K, D, generator=g), ctx_rejected=torch.randn(B, K, D, generator=g),
        ctx_mask=mask, chosen=torch.randn(B, T, D, generator=g),
        rejected=torch.randn(B, T, D, generator=g), target_mask=torch.ones(B, T, dtype=torch.bool),
        user=torch.arange(B))


def _ctx(k=5, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, k, d, generator=g), torch.randn(2, k, d, generator=g)
    mask = torch.ones(2, k, dtype=torch.bool)
    mask[1, 3:] = False
    return a, b, mask
