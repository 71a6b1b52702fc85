"""Training over several processes: each process's share of the batches, the helpers alone,
and `vpl train` under torchrun (gloo) against the same run in one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_linear_users
from vpl import distributed
from vpl.cli import main
from vpl.data import contexts
from vpl.data.io import write_jsonl
from vpl.data.pets import generate_pets

BIN = Path(sys.executable).parent


def _targets_and_contexts(data, rank: int, world: int):
    """Every (target pair, its context pairs) a process gets in one epoch (rng seed 0); the
    batches are their index arrays (`build_batch` is patched to return them)."""
    out = []
    batches = list(contexts.training_batches(data, users_per_batch=4, targets_per_user=5, context_size=6,
                                    rng=np.random.default_rng(0), shard=(rank, world)))
    assert len(batches) == contexts.batches_per_epoch(data, users_per_batch=4, targets_per_user=5,
                                             world=world)
    for target_idx, ctx_idx in batches:
        for tgt, ctx in zip(target_idx, ctx_idx, strict=True):
            out += [(int(t), set(ctx[ctx >= 0].tolist())) for t in tgt if t >= 0]
    return out


def test_processes_share_an_epoch_of_batches(monkeypatch):
    monkeypatch.setattr(contexts, "build_batch", lambda t, target_idx, p, ctx_idx:
                        (target_idx, ctx_idx))
    data = make_linear_users(13, pairs_per_user=23, seed=3)
    alone = _targets_and_contexts(data, 0, 1)
    shares = [_targets_and_contexts(data, r, 3) for r in range(3)]
    assert sorted(t for t, _ in alone) == list(range(len(data)))
    seen = [t for share in shares for t, _ in share]
    assert set(seen) == set(range(len(data)))  # every pair is someone's target
    # only the padding of the last step repeats targets: at most one step of groups
    assert len(seen) - len(data) < 3 * 4 * 5
    for share in shares:
        for t, ctx in share:
            assert t not in ctx and (data.user[list(ctx)] == data.user[t]).all()


def test_helpers_do_nothing_alone():
    assert not distributed.active() and distributed.is_main()
    assert distributed.shard() == (0, 1) and distributed.my_slice(7) == slice(0, 7)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients([p])
    assert p.grad.tolist() == [2.0, 2.0, 2.0]
    assert distributed.sum_across([1.5, 2]) == [1.5, 2]
    x = torch.arange(6.0).reshape(3, 2)
    assert distributed.gather_rows(x) is x


@pytest.fixture(scope="module")
def pets_full(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pets-full")
    train, _ = generate_pets("full", seed=1, users_per_type=12, test_users_per_type=0,
                             pairs_per_user=24)
    write_jsonl(d / "train.jsonl", train)
    return d / "train.jsonl"


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None,
                    reason="torchrun is not installed beside this interpreter")
def test_two_processes_under_torchrun_match_one(pets_full, tmp_path):
    args = ["train", "--data", str(pets_full), "--model", "vpl", "--epochs", "30", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0  # fills the embedding cache too
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m",
                          "vpl.cli", *args, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("run saved to") == 1  # rank 0 reports and writes, once
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert one.keys() == two.keys()
    assert len(two["history"][0]) == len(one["history"][0])
    for key in ("accuracy_seen_users", "accuracy_unseen_users"):
        assert two[key] == pytest.approx(one[key], abs=0.04), key
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["train_config"] == json.loads((tmp_path / "one" / "run.json").read_text()
                                             )["train_config"]
    assert not list(tmp_path.glob(".two*"))  # no temporary directory left behind


LEAVE = """
import os
import torch
from vpl import distributed
distributed.setup()
torch.optim.AdamW(torch.nn.Linear(2, 1).parameters())  # the optimizers import torch._dynamo
distributed.finish()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
with open(os.path.join(os.path.dirname(__file__), f"threads{os.environ['RANK']}"), "w") as f:
    f.write(" ".join(sorted(names)))
"""


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None or not Path("/proc").is_dir(),
                    reason="needs torchrun beside this interpreter and Linux's /proc")
def test_finish_joins_the_gloo_threads(tmp_path):
    # Left running, they could release a tensor while the interpreter shuts down, which
    # aborts the process ("terminate called without an active exception").
    script = tmp_path / "leave.py"
    script.write_text(LEAVE)
    out = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2",
                          str(script)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for rank in (0, 1):
        threads = (tmp_path / f"threads{rank}").read_text()
        assert "gloo" not in threads, threads


@pytest.mark.skipif(shutil.which("accelerate", path=str(BIN)) is None,
                    reason="accelerate is not installed beside this interpreter")
def test_accelerate_launch_trains_the_same_way(pets_full, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --multi_gpu is accelerate's multi-process mode; without GPUs the processes use gloo
    out = subprocess.run([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                          "2", "--num_machines", "1", "--mixed_precision", "no",
                          "--dynamo_backend", "no", "--main_process_port", "0", "-m", "vpl.cli",
                          "train", "--data", str(pets_full), "--model", "btl", "--epochs", "3",
                          "--quiet", "--out", str(tmp_path / "run")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("run saved to") == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and metrics["accuracy_seen_users"] > 0.6
