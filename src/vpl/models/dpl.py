"""DPL: distributional preference learning, a context-free reward *distribution* per item.

Hidden context (who is annotating) makes one comparison's outcome random; instead of a single
utility, DPL gives each item a distribution of utilities and scores
P(chosen > rejected) = P(U_c > U_r) for independent U_c, U_r. Two parametrizations:

* `dpl-meanvar`: U ~ N(mu(x), sigma(x)^2), so P = Phi((mu_c - mu_r) / sqrt(sigma_c^2 + sigma_r^2)).
* `dpl-categorical`: U takes one of A fixed atoms in [0, 1] with learned probabilities, and
  P = P(U_c > U_r) + 1/2 P(U_c = U_r); a small entropy bonus keeps the distributions spread.

Both ignore the user's context: they model the *spread* of opinions, not whose opinion it is.
Reference: Siththaranjan, Laidlaw & Hadfield-Menell (2024), "Distributional Preference Learning:
Understanding and Accounting for Hidden Context in RLHF", ICLR.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vpl.data.pairs import ContextBatch
from vpl.losses import masked_mean
from vpl.models.base import LossOutput, RewardModel, register
from vpl.models.layers import mlp

# ---------------------------------------------------------------------------- pure likelihoods


def mean_variance_log_probs(mu_c: torch.Tensor, log_sigma_c: torch.Tensor, mu_r: torch.Tensor,
                            log_sigma_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log P(U_c > U_r), log P(U_c < U_r)) for independent Gaussian utilities.

    P(U_c > U_r) = Phi((mu_c - mu_r) / sqrt(sigma_c^2 + sigma_r^2)). Both logs use
    `torch.special.log_ndtr`, which stays accurate far in the tails where `log(Phi(z))` would
    underflow to -inf; their difference is the log-odds.

    References:
      Siththaranjan et al. (2024), Distributional Preference Learning, ICLR (mean-variance DPL).
    """
    scale = torch.sqrt(torch.exp(2 * log_sigma_c) + torch.exp(2 * log_sigma_r))
    z = (mu_c - mu_r) / scale
    return torch.special.log_ndtr(z), torch.special.log_ndtr(-z)


def categorical_win_probs(p_c: torch.Tensor, p_r: torch.Tensor) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """(P(U_c > U_r) + P(tie)/2, P(U_r > U_c) + P(tie)/2) over atoms sorted ascending.

    p_c, p_r: (..., A) probabilities of the same increasing atoms, U_c and U_r independent.
    P(U_c > U_r) = sum_i p_c[i] * P(U_r < atom_i) = sum_i p_c[i] (F_r[i] - p_r[i]), with F the
    inclusive CDF; adding half the tie mass gives sum_i p_c[i] (F_r[i] - p_r[i] / 2). The two
    outputs sum to one; each is computed directly (not as 1 - other) so neither loses precision.

    References:
      Siththaranjan et al. (2024), Distributional Preference Learning, ICLR (categorical DPL).
    """
    win = (p_c * (p_r.cumsum(-1) - 0.5 * p_r)).sum(-1)
    lose = (p_r * (p_c.cumsum(-1) - 0.5 * p_c)).sum(-1)
    return win, lose


