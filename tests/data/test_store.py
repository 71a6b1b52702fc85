"""The memory-mapped store: built from files a chunk at a time, the same comparisons and vectors
as embedding them in memory, nothing left by an interrupted build, and training reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import FakeEncoder
from vpl.data.io import DataError, load_records, write_jsonl
from vpl.data.pets import generate_pets
from vpl.data.store import build_store, open_store, write_arrays
from vpl.embed.encoder import embed_comparisons
from vpl.evaluate import evaluate_pairs
from vpl.models import build_for
from vpl.train import TrainConfig, fit


@pytest.fixture(scope="module")
def pets_file(tmp_path_factory):
    train, _ = generate_pets("controversial", seed=0, users_per_type=6, test_users_per_type=0,
                             pairs_per_user=12)
    path = tmp_path_factory.mktemp("store") / "pairs.jsonl"
    write_jsonl(path, train)
    return path


def _as_text(data, i):
    """(user name, chosen vector, rejected vector) of pair i."""
    return (data.users[data.user[i]], data.items[data.chosen[i]].tobytes(),
            data.items[data.rejected[i]].tobytes())


def test_store_holds_what_embedding_in_memory_gives(pets_file, tmp_path):
    enc = FakeEncoder()
    store = open_store(build_store(pets_file, tmp_path / "s", enc, chunk=17, progress=False))
    records, _ = load_records(pets_file)
    mem = embed_comparisons(records, FakeEncoder())
    assert isinstance(store.items.base, np.memmap)  # read from disk, not loaded
    assert len(store) == len(mem) and store.items.shape == mem.items.shape
    assert sorted(_as_text(store, i) for i in range(len(store))) == sorted(
        _as_text(mem, i) for i in range(len(mem)))
    # each distinct item embedded once, in chunks of the stream
    assert sum(len(c) for c in enc.calls) <= 2 * len(mem.items)
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["pairs"] == len(records) and meta["items"] == len(mem.items)


def test_an_interrupted_build_leaves_the_previous_store(pets_file, tmp_path):
    out = tmp_path / "s"
    build_store(pets_file, out, FakeEncoder(), progress=False)
    before = (out / "chosen.i64").read_bytes()

    class Failing(FakeEncoder):
        def encode(self, texts):
            if len(self.calls) >= 3:
                raise KeyboardInterrupt
            return super().encode(texts)

    with pytest.raises(KeyboardInterrupt):
        build_store(pets_file, out, Failing(), chunk=10, progress=False)
    assert (out / "chosen.i64").read_bytes() == before
    assert len(open_store(out)) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary directory left


def test_bad_rows_and_damaged_stores_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "a", "prompt": "p", "chosen": "x", "rejected": "y"}\n'
                   '{"user_id": "a", "prompt": "p", "chosen": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: field .rejected."):
        build_store(bad, tmp_path / "s", FakeEncoder(), progress=False)
    assert not (tmp_path / "s").exists()
    with pytest.raises(FileNotFoundError, match="not a vpl store"):
        open_store(tmp_path)
    rng = np.random.default_rng(0)
    out = write_arrays(tmp_path / "t", rng.integers(0, 3, 20), rng.integers(0, 9, 20),
                       rng.integers(0, 9, 20), ["a", "b", "c"], [rng.normal(size=(9, 4))])
    with open(out / "chosen.i64", "r+b") as fh:
        fh.truncate(8)
    with pytest.raises(ValueError, match="chosen.i64: 8 bytes"):
        open_store(out)


def test_training_and_evaluation_read_a_store(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 6))
    items = rng.normal(size=(300, 6)).astype(np.float32)
    user = np.repeat(np.arange(40), 30)
    a, b = rng.integers(0, 300, len(user)), rng.integers(0, 300, len(user))
    better = np.einsum("pd,pd->p", items[a] - items[b], w[user % 2]) > 0
    chosen, rejected = np.where(better, a, b), np.where(better, b, a)
    store = open_store(write_arrays(tmp_path / "s", user, chosen, rejected,
                                    [f"u{i}" for i in range(40)],
                                    (items[s : s + 64] for s in range(0, 300, 64))))
    np.testing.assert_array_equal(store.items, items)
    model = build_for("vpl", store)
    fit(model, store, None, TrainConfig(epochs=3), progress=False)
    assert evaluate_pairs(model, store, context_size=8).accuracy > 0.6


def test_split_indices_hold_out_users_and_pairs():
    from tests.conftest import make_linear_users
    from vpl.data.split import split_indices

    data = make_linear_users(30, pairs_per_user=11, seed=2)
    train, val, test = split_indices(data, test_users=0.2, heldout_pairs=0.2, seed=0)
    assert sorted(np.concatenate([train, val, test])) == list(range(len(data)))
    assert len(np.unique(data.user[test])) == 6  # unseen users: all of their pairs
    assert not set(data.user[test]) & set(data.user[train]) | set(data.user[val]) & set(
        data.user[test])
    assert len(val) == 24 * 2  # round(0.2 * 11) of each seen user, the rest trains
    assert set(data.user[val]) <= set(data.user[train])
    again = split_indices(data, test_users=0.2, heldout_pairs=0.2, seed=0)
    assert all((a == b).all() for a, b in zip(again, (train, val, test), strict=True))


def test_vpl_data_store_then_vpl_train_store(pets, tmp_path):
    from vpl.cli import main

    store, run = tmp_path / "store", tmp_path / "run"
    assert main(["data", "store", "--data", str(pets / "train.jsonl"), "--out", str(store),
                 "--quiet"]) == 0
    assert main(["train", "--store", str(store), "--model", "vpl", "--out", str(run),
                 "--epochs", "4", "--quiet"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_records"] == len(open_store(store)) and metrics["accuracy_unseen_users"] > 0.5
    assert json.loads((run / "run.json").read_text())["store"] == str(store.resolve())
    assert len(json.loads((run / "split.json").read_text())["test_users"]) == 4  # 20 % of 20
    # the run names the store's encoder, so vpl evaluate embeds new users' data alike
    assert main(["evaluate", "--run", str(run), "--data", str(pets / "test.jsonl"),
                 "--context-size", "4", "--json"]) == 0


def test_evaluate_and_active_read_a_store_for_a_run(pets, tmp_path, capsys, caplog):
    from vpl.cli import main

    store, run = tmp_path / "store", tmp_path / "run"
    assert main(["data", "store", "--data", str(pets / "train.jsonl"), "--out", str(store),
                 "--quiet"]) == 0
    assert main(["train", "--store", str(store), "--model", "vpl", "--out", str(run),
                 "--epochs", "4", "--quiet"]) == 0
    capsys.readouterr()
    data = open_store(store)
    unseen = set(json.loads((run / "split.json").read_text())["test_users"])
    theirs = sum(data.users[u] in unseen for u in data.user)
    caplog.clear()
    for users, n_users, n_pairs in (("unseen", len(unseen), theirs),
                                    ("all", len(data.users), len(data))):
        assert main(["evaluate", "--run", str(run), "--store", str(store), "--users", users,
                     "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["n_users"], out["n_pairs"]) == (n_users, n_pairs)
        assert out["accuracy"] > 0.5
    assert main(["active", "--run", str(run), "--store", str(store), "--budget", "2",
                 "--pool", "6", "--eval-pairs", "4", "--out", str(tmp_path / "act"),
                 "--json", "--quiet"]) == 0
    assert len(json.loads(capsys.readouterr().out)["curve"]) == 3  # after 0, 1, 2 answers
    saved = json.loads((tmp_path / "act" / "active.json").read_text())
    assert set(saved["strategies"]["info-gain"]["per_user"]) == unseen
    assert "trained on" not in caplog.text  # the run's own store: no encoder warning
    # a store of other vectors: the encoder named in a warning, the size an error
    other = write_arrays(tmp_path / "other", np.zeros(4, dtype=np.int64), np.arange(4),
                         np.arange(4)[::-1].copy(), ["u0"], [np.ones((4, 6), np.float32)])
    assert main(["evaluate", "--run", str(run), "--store", str(other)]) == 2
    assert "6 dims but the model" in capsys.readouterr().err
    assert "trained on" in caplog.text
    assert main(["active", "--run", str(run)]) == 2  # neither --data nor --store
    assert main(["evaluate", "--run", str(run), "--store", str(store),
                 "--user-field", "who"]) == 2
    assert "field names apply to --data" in capsys.readouterr().err


def test_run_users_need_a_split_and_unseen_users_in_the_data(tmp_path):
    from tests.conftest import make_linear_users
    from vpl.experiments.prepare import run_users

    data = make_linear_users(6, pairs_per_user=4, seed=0)
    with pytest.raises(FileNotFoundError, match="records no split"):
        run_users(data, tmp_path)
    assert run_users(data, tmp_path, "all") is data
    (tmp_path / "split.json").write_text(json.dumps({"test_users": ["nobody"]}))
    with pytest.raises(ValueError, match="none of the unseen users"):
        run_users(data, tmp_path)
    (tmp_path / "split.json").write_text(json.dumps({"test_users": [data.users[2]]}))
    picked = run_users(data, tmp_path)
    assert len(picked) == 4 and set(picked.user.tolist()) == {2}
