"""Experiment data: records embedded once per block, parts picked out by record, one
projection fitted on the training part."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vpl.data.schema import Comparison
from vpl.data.split import Split
from vpl.embed import embed_comparisons
from vpl.embed.projection import fit_for
from vpl.experiments.prepare import data_dir, embed_parts, pick, read_run, split_pairs


def _records(n_users: int = 3, per_user: int = 4) -> list[Comparison]:
    return [Comparison(f"u{u}", f"question {i % 2}", f"good {u}-{i}", f"bad {u}-{i}",
                       {"user_type": f"t{u % 2}"})
            for u in range(n_users) for i in range(per_user)]


def test_pick_keeps_the_pairs_of_the_kept_records_in_data_order(fake_encoder):
    recs = _records()
    data = embed_comparisons(recs, fake_encoder)
    sub = pick(data, recs, [recs[5], recs[1], Comparison("x", "p", "never", "seen")])
    assert len(sub) == 2
    np.testing.assert_array_equal(sub.chosen, data.chosen[[1, 5]])
    np.testing.assert_array_equal(sub.user, data.user[[1, 5]])
    assert sub.pair_keys == [recs[1].key, recs[5].key]
    assert sub.items is data.items and sub.users == data.users
    assert len(pick(data, recs, [])) == 0


def test_split_pairs_partitions_the_pairs_by_the_split(fake_encoder):
    recs = _records()
    data = embed_comparisons(recs, fake_encoder)
    split = Split(seed=0, test_users=["u2"], heldout_pairs=[recs[0].key, recs[6].key])
    train, val, test = split_pairs(recs, data, split)
    assert (len(train), len(val), len(test)) == (6, 2, 4)
    assert {data.users[u] for u in test.user} == {"u2"}
    assert val.pair_keys == [recs[0].key, recs[6].key]
    assert sorted(train.pair_keys + val.pair_keys + test.pair_keys) == sorted(r.key for r in recs)


def test_embed_parts_embeds_blocks_and_picks_parts(fake_encoder):
    recs = _records()
    blocks = [recs[:8], recs[8:]]
    parts = {"train": (0, recs[:6]), "val": (0, recs[6:8]), "test": (1, recs[8:])}
    emb = embed_parts(blocks, parts, fake_encoder, item_dim=None)
    out, datas = emb.parts, emb.blocks
    assert emb.projection is None and len(datas) == 2
    assert {k: len(v) for k, v in out.items()} == {"train": 6, "val": 2, "test": 4}
    assert out["test"].users == ["u2"] and datas[0].users == ["u0", "u1"]
    # an item is [e(prompt), e(response)]
    first = out["train"].items[out["train"].chosen[0]]
    want = np.concatenate([fake_encoder.vector("question 0"), fake_encoder.vector("good 0-0")])
    np.testing.assert_allclose(first, want)
    assert out["train"].user_types == ["t0", "t1"]
    # item vectors no wider than item_dim are left alone
    assert embed_parts(blocks, parts, fake_encoder, item_dim=16).projection is None


def test_embed_parts_projects_every_block_with_the_training_parts_projection(fake_encoder):
    recs = _records()
    blocks = [recs[:8], recs[8:]]
    parts = {"train": (0, recs[:6]), "val": (0, recs[6:8]), "test": (1, recs[8:])}
    raw = embed_parts(blocks, parts, fake_encoder, item_dim=None)
    emb = embed_parts(blocks, parts, fake_encoder, item_dim=4)
    out, datas, proj = emb.parts, emb.blocks, emb.projection
    assert proj is not None and proj.out_dim == 4
    assert all(d.dim == 4 for d in [*datas, *out.values()])
    want = fit_for(raw.parts["train"], 4)  # fitted on the training part's items only
    np.testing.assert_allclose(proj.mean, want.mean, atol=1e-6)
    np.testing.assert_allclose(out["test"].items, want(raw.parts["test"].items), atol=1e-5)
    np.testing.assert_allclose(datas[0].items, want(raw.blocks[0].items), atol=1e-5)


def test_data_dir_and_read_run(tmp_path, monkeypatch):
    monkeypatch.delenv("VPL_DATA_DIR", raising=False)
    assert data_dir() is None
    monkeypatch.setenv("VPL_DATA_DIR", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "given") == tmp_path / "given"  # an argument wins
    with pytest.raises(FileNotFoundError, match="run.json"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"model": "btl"}))
    assert read_run(tmp_path) == {"model": "btl"}
