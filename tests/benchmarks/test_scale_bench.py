"""The scaling benchmark on a tiny store: the synthetic users are learnable, a measurement has
every column, and the report compares the sizes."""

from __future__ import annotations


def test_a_tiny_store_is_measured_and_reported(load_benchmark, tmp_path):
    sb = load_benchmark("scale_bench")
    rows = []
    for pairs in (2000, 4000):
        store = sb.make_store(tmp_path / f"s{pairs}", pairs, dim=16)
        r = sb.measure(store, epochs=2, evaluate=True)
        assert r["pairs"] == pairs and r["users"] == r["items"] == pairs // 10
        assert r["accuracy"] > 0.7  # two types over 8 latent factors: learnable
        rows.append({**r, "procs": 1, "store_mb": 1.0})
    out = sb.write_report(rows, 16, 60.0, tmp_path / "new" / "scale.md")  # makes the folder
    assert out.with_suffix(".png").is_file()
    text = out.read_text()
    assert "| 4,000 | 400 | 400 | 1 |" in text
    assert "From 2,000 to 4,000 comparisons (2x)" in text
