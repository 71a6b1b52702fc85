"""Per-user item effects: what a user's own answers say about the very items they judged.

A latent z carries a user's taste in a form that transfers to new items. Some of what a user's
comparisons say does not transfer: that this user liked *this* joke or argument, more than
their taste predicts. A random-effects model keeps the two apart,

    r_u(i) = r(x_i, z_u) + delta_ui,    delta_ui ~ N(0, s^2) independent across items,

so that delta absorbs the item-specific part of the context and z is left with the part that
generalizes. Given the context and the model's probabilities p_k of its pairs (under the user's
posterior), each context item's offset is one Newton step from delta = 0:

    delta_i = s^2 g_i / (1 + s^2 h_i),   g_i = sum_k sign_ik (1 - p_k),   h_i = sum_k p_k (1 - p_k)

over the context pairs k that hold item i (sign +1 where it was chosen, -1 where rejected).
Items absent from the context keep delta = 0, so predictions on new items are the latent's
alone, and an empty context changes nothing. Items are matched by their vectors (identical
texts embed identically). s^2 (`strength`) is chosen on held-out training users
(`vpl.train.temper`).
"""

from __future__ import annotations

import torch

from vpl.data.pairs import ContextBatch


def context_batch(batch: ContextBatch) -> ContextBatch:
    """The batch's context pairs as its targets (to score a context under its own posterior)."""
    return ContextBatch(batch.ctx_chosen, batch.ctx_rejected, batch.ctx_mask, batch.ctx_chosen,
                        batch.ctx_rejected, batch.ctx_mask, batch.user)


def _offsets(items: torch.Tensor, batch: ContextBatch, resid: torch.Tensor, curv: torch.Tensor,
             strength: float) -> torch.Tensor:
    """delta (B, T) of target items (B, T, D) from context residuals and curvatures (B, K)."""
    won = (items.unsqueeze(2) == batch.ctx_chosen.unsqueeze(1)).all(-1)  # (B, T, K)
    lost = (items.unsqueeze(2) == batch.ctx_rejected.unsqueeze(1)).all(-1)
    mask = batch.ctx_mask.unsqueeze(1)
    won, lost = won & mask, lost & mask
    g = ((won.float() - lost.float()) * resid.unsqueeze(1)).sum(-1)
    h = ((won | lost).float() * curv.unsqueeze(1)).sum(-1)
    return strength * g / (1.0 + strength * h)


def context_item_effects(batch: ContextBatch, ctx_logits: torch.Tensor, strength: float
                         ) -> torch.Tensor:
    """Logit offsets (B, T) delta_chosen - delta_rejected of the target pairs, from the
    log-odds (B, K) the model gives the batch's own context pairs (see the module docstring)."""
    if strength <= 0 or not bool(batch.ctx_mask.any()):
        return torch.zeros_like(batch.target_mask, dtype=ctx_logits.dtype)
    p = torch.sigmoid(ctx_logits)
    resid, curv = 1.0 - p, p * (1.0 - p)
    return (_offsets(batch.chosen, batch, resid, curv, strength)
            - _offsets(batch.rejected, batch, resid, curv, strength))
