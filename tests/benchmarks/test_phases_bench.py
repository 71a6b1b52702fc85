"""The phase timing benchmark on a tiny store: every phase after the loop is timed and the
report lists them."""

from __future__ import annotations


def test_every_phase_is_timed_and_reported(load_benchmark, tmp_path):
    store = load_benchmark("scale_bench").make_store(tmp_path / "store", 3000, dim=16)
    pb = load_benchmark("phases_bench")
    r = pb.measure(store, epochs=2)
    assert set(r["phases_s"]) == {"VPLBankRefinement", "BankTemperature", "ItemEffects"}
    assert 0 < r["loop_s"] < r["fit_s"] and all(s > 0 for s in r["phases_s"].values())
    assert r["pairs"] == 3000 and r["train_pairs"] + r["test_pairs"] < 3000
    assert r["accuracy"] > 0.6  # two learnable types
    text = pb.report(r, 16)
    assert "| ItemEffects |" in text and "| **fit, in all** |" in text
