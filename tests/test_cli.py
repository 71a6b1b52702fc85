"""Smoke tests of the real `vpl` entry point with tiny budgets."""

import json

import pytest

from vpl.cli import main
from vpl.data.io import load_records, write_jsonl
from vpl.data.pets import generate_pets


@pytest.fixture(scope="module")
def tiny_pets(tmp_path_factory):
    d = tmp_path_factory.mktemp("pets")
    train, test = generate_pets("controversial", seed=0, users_per_type=5, test_users_per_type=2,
                                pairs_per_user=12)
    write_jsonl(d / "train.jsonl", train)
    write_jsonl(d / "test.jsonl", test)
    return d


def test_data_pets_command(tmp_path, capsys):
    assert main(["data", "pets", "--variant", "full", "--out", str(tmp_path), "--seed", "1"]) == 0
    train, _ = load_records(tmp_path / "train.jsonl")
    test, _ = load_records(tmp_path / "test.jsonl")
    assert not {r.user_id for r in train} & {r.user_id for r in test}
    texts = lambda rs: {t for r in rs for t in (r.chosen, r.rejected)}  # noqa: E731
    assert not texts(train) & texts(test)
    assert {r.meta["user_type"] for r in test} == {"helpful_first", "harmless_first"}
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["btl", "vpl"])
def test_train_then_evaluate(tiny_pets, tmp_path, capsys, model):
    run = tmp_path / "run"
    rc = main(["train", "--data", str(tiny_pets / "train.jsonl"), "--model", model, "--out",
               str(run), "--epochs", "2", "--context-size", "4", "--quiet"])
    assert rc == 0
    for f in ("model.safetensors", "model.json", "run.json", "split.json", "metrics.json"):
        assert (run / f).exists(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy_seen_users"] <= 1.0
    assert 0.0 <= metrics["accuracy_unseen_users"] <= 1.0
    assert ("latent" in metrics) == (model == "vpl")
    capsys.readouterr()
    rc = main(["evaluate", "--run", str(run), "--data", str(tiny_pets / "test.jsonl"),
               "--context-size", "4", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["accuracy"] <= 1.0 and out["n_pairs"] == 4 * 12
    assert set(out["per_user"]) == {f"pets-test-{i:04d}" for i in range(4)}
    assert "accuracy_item_disjoint" in out
    rc = main(["evaluate", "--run", str(run), "--data", str(tiny_pets / "test.jsonl")])
    assert rc == 0 and "per user" in capsys.readouterr().out


def test_failed_run_keeps_earlier_results(tiny_pets, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_pets / "train.jsonl"), "--model", "btl", "--out",
                 str(run), "--epochs", "1", "--quiet"]) == 0
    before = (run / "metrics.json").read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "u", "prompt": "p", "chosen": "a"}\n')
    rc = main(["train", "--data", str(bad), "--model", "btl", "--out", str(run), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: field 'rejected': missing field" in err
    assert (run / "metrics.json").read_text() == before


def test_field_mapping_flags(tmp_path, capsys):
    rows = [{"annotator": f"a{i % 2}", "q": "question", "good": f"yes {i}", "bad": f"no {i}"}
            for i in range(6)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    assert main(["data", "check", "--data", str(tmp_path / "d.jsonl"), "--user-field",
                 "annotator", "--prompt-field", "q", "--chosen-field", "good",
                 "--rejected-field", "bad"]) == 0
    assert "6 valid comparisons from 2 users" in capsys.readouterr().out
