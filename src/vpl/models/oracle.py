"""Oracle-type: one reward MLP per declared user type, the upper bound for type-based data.

Each comparison is scored by the head of its user's declared type (`PairData.user_types`), so
the model knows what context-based models must infer. The heads share nothing, so the joint
BT loss equals training one BTL model per type on that type's pairs.

The type names live in the config (sorted, JSON lists accepted), which fixes the number of heads
for `build(name, input_dim, **config)`; `oracle_for(data)` fills them from a dataset. `bind(data)`
maps the bound dataset's user indices to head ids; `batch.user` then picks each row's head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from vpl.data.pairs import ContextBatch, PairData
from vpl.models.base import RewardModel, build_for, register
from vpl.models.layers import mlp


@dataclass(frozen=True)
class OracleConfig:
    """The known user types and the per-type reward MLP."""

    types: tuple[str, ...] = ()
    """Sorted names of the user types, one reward head each (a JSON list is accepted)."""
    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 2
    """Number of hidden layers."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(str(t) for t in self.types))


@register("oracle-type")
class OracleType(RewardModel):
    """r(x, u) = MLP_{type(u)}(x); the type comes from the bound dataset, not from context."""

    Config = OracleConfig

    def __init__(self, input_dim: int, config: OracleConfig) -> None:
        super().__init__(input_dim, config)
        c = config
        if not c.types:
            raise ValueError("oracle-type: config.types is empty; build it with "
                             "vpl.models.oracle.oracle_for(train_data) or pass types=[...]")
        if len(set(c.types)) != len(c.types):
            raise ValueError(f"oracle-type: duplicate names in types {list(c.types)}")
        self.heads = nn.ModuleList(
            mlp(input_dim, c.hidden, 1, c.layers, out_bias=False) for _ in c.types)
        self.register_buffer("user_type_id", torch.empty(0, dtype=torch.long), persistent=False)
        self._bound: PairData | None = None

    @classmethod
    def options_from_data(cls, data: PairData) -> dict[str, Any]:
        """One head per declared user type of the training data (sorted names)."""
        if data.user_types is None or all(t is None for t in data.user_types):
            raise ValueError("oracle-type needs records with a `user_type` field")
        return {"types": sorted({t for t in data.user_types if t is not None})}

    def bind(self, data: PairData) -> None:
        """Map every user index of `data` to its head (-1 when the type is unknown)."""
        index = {t: i for i, t in enumerate(self.config.types)}
        types = data.user_types or [None] * len(data.users)
        ids = [index.get(t, -1) if t is not None else -1 for t in types]
        self.user_type_id = torch.tensor(ids, dtype=torch.long, device=self.user_type_id.device)
        self._bound = data

    def _type_ids(self, user: torch.Tensor) -> torch.Tensor:
        if self._bound is None:
            raise RuntimeError("oracle-type: call model.bind(data) before scoring, so batch.user "
                               "can be mapped to declared user types")
        if len(user) and int(user.max()) >= len(self.user_type_id):
            raise IndexError(f"oracle-type: batch.user {int(user.max())} is not a user of the "
                             f"bound dataset ({len(self.user_type_id)} users)")
        ids = self.user_type_id.to(user.device)[user]  # (B,)
        bad = (ids < 0).nonzero().flatten()
        if len(bad):
            u = int(user[bad[0]])
            raise ValueError(f"oracle-type: user {self._bound.users[u]!r} has type "
                             f"{self._bound.user_type_of(u)!r}, which is not one of the model's "
                             f"types {list(self.config.types)}")
        return ids

    def rewards(self, x: torch.Tensor) -> torch.Tensor:
        """Rewards of items x (..., D) under every type's head -> (..., M)."""
        return torch.cat([head(x) for head in self.heads], dim=-1)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        ids = self._type_ids(batch.user)  # (B,)
        diff = self.rewards(batch.chosen) - self.rewards(batch.rejected)  # (B, T, M)
        pick = ids.view(-1, 1, 1).expand(-1, diff.shape[1], 1)  # (B, T, 1)
        return diff.gather(-1, pick).squeeze(-1)  # (B, T)


def oracle_for(data: PairData, **overrides: Any) -> OracleType:
    """An `oracle-type` model with one head per declared type in `data` (sorted names)."""
    return cast(OracleType, build_for("oracle-type", data, **overrides))
