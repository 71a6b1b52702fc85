"""`vpl bench --suite tiny` end to end."""

from __future__ import annotations

import json

from vpl.cli import main
from vpl.experiments.suites import SUITES


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


def test_training_options_reach_every_job_and_the_report(tmp_path, capsys, monkeypatch):
    from vpl.experiments import bench

    seen = []
    real = bench.run_job

    def spy(prep, model_key, seed, ks, train_options):
        seen.append(dict(train_options))
        return real(prep, model_key, seed, ks, train_options)

    monkeypatch.setattr(bench, "run_job", spy)
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "tiny", "--models", "btl", "--out", str(out), "--jobs",
                 "1", "--quiet", "--train", "users_per_batch=4", "lr=0.002"]) == 0
    assert seen == [{"epochs": 2, "users_per_batch": 4, "lr": 0.002}]  # over the suite's own
    assert json.loads((out / "results.json").read_text())["train"] == seen[0]
    assert "`users_per_batch=4`, `lr=0.002`" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["bench", "--suite", "tiny", "--out", str(tmp_path / "x"), "--quiet",
                 "--train", "user_per_batch=4"]) == 2
    assert "user_per_batch" in capsys.readouterr().err


def test_a_failed_job_is_reported_and_the_others_are_kept(tmp_path, capsys, monkeypatch):
    from vpl.experiments import bench

    real = bench.run_job

    def flaky(prep, model_key, seed, *args):
        if model_key == "btl-head":
            raise FloatingPointError("loss is nan")
        return real(prep, model_key, seed, *args)

    monkeypatch.setattr(bench, "run_job", flaky)
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "tiny", "--models", "btl", "btl-head", "--out", str(out),
                 "--jobs", "1", "--quiet"]) == 1
    assert "personas-2-tiny / btl-head / seed 0: FloatingPointError: loss is nan" in \
        capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert list(results["table"]["personas-2-tiny"]) == ["btl"]
    assert len(results["failed"]) == 1
    assert "**Failed job**" in (out / "report.md").read_text()


def test_the_oracle_runs_only_where_users_declare_types():
    from types import SimpleNamespace

    from vpl.experiments.bench import _runs_on

    def prep(types):
        return SimpleNamespace(train=SimpleNamespace(user_types=types), identity=None)

    assert _runs_on("oracle-type", prep(["a", "b"]))
    assert not _runs_on("oracle-type", prep([None, None]))  # real data: no types declared
    assert not _runs_on("oracle-type", prep(None))
    assert _runs_on("btl", prep(None))
