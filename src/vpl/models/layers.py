"""Building blocks shared by every model: one MLP builder and the context encoders."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, layers: int = 2, *, dropout: float = 0.0,
        activation: type[nn.Module] = nn.GELU, out_bias: bool = True) -> nn.Sequential:
    """`layers` hidden layers of width `hidden`, then a linear map to `out_dim`.

    Reward heads use `out_bias=False`: preferences depend only on reward differences, so an
    output bias would be an unidentifiable parameter that never receives a gradient.
    """
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), activation()]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
        d = hidden
    mods.append(nn.Linear(d, out_dim, bias=out_bias))
    return nn.Sequential(*mods)


class PairEncoder(nn.Module):
    """Embeds one comparison (chosen, rejected) into a vector, order-aware (chosen first)."""

    def __init__(self, item_dim: int, hidden: int, out_dim: int, layers: int = 2) -> None:
        super().__init__()
        self.net = mlp(2 * item_dim, hidden, out_dim, layers)

    def forward(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        # (B, K, D), (B, K, D) -> (B, K, H)
        return self.net(torch.cat([chosen, rejected], dim=-1))


class SetEncoder(nn.Module):
    """Permutation-invariant pooling of a padded, masked set of vectors.

    `attention`: one multi-head self-attention block over [seed; set], whose learned seed token
    is read out (pooling by attention, as in Set Transformer's PMA). The seed is always present,
    so an empty context is well defined. `mean`: masked mean followed by an MLP.
    """

    def __init__(self, dim: int, kind: str = "attention", heads: int = 4) -> None:
        super().__init__()
        if kind not in ("attention", "mean"):
            raise ValueError(f"unknown set encoder {kind!r} (attention, mean)")
        self.kind = kind
        if kind == "attention":
            self.seed = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.norm1 = nn.LayerNorm(dim)
            self.ff = mlp(dim, 2 * dim, dim, 1)
            self.norm2 = nn.LayerNorm(dim)
        else:
            self.ff = mlp(dim, dim, dim, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, last: nn.Linear | None = None
                ) -> torch.Tensor:
        """(B, K, H) vectors and mask (B, K), True = real -> (B, H). `last`: an affine layer
        the vectors still have to pass through; `mean` applies it after the mean, which is
        equal (an empty set pools to 0 either way) and takes B rows instead of B * K."""
        if self.kind == "mean":
            m = mask.unsqueeze(-1).to(h.dtype)
            count = m.sum(1)  # (B, 1)
            pooled = (h * m).sum(1) / count.clamp_min(1.0)
            if last is not None:
                pooled = nn.functional.linear(pooled, last.weight)
                if last.bias is not None:
                    pooled = pooled + last.bias * (count > 0).to(h.dtype)
            return self.ff(pooled)
        if last is not None:
            h = last(h)
        b = h.shape[0]
        seed = self.seed.expand(b, -1, -1)  # (B, 1, H)
        x = torch.cat([seed, h], dim=1)  # (B, 1+K, H)
        keep = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # (B, 1+K)
        # the block's output at the seed position: only the seed's query is needed (the other
        # positions' outputs of the self-attention block are never read)
        att, _ = self.attn(seed, x, x, key_padding_mask=~keep, need_weights=False)
        y = self.norm1(seed + att)
        y = self.norm2(y + self.ff(y))
        return y[:, 0]
