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


def preference_log_likelihood(logits: torch.Tensor, label_noise: float = 0.0) -> torch.Tensor:
    """log p(chosen beats rejected) of reward differences `logits`, elementwise.

    Bradley-Terry, logsigmoid(logits), when `label_noise` is 0. With label noise eps, every
    label is flipped with probability eps whatever the reward difference (a lapse):
        p = eps + (1 - 2 eps) sigmoid(logits),
    so one mislabeled pair costs at most -log(eps) nats instead of growing without bound with
    the reward difference. Computed as a log-sum-exp, stable for any logit.
    """
    if label_noise <= 0.0:
        return F.logsigmoid(logits)
    if not label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")
    return torch.logaddexp(torch.full_like(logits, math.log(label_noise)),
                           math.log1p(-2.0 * label_noise) + F.logsigmoid(logits))


def noisy_logits(logits: torch.Tensor, label_noise: float = 0.0) -> torch.Tensor:
    """Log-odds of the chosen response winning under `preference_log_likelihood`: the reward
    difference itself without label noise, squashed into [logit(eps), logit(1 - eps)] with it.
    The sign, and so the predicted label, never changes."""
    if label_noise <= 0.0:
        return logits
    return (preference_log_likelihood(logits, label_noise)
            - preference_log_likelihood(-logits, label_noise))


def bradley_terry_nll(logits: torch.Tensor, mask: torch.Tensor | None = None,
                      label_noise: float = 0.0) -> torch.Tensor:
    """Mean negative log-likelihood that chosen beats rejected, `-logsigmoid(r_c - r_r)`, or
    its label-noise version (`preference_log_likelihood`).

    `logits` are log-odds of the chosen response winning; logsigmoid is stable for any value,
    and the mean (not sum) keeps the scale independent of batch size.
    """
    return masked_mean(-preference_log_likelihood(logits, label_noise), mask)


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
