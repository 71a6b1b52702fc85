"""Several training processes on one or many machines, through `torch.distributed`.

`vpl train` runs unchanged under `torchrun --nproc-per-node N` or `accelerate launch`: both
set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, and `setup` joins the process group they
describe (gloo on CPU, NCCL when every process has a GPU). Training then follows data-parallel
semantics (DistributedDataParallel's): every process holds the same model, builds its own share
of each step's batches (users sharded across processes), and gradients are averaged before every
optimizer step. Scores and losses are summed across processes, so every process takes the same
early-stopping decision, and rank 0 alone writes the run. With one process (no WORLD_SIZE) every
function here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (from the launcher's RANK and
    WORLD_SIZE; 0 and 1 without one)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def setup() -> tuple[int, int]:
    """Join the launcher's process group if there is one and it is not joined yet; returns
    (rank, world size)."""
    rank, world = rank_and_world()
    if world > 1 and not dist.is_initialized():
        # torch._dynamo (which the optimizers import on first use) keeps references to the
        # process groups that exist when it is imported; then `destroy_process_group` cannot
        # free the group, gloo's worker threads outlive it and may release the last work's
        # tensors while the interpreter shuts down, which aborts the process. Imported
        # first, it holds nothing, and `finish` joins those threads. (A group that other code
        # joined before `setup`, with torch._dynamo first imported after, is out of reach.)
        import torch._dynamo  # noqa: F401

        gpu = torch.cuda.is_available() and torch.cuda.device_count() >= world
        dist.init_process_group("nccl" if gpu else "gloo")
    return rank, world


def active() -> bool:
    """Whether this process trains with others."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def shard() -> tuple[int, int]:
    """(rank, world size) of the joined process group; (0, 1) alone."""
    return (dist.get_rank(), dist.get_world_size()) if active() else (0, 1)


def is_main() -> bool:
    """Whether this process writes results (rank 0, or the only process)."""
    return not active() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process (nothing to wait for alone)."""
    if active():
        dist.barrier()


def finish() -> None:
    """Wait for every process, then leave the process group (a process that left early could
    take the group down under the others)."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over the processes, in one all-reduce (a parameter
    without a gradient here counts as a zero gradient, so the processes agree on the layout)."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def sum_across(values: Sequence[float]) -> list[float]:
    """Each value summed over the processes (in float64)."""
    if not active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Every process's rows (any number each, the same trailing shape) concatenated in rank
    order, on every process."""
    if not active():
        return local
    world = dist.get_world_size()
    sizes = torch.tensor([local.shape[0]], dtype=torch.int64)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    n = [int(s) for s in all_sizes]
    padded = torch.zeros((max(n), *local.shape[1:]), dtype=local.dtype)
    padded[: local.shape[0]] = local.cpu()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:k] for p, k in zip(parts, n, strict=True)]).to(local.device)


def my_slice(n: int) -> slice:
    """This process's contiguous share of n rows (all of them alone)."""
    rank, world = shard()
    return slice(n * rank // world, n * (rank + 1) // world)


def broadcast_state(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every process's `module` (the same shapes)."""
    if not active():
        return
    for t in module.state_dict().values():
        if isinstance(t, torch.Tensor):
            dist.broadcast(t, src=0)
