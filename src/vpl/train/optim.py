"""Optimizers shared by the training loop and the phases after it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def adamw(params: Iterable[torch.nn.Parameter], **options: Any) -> torch.optim.AdamW:
    """AdamW with its fused kernel where every parameter's device has one (CPU, CUDA): one
    kernel for all parameters instead of a handful of small operations per tensor, which is
    most of the optimizer's cost at our model sizes. Equal to the per-tensor loop up to
    rounding."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, fused=fused or None, **options)
