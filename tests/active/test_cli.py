"""`vpl active` on a text run and on a control run."""

from __future__ import annotations

import json

import numpy as np


def test_cli_round_trip(trained, linear_users, tmp_path, monkeypatch, capsys) -> None:
    import vpl.experiments.prepare
    from vpl.checkpoint import save_model
    from vpl.cli import main

    _, test = linear_users
    run = tmp_path / "run"
    save_model(trained, run)
    small = test.subset(np.flatnonzero(test.user < 4))
    monkeypatch.setattr(vpl.experiments.prepare, "load_pairs", lambda path, run_dir=None, **kw: small)
    for strategy in ("random", "info-gain"):
        rc = main(["active", "--run", str(run), "--data", "unused.jsonl", "--strategy", strategy,
                   "--budget", "4", "--eval-pairs", "10", "--json", "--quiet"])
        assert rc == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["curve"]) == 5
    stored = json.loads((run / "active" / "active.json").read_text())
    assert set(stored["strategies"]) == {"random", "info-gain"}
    assert (run / "active" / "active_curves.png").stat().st_size > 0
    assert main(["active", "--run", str(run), "--data", "x", "--strategy", "paper", "--budget",
                 "3", "--quiet"]) == 0
    assert "paper" in capsys.readouterr().out


TINY = ["--iql-steps", "20", "--eval-every", "0", "--reward-epochs", "1", "--episodes", "20",
        "--users-per-goal", "12", "--quiet", "--no-plots"]


def test_cli_on_control_run(tmp_path, capsys) -> None:
    from vpl.cli import main

    run = tmp_path / "run"
    assert main(["control", "run", "--goals", "2", "--reward", "vpl-spo", "--out", str(run),
                 *TINY]) == 0
    capsys.readouterr()
    for strategy in ("random", "info-gain", "paper"):
        assert main(["active", "--run", str(run), "--strategy", strategy, "--budget", "3",
                     "--users-per-goal", "2", "--episodes", "2", "--json", "--quiet"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert len(out["curve"]) == 4
        assert all(0.0 <= v <= 1.0 for v in out["curve"])
        assert out["config"]["metric"] == "success"
    stored = json.loads((run / "active" / "active.json").read_text())
    assert set(stored["strategies"]) == {"random", "info-gain", "paper"}
    assert (run / "active" / "active_curves.png").stat().st_size > 0