def categorical_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Entropy -sum p log p over the last axis, from log-probabilities (no log(0))."""
    return -(log_p.exp() * log_p).sum(-1)


def log_odds_from_probs(win: torch.Tensor, lose: torch.Tensor, eps: float = 1e-6
                        ) -> torch.Tensor:
    """log(win) - log(lose), each clamped to [eps, 1] so saturated models give finite logits."""
    return torch.log(win.clamp(eps, 1.0)) - torch.log(lose.clamp(eps, 1.0))


# ---------------------------------------------------------------------------- mean-variance


@dataclass(frozen=True)
class DPLMeanVarConfig:
    """Gaussian utility per item: an MLP gives (mu, log sigma)."""

    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 2
    """Number of hidden layers."""
    log_sigma_min: float = -5.0
    """Lower clamp on log sigma (keeps 1 / sqrt(sigma_c^2 + sigma_r^2) bounded)."""
    log_sigma_max: float = 3.0
    """Upper clamp on log sigma."""


@register("dpl-meanvar")
class DPLMeanVar(RewardModel):
    """Mean-variance DPL: U(x) ~ N(mu(x), sigma(x)^2); log-odds from Phi, context ignored."""

    Config = DPLMeanVarConfig

    def __init__(self, input_dim: int, config: DPLMeanVarConfig) -> None:
        super().__init__(input_dim, config)
        # no output bias: mu's bias cancels in mu_c - mu_r and would never get a gradient;
        # log sigma's offset, which does matter, is its own parameter
        self.net = mlp(input_dim, config.hidden, 2, config.layers, out_bias=False)
        self.log_sigma_offset = nn.Parameter(torch.zeros(()))

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of items x (..., D), each (...)."""
        mu, log_sigma = self.net(x).unbind(-1)
        log_sigma = (log_sigma + self.log_sigma_offset).clamp(self.config.log_sigma_min,
                                                              self.config.log_sigma_max)
        return mu, log_sigma

    def reward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Mean utility mu(x) (...); z is ignored."""
        return self.distribution(x)[0]

    def _log_probs(self, batch: ContextBatch) -> tuple[torch.Tensor, torch.Tensor]:
        mu_c, ls_c = self.distribution(batch.chosen)  # (B, T) each
        mu_r, ls_r = self.distribution(batch.rejected)
        return mean_variance_log_probs(mu_c, ls_c, mu_r, ls_r)

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        log_win, log_lose = self._log_probs(batch)
        return log_win - log_lose  # (B, T)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        log_win, log_lose = self._log_probs(batch)
        nll = masked_mean(-log_win, batch.target_mask)
        return LossOutput(nll, log_win - log_lose, {"nll": nll.item()})


# ---------------------------------------------------------------------------- categorical


@dataclass(frozen=True)
class DPLCategoricalConfig:
    """Categorical utility per item over `atoms` evenly spaced values in [0, 1]."""

    hidden: int = 256
    """Width of the hidden layers."""
    layers: int = 2
    """Number of hidden layers."""
    atoms: int = 10
    """Number of utility values; only their order matters for P(chosen > rejected)."""
    entropy_weight: float = 0.01
    """Weight of the entropy bonus (mean entropy of the items' utility distributions, in nats)
    subtracted from the NLL; small, as in the paper, to stop distributions collapsing early."""
    eps: float = 1e-6
    """Probability clamp when turning P(chosen > rejected) into log-odds."""


@register("dpl-categorical")
class DPLCategorical(RewardModel):
    """Categorical DPL: p(U(x) = atom_i) = softmax(MLP(x))_i; context ignored."""

    Config = DPLCategoricalConfig

    def __init__(self, input_dim: int, config: DPLCategoricalConfig) -> None:
        super().__init__(input_dim, config)
        if config.atoms < 2:
            raise ValueError(f"dpl-categorical: atoms must be >= 2, got {config.atoms}")
        self.net = mlp(input_dim, config.hidden, config.atoms, config.layers)
        self.register_buffer("atom_values", torch.linspace(0.0, 1.0, config.atoms),
                             persistent=False)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (..., A) of each atom for items x (..., D)."""
        return torch.log_softmax(self.net(x), dim=-1)

    def reward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Expected utility E[U(x)] (...); z is ignored."""
        return self.log_probs(x).exp() @ self.atom_values

    def _parts(self, batch: ContextBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lp_c = self.log_probs(batch.chosen)  # (B, T, A)
        lp_r = self.log_probs(batch.rejected)
        win, lose = categorical_win_probs(lp_c.exp(), lp_r.exp())  # (B, T) each
        entropy = 0.5 * (categorical_entropy(lp_c) + categorical_entropy(lp_r))  # (B, T)
        return win, lose, entropy

    def logits(self, batch: ContextBatch, *, sample: bool = False) -> torch.Tensor:
        win, lose, _ = self._parts(batch)
        return log_odds_from_probs(win, lose, self.config.eps)  # (B, T)

    def loss(self, batch: ContextBatch, *, kl_weight: float = 1.0) -> LossOutput:
        win, lose, entropy = self._parts(batch)
        nll = masked_mean(-torch.log(win.clamp(self.config.eps, 1.0)), batch.target_mask)
        ent = masked_mean(entropy, batch.target_mask)
        loss = nll - self.config.entropy_weight * ent
        logits = log_odds_from_probs(win, lose, self.config.eps)
        return LossOutput(loss, logits, {"nll": nll.item(), "entropy": ent.item()})
