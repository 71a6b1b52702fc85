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


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` (2-norm), equal to it bit for bit, for the training
    loop's every step: one norm call over the gradients, and no pass to scale them when their
    norm is within `max_norm` (torch multiplies by 1 then, to avoid a device sync that the
    loop pays anyway for its loss). Returns the total norm. Gradients on several devices or
    of several dtypes go through torch's function."""
    params = list(params)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or len({(g.device, g.dtype) for g in grads}) > 1:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coef = max_norm / (total + 1e-6)
    if bool(coef < 1.0):
        torch._foreach_mul_(grads, coef)
    return total
