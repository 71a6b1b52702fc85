"""Run directories: train one model on a data file, save everything needed to reload it."""

from __future__ import annotations

import json

import pytest

import vpl.experiments.runs
from vpl.checkpoint import load_model
from vpl.data.io import load_records, write_jsonl
from vpl.data.pets import generate_pets
from vpl.embed import embed_comparisons
from vpl.experiments.runs import few_shot_curve, train_run
from vpl.train import TrainConfig


@pytest.fixture
def pets_file(tmp_path, fake_encoder, monkeypatch):
    """A tiny Pets training file, embedded by the fake encoder wherever a run embeds."""
    monkeypatch.setattr(vpl.experiments.runs, "get_encoder", lambda *a, **k: fake_encoder)
    train, _ = generate_pets("controversial", seed=0, users_per_type=5, test_users_per_type=2,
                             pairs_per_user=12)
    write_jsonl(tmp_path / "train.jsonl", train)
    return tmp_path / "train.jsonl"


def test_train_run_writes_a_complete_run_directory(pets_file, tmp_path):
    out = tmp_path / "runs" / "btl"
    metrics = train_run(pets_file, "btl", out, train_config=TrainConfig(epochs=1, seed=0),
                        progress=False)
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "model.json", "run.json", "split.json", "metrics.json"} <= names
    assert "projection.safetensors" not in names  # 16-d items are never projected
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["n_records"] == 10 * 12 and metrics["n_users"] == 10
    assert metrics["n_train_pairs"] < metrics["n_records"]  # held-out pairs and unseen users
    assert set(metrics["few_shot_unseen_users"]) == {"0", "1", "2", "4", "8", "16"}
    assert "latent" not in metrics  # BTL has no latent
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == "btl" and run["data"] == [str(pets_file.resolve())]
    assert run["train_config"]["epochs"] == 1
    assert load_model(out).input_dim == 16  # [e(prompt), e(response)] of the 8-d fake encoder


def test_a_failed_run_keeps_the_earlier_one_and_a_new_run_replaces_it(pets_file, tmp_path):
    out = tmp_path / "runs" / "r"
    train_run(pets_file, "btl", out, train_config=TrainConfig(epochs=1, seed=0), progress=False)
    before = (out / "metrics.json").read_text()
    with pytest.raises(ValueError, match="unknown model"):
        train_run(pets_file, "nope", out, progress=False)
    assert (out / "metrics.json").read_text() == before
    train_run(pets_file, "btl", out, train_config=TrainConfig(epochs=2, seed=1), progress=False)
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2
    assert [p.name for p in out.parent.iterdir()] == ["r"]  # no temporary or old directories


def test_few_shot_curve_of_a_context_free_model_is_flat(pets_file, tmp_path, fake_encoder):
    out = tmp_path / "run"
    train_run(pets_file, "btl", out, train_config=TrainConfig(epochs=1, seed=0), progress=False)
    records, _ = load_records(pets_file)
    data = embed_comparisons(records, fake_encoder)
    curve = few_shot_curve(load_model(out), data, ks=(0, 2, 8))
    assert list(curve) == ["0", "2", "8"]
    accs = {point["accuracy"] for point in curve.values()}
    assert len(accs) == 1 and 0.0 <= accs.pop() <= 1.0
