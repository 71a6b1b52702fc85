"""Training throughput of the default VPL against the official VPL implementation's model and
training step, side by side in one run, on the same random items.

The official language-model code (github.com/WEIRDLabUW/vpl_llm, `hidden_context/vae_utils.py`)
trains a VAE whose encoder embeds each context pair with an MLP over [e_chosen, e_rejected],
pools a target's context by single-head self-attention computed context by context (a Python
loop over the batch), and whose decoder is an MLP over [item, z]; every target pair carries a
context of its own. `OfficialVAE` below is our re-implementation of that model and step (the
same layers, sizes, loop and loss, the KL weight fixed); batches are collated per target as
its data collator does. `vpl` is our default model through `vpl.train.fit` (batch building
included). Both see random items (D=384), H=256, K=8, the same target pairs; the official
model's latent has Z=32 dimensions, the default `vpl`'s its default 16.

Usage: python benchmarks/throughput_bench.py [--pairs 8000] [--epochs 3] [--repeats 2]
       [--threads 1] [--out benchmarks/results/throughput.md]

`--threads` sets torch's CPU threads for both (`vpl` trains with `TrainConfig.threads`, the
same number): 1 by default, as `vpl train` and each `vpl bench` worker run; 2 uses both cores
of the 2-core machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vpl.data.io import atomic_write_text
from vpl.data.pairs import PairData
from vpl.experiments.report import git_commit
from vpl.models import build_for
from vpl.models.vpl import VPLConfig
from vpl.train import TrainConfig, fit

DIM, HIDDEN, LATENT, K = 384, 256, 32, 8


def random_data(pairs: int, users: int = 250, items: int = 4000, seed: int = 0) -> PairData:
    rng = np.random.default_rng(seed)
    return PairData(items=rng.normal(size=(items, DIM)).astype(np.float32),
                    user=np.sort(rng.integers(0, users, pairs)),
                    chosen=rng.integers(0, items, pairs), rejected=rng.integers(0, items, pairs),
                    users=[f"u{i}" for i in range(users)])


def _mlp(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, HIDDEN),
                         nn.LeakyReLU(0.2), nn.Linear(HIDDEN, out))


class OfficialVAE(nn.Module):
    """The official model (see the module docstring), in our words."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = _mlp(2 * DIM, LATENT)
        self.w_q, self.w_k, self.w_v = (nn.Linear(LATENT, LATENT) for _ in range(3))
        self.mean, self.log_var = nn.Linear(LATENT, LATENT), nn.Linear(LATENT, LATENT)
        self.decoder = _mlp(DIM + LATENT, 1)

    def forward(self, tc, tr, cc, cr, starts):  # noqa: ANN001
        h = self.pair(torch.cat([cc, cr], 1))
        pooled = []
        for s, e in starts:  # one context at a time, as the official encoder does
            x = h[s:e]
            att = F.softmax(self.w_q(x) @ self.w_k(x).T / LATENT**0.5, -1)
            pooled.append((att @ self.w_v(x)).mean(0))
        p = torch.stack(pooled)
        mean, log_var = self.mean(p).clamp(-1, 1), self.log_var(p).clamp(-1, 1)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean) * 1e-3
        z = F.normalize(z, dim=-1) * LATENT**0.5
        rc = self.decoder(torch.cat([tc, z], 1))
        rr = self.decoder(torch.cat([tr, z], 1))
        kl = -torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
        return -F.logsigmoid(rc - rr).mean() + 1e-4 * kl


def official_epochs(data: PairData, epochs: int, batch: int, seed: int = 0) -> float:
    """Target pairs per second of the official model and step, collation included."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = OfficialVAE()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    by_user = data.by_user()
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(data))
        for s in range(0, len(data), batch):
            idx = order[s : s + batch]
            ctx, starts = [], []
            for i in idx:  # the collator: a context of its own for every target
                own = by_user[int(data.user[i])]
                pick = rng.choice(own, size=min(K, len(own)), replace=False)
                starts.append((len(ctx), len(ctx) + len(pick)))
                ctx.extend(pick.tolist())
            it = torch.from_numpy
            loss = model(it(data.items[data.chosen[idx]]), it(data.items[data.rejected[idx]]),
                         it(data.items[data.chosen[ctx]]), it(data.items[data.rejected[ctx]]),
                         starts)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epochs * len(data) / (time.perf_counter() - t0)


def vpl_epochs(data: PairData, epochs: int, users_per_batch: int | None = None,
               threads: int = 1, targets_per_user: int = 8) -> float:
    """Target pairs per second of `vpl.train.fit`'s training steps (batch building included)."""
    torch.manual_seed(0)
    m = build_for("vpl", data)
    cfg = TrainConfig(epochs=epochs, context_size=K, users_per_batch=users_per_batch,
                      threads=threads, targets_per_user=targets_per_user)
    res = fit(m, data, None, cfg, progress=False, callbacks=[])
    return res.pairs_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads, for both")
    ap.add_argument("--out", default="benchmarks/results/throughput.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = random_data(args.pairs)
    default, earlier, targets, larger = (
        "vpl (default: 16 users x 8 targets a step)",
        "vpl, 8 users x 8 targets a step (the default until 2026-12-05)",
        "vpl, 8 users x 16 targets a step (not the default)",
        "vpl, 32 users x 8 targets a step (not the default)")
    rows: dict[str, list[float]] = {"official VAE, batch 64": [], "official VAE, batch 32": [],
                                    default: [], earlier: [], targets: [], larger: []}
    for _ in range(args.repeats):  # interleaved, so drifts in machine load hit every row
        rows["official VAE, batch 64"].append(official_epochs(data, args.epochs, 64))
        rows["official VAE, batch 32"].append(official_epochs(data, args.epochs, 32))
        rows[default].append(vpl_epochs(data, args.epochs, threads=args.threads))
        rows[earlier].append(vpl_epochs(data, args.epochs, 8, threads=args.threads))
        rows[targets].append(vpl_epochs(data, args.epochs, 8, threads=args.threads,
                                        targets_per_user=16))
        rows[larger].append(vpl_epochs(data, args.epochs, 32, threads=args.threads))
    base = max(rows["official VAE, batch 64"])
    lines = ["# Training throughput against the official VPL implementation", "",
             f"`python benchmarks/throughput_bench.py --pairs {args.pairs} --epochs "
             f"{args.epochs} --repeats {args.repeats} --threads {args.threads}` at commit "
             f"{git_commit()}, {args.threads} thread(s). "
             f"Random items, D={DIM}, H={HIDDEN}, K={K}, Z={LATENT} for the official model "
             f"and {VPLConfig.latent_dim} (its default) for `vpl`; target pairs per second "
             "of the training steps (best of the repeats).", "",
             "| model | target pairs/s | x official (batch 64) |", "|---|---|---|"]
    for name, v in rows.items():
        lines.append(f"| {name} | {max(v):,.0f} | {max(v) / base:.2f} |")
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
