"""Optimizers shared by the training loop and the phases after it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def adamw(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], **options: Any
          ) -> torch.optim.AdamW:
    """AdamW with its fused kernel where every parameter's device has one (CPU, CUDA): one
    kernel for all parameters instead of a handful of small operations per tensor, which is
    most of the optimizer's cost at our model sizes. Equal to the per-tensor loop up to
    rounding. `params`: parameters, or parameter groups (dicts with `params`) as torch's."""
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    fused = bool(tensors) and all(p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.AdamW(params, fused=fused or None, **options)
