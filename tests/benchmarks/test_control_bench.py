"""The control benchmark's markdown table, with and without an oracle row."""


def _result(rate, per_goal, learned=True):
    return {"success_rate": rate, "per_goal": per_goal, "scaling": "spo", "iql_steps": 100,
            "reward_model": {"val_accuracy": 0.8} if learned else {},
            "reward_correlation": {"A": 0.9} if learned else {}, "seconds": {"policy": 3.0},
            "config": {"iql": {"hidden": 128}}}


def test_table_with_and_without_oracle(load_benchmark):
    cb = load_benchmark("control_bench")
    vpl = _result(0.5, {"A": 0.75, "B": 0.25})
    oracle = _result(1.0, {"A": 1.0, "B": 1.0}, learned=False)
    with_oracle = cb.table([{"goals": 2, "seed": 0, "wall": 10.0,
                             "results": {"oracle": oracle, "vpl-spo": vpl}}], 2,
                           ["oracle", "vpl-spo"])
    assert "| vpl-spo | spo | 50.0 ± 0.0 | 0.50 | 75.0 ± 0.0 | 25.0 ± 0.0 | 0.800 | 0.90 |" \
        in with_oracle
    alone = cb.table([{"goals": 2, "seed": 0, "wall": 10.0, "results": {"vpl-spo": vpl}}], 2,
                     ["vpl-spo"])
    assert "| vpl-spo | spo | 50.0 ± 0.0 | — | 75.0 ± 0.0 | 25.0 ± 0.0 | 0.800 | 0.90 |" in alone
    assert "IQL steps per policy: 100 (networks 128 wide);" in alone


def test_table_reports_the_identification_ceiling(load_benchmark):
    cb = load_benchmark("control_bench")
    ident = {"queries": 8, "test_users": {"A": 1.0, "B": 0.5}, "expected": {"A": 0.9, "B": 0.7}}
    vpl = {**_result(0.5, {"A": 0.75, "B": 0.25}), "identification": ident}
    oracle = {**_result(0.9, {"A": 1.0, "B": 0.8}, learned=False), "identification": ident}
    text = cb.table([{"goals": 2, "seed": 0, "wall": 10.0,
                      "results": {"oracle": oracle, "vpl-spo": vpl}}], 2, ["oracle", "vpl-spo"])
    assert "expected A 90%, B 70% (mean 80.0%); this data's test users A 100%, B 50%" in text
    # the ceiling: mean expected identification x the oracle's success
    assert "at about 72.0% (0.80 of the oracle)" in text
