"""End-to-end smoke runs of `vpl data maze` and `vpl control run` with tiny budgets."""

from __future__ import annotations

import json

from vpl.control.cli import main
from vpl.models import REGISTRY

TINY = ["--iql-steps", "30", "--eval-every", "15", "--reward-epochs", "1", "--episodes", "20",
        "--users-per-goal", "12", "--quiet"]


def test_data_then_control_run_vpl_spo(tmp_path) -> None:
    data = tmp_path / "data"
    assert main(["data", "maze", "--goals", "2", "--out", str(data), "--seed", "1",
                 "--noise", "0.1", "--episodes", "40", "--users-per-goal", "24"]) == 0
    assert (data / "meta.json").exists() and (data / "exploration.npz").exists()
    meta = json.loads((data / "meta.json").read_text())["config"]
    assert (meta["episodes"], meta["train_users_per_goal"], meta["noise"]) == (40, 24, 0.1)
    out = tmp_path / "run"
    assert main(["control", "run", "--goals", "2", "--reward", "vpl-spo", "--out", str(out),
                 "--data", str(data), "--seed", "2", *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    assert 0.0 <= res["success_rate"] <= 1.0
    assert set(res["per_goal"]) == {"A", "B"}
    assert [c["step"] for c in res["curve"]] == [15, 30]
    assert (out / "reward_maps.png").exists() and (out / "rollouts.png").exists()
    assert (out / "policy" / "policy.safetensors").exists()
    assert res["config"]["reward"]["inference"] == "bank"  # the maze defaults
    assert res["config"]["reward"]["label_noise"] == 0.05
    assert res["config"]["reward"]["vpl_variant"] == "default"
    assert res["config"]["iql"]["hidden"] == 128  # 0 in the defaults: resolved for 2 goals
    # the recorded config is what ran: the loaded data's own settings, the run's seed everywhere
    assert (res["config"]["data"]["seed"], res["config"]["data"]["noise"]) == (1, 0.1)
    assert res["config"]["reward"]["seed"] == res["config"]["iql"]["seed"] == res["seed"] == 2
    ident = res["identification"]  # the Bayes classifier's share of identified users
    assert ident["queries"] == 8 and set(ident["test_users"]) == set(ident["expected"]) == {"A", "B"}
    assert all(0.5 <= v <= 1.0 for v in [*ident["test_users"].values(), *ident["expected"].values()])


def test_control_run_passes_the_vpl_inference_flags(tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["control", "run", "--goals", "2", "--reward", "vpl", "--out", str(out),
                 "--no-plots", "--vpl-inference", "amortized", "--label-noise", "0.1",
                 "--vpl-variant", "concat", "--iql-hidden", "32", "--latent-scale", "global",
                 *TINY]) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    reward = config["reward"]
    assert (reward["inference"], reward["label_noise"]) == ("amortized", 0.1)
    assert (reward["vpl_variant"], config["iql"]["hidden"]) == ("concat", 32)
    assert config["iql"]["latent_scale"] == "global"


def test_control_run_oracle_four_goals(tmp_path) -> None:
    out = tmp_path / "oracle"
    assert main(["control", "run", "--goals", "4", "--reward", "oracle", "--out", str(out),
                 "--no-plots", *TINY]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["per_goal"]) == {"A", "B", "C", "D"}
    assert res["config"]["data"]["goals"] == 4  # generated with the run's goal count
    assert res["config"]["iql"]["hidden"] == 256


def test_dpl_without_model_fails_clearly(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delitem(REGISTRY, "dpl-meanvar", raising=False)
    assert main(["control", "run", "--reward", "dpl", "--out", str(tmp_path), *TINY]) == 2
    assert "dpl-meanvar" in capsys.readouterr().err


def test_negative_iql_width_fails_clearly(tmp_path, capsys) -> None:
    assert main(["control", "run", "--reward", "oracle", "--out", str(tmp_path),
                 "--iql-hidden", "-5", *TINY]) == 2
    assert "hidden width" in capsys.readouterr().err
