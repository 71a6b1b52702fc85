"""Loss functions as small pure functions over tensors.

References:
  Bradley & Terry (1952), Rank analysis of incomplete block designs.
  Kingma & Welling (2014), Auto-Encoding Variational Bayes (Gaussian KL).
  Poddar et al. (2024), Personalizing RLHF with Variational Preference Learning.
  Fu et al. (2019), Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` over entries where `mask` is True (all entries if mask is None)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def bradley_terry_nll(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood that chosen beats rejected, `-logsigmoid(r_c - r_r)`.

    `logits` are log-odds of the chosen response winning; logsigmoid is stable for any value,
    and the mean (not sum) keeps the scale independent of batch size.
    """
    return masked_mean(-F.logsigmoid(logits), mask)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-dimension KL(N(mean, exp(logvar)) || N(0, 1)), same shape as the inputs."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_with_free_bits(mean: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0
                      ) -> torch.Tensor:
    """KL summed over latent dimensions, each dimension's batch-mean floored at `free_bits` nats.

    The floor removes the pressure to shrink a dimension's KL below `free_bits`, which guards
    against posterior collapse (Kingma et al., 2016, "Improved variational inference with
    inverse autoregressive flow"). Returns a scalar: mean over the batch.
    """
    kl = gaussian_kl(mean, logvar).reshape(-1, mean.shape[-1])  # (B, Z)
    per_dim = kl.mean(0)
    if free_bits > 0:
        per_dim = torch.clamp(per_dim, min=free_bits)
    return per_dim.sum()


def kl_anneal(schedule: str, progress: float, *, cycles: int = 4, warmup: float = 0.5) -> float:
    """KL weight multiplier in [0, 1] at training progress in [0, 1].

    linear: 0 -> 1 over the first `warmup` of training; cosine: the same with a half-cosine
    ramp; cyclical: `cycles` linear ramps, each reaching 1 halfway through its cycle;
    constant: always 1.
    """
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        return min(1.0, progress / warmup) if warmup > 0 else 1.0
    if schedule == "cosine":
        t = min(1.0, progress / warmup) if warmup > 0 else 1.0
        return 0.5 * (1.0 - math.cos(math.pi * t))
    if schedule == "cyclical":
        phase = (progress * cycles) % 1.0
        return min(1.0, phase / 0.5)
    raise ValueError(f"unknown KL schedule {schedule!r} (linear, cosine, cyclical, constant)")


def pair_accuracy(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of pairs where chosen scores higher; ties count as half right."""
    correct = (logits > 0).float() + 0.5 * (logits == 0).float()
    return masked_mean(correct, mask)
