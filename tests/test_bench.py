"""`vpl bench --suite tiny` end to end, and the CI helpers of the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vpl.cli import main
from vpl.experiments.report import aggregate
from vpl.experiments.suites import SUITES
from vpl.stats import t_halfwidth as _ci


def test_ci_matches_t_interval():
    # n=3, sd=1: 4.303 * 1 / sqrt(3)
    assert _ci([1.0, 2.0, 3.0]) == pytest.approx(4.3027 / np.sqrt(3), rel=1e-3)
    assert _ci([0.7]) == 0.0


def test_aggregate_averages_seeds_and_users():
    def run(seed, accs):
        per_user = {f"u{i}": a for i, a in enumerate(accs)}
        summ = {"accuracy": float(np.mean(accs)), "accuracy_item_disjoint": float(np.mean(accs)),
                "worst_user_accuracy": min(accs), "user_accuracy_std": float(np.std(accs)),
                "nll": 0.5, "ece": 0.1, "per_user": per_user, "n_pairs": 10 * len(accs)}
        return {"dataset": "d", "model": "m", "seed": seed, "train_seconds": 1.0, "k_ref": 8,
                "curve": {"8": summ}}

    table = aggregate([run(0, [0.6, 0.8]), run(1, [0.8, 1.0])])
    cell = table["d"]["m"]["curve"]["8"]
    assert cell["accuracy"] == pytest.approx(0.8)
    assert cell["worst_user"] == pytest.approx(0.7)
    assert cell["ci_seeds"] > 0
    # two users: binomial CI over the 40 pairs of both seeds
    assert cell["ci_users"] == pytest.approx(1.96 * np.sqrt(0.8 * 0.2 / 40))

    many = aggregate([run(0, [0.5, 0.6, 0.7, 0.8, 0.9])])["d"]["m"]["curve"]["8"]
    assert many["ci_users"] == pytest.approx(_ci([0.5, 0.6, 0.7, 0.8, 0.9]))


def test_bench_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "tiny", "--out", str(out), "--jobs", "1"]) == 0
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    suite = SUITES["tiny"]
    for model in suite.models:
        assert f"| {model} |" in report
    table = results["table"]["personas-2-tiny"]
    assert set(table) == set(suite.models)
    for cell in table.values():
        assert set(cell["curve"]) == {str(k) for k in suite.ks}
        for point in cell["curve"].values():
            assert 0.0 <= point["accuracy"] <= 1.0
    assert "active_units" in table["vpl"]
    assert (out / "personas-2-tiny_few_shot.png").stat().st_size > 1000
    assert (out / "personas-2-tiny_vpl_latent.png").exists()
    assert "suite `tiny`" in capsys.readouterr().out


def test_bench_rejects_unknown_suite(tmp_path):
    assert main(["bench", "--suite", "nope", "--out", str(tmp_path)]) == 2


def test_bench_runs_a_subset_of_datasets(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "tiny", "--datasets", "personas-2-tiny", "--models", "btl",
                 "--out", str(out), "--jobs", "1", "--quiet",
                 "--embed-model", "bundled:all-MiniLM-L6-v2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["table"]) == ["personas-2-tiny"]
    assert list(results["table"]["personas-2-tiny"]) == ["btl"]
    assert results["embed_model"] == "bundled:all-MiniLM-L6-v2"
    assert results["item_dim"] == 768  # the default, which the sentence vectors do not exceed
    assert "Sentence encoder: `bundled:all-MiniLM-L6-v2`" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["bench", "--suite", "tiny", "--datasets", "pets-full",
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pets-full" in err and "personas-2-tiny" in err


def test_on_request_variants_stay_out_of_the_suites():
    from vpl.experiments.suites import ALL_MODELS, MODEL_VARIANTS

    assert MODEL_VARIANTS["vpl-linear"] == ("vpl", {"layers": 1, "latent_dim": 4})
    assert MODEL_VARIANTS["vpl-mlp"] == ("vpl", {"layers": 2})
    assert not {"vpl-linear", "vpl-amortized", "vpl-mlp", "vpl-concat"} & set(ALL_MODELS)
    assert all(m in ALL_MODELS for s in SUITES.values() for m in s.models)
