"""Named model presets: a registry name plus options over that model's defaults.

Every layer that picks a model by name (`vpl train --model`, `vpl bench --models`, the maze's
reward models) resolves it here, so a preset means the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from vpl.models.base import REGISTRY

PAPER_VPL: dict[str, Any] = {"latent_mode": "concat", "set_encoder": "attention",
                             "context_nll": 0.0}
"""The VPL paper's formulation (Poddar et al., 2024): z concatenated to the item, an attention
set encoder over raw item pairs, and the likelihood of the target pairs only."""

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "btl": ("btl", {}),
    "dpl-meanvar": ("dpl-meanvar", {}),
    "dpl-categorical": ("dpl-categorical", {}),
    "mixture": ("mixture", {}),
    "prototypes": ("prototypes", {}),
    "btl-head": ("btl-head", {}),
    "low-rank": ("low-rank", {}),
    "low-rank-map": ("low-rank", {"inference": "map"}),
    "vpl": ("vpl", {}),
    "vpl-amortized": ("vpl", {"inference": "amortized"}),
    "vpl-mean": ("vpl", {"bank_predict": "mean"}),
    "vpl-untempered": ("vpl", {"bank_temperature": 1.0, "item_effects": 0.0}),
    "vpl-attention": ("vpl", {"set_encoder": "attention"}),
    "vpl-concat": ("vpl", {"latent_mode": "concat", "context_nll": 0.0}),
    "vpl-paper": ("vpl", PAPER_VPL),
    "vpl-linear": ("vpl", {"layers": 1, "latent_dim": 4}),
    "vpl-mlp": ("vpl", {"layers": 2}),
    "item-bt": ("item-bt", {}),
    "mf-als": ("mf-als", {}),
    "oracle-type": ("oracle-type", {}),
}
"""Preset name -> (registry name, options over the model's defaults).
`vpl-paper`: the paper's formulation (`PAPER_VPL`); `vpl-concat`: z concatenated to the item
with mean pooling, kept to show the latent collapsing; `vpl-mean` predicts under the posterior mean latent instead of the bank's posterior predictive;
`vpl-untempered` keeps Bayes' rule in the bank (temperature 1) and no item effects, as before
they were chosen on held-out users; `vpl-amortized` infers z
with the encoder alone, as the paper does (`vpl` uses the latent bank); `low-rank-map` infers a new
user's weights by MAP under a Gaussian prior (`low-rank`: bank); `vpl-linear`: linear reward
features with a 4-d latent, the low-rank model's structure; `vpl-mlp`: reward features with
one hidden layer."""


def resolve(name: str, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """(registry name, options) of a preset or a registered model, with `overrides` on top."""
    if name in PRESETS:
        model, options = PRESETS[name]
        return model, {**options, **overrides}
    if name in REGISTRY:
        return name, dict(overrides)
    raise ValueError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}")
