"""`vpl demo`: both Pets variants, BTL and VPL, trained, reloaded and scored on the test file."""

from __future__ import annotations

import json

import vpl.data.pets
import vpl.experiments.prepare
import vpl.experiments.runs
from vpl.experiments.demo import DEMO_MODELS, DEMO_VARIANTS, run_demo


def test_run_demo_reports_every_variant_and_model(tmp_path, fake_encoder, monkeypatch, capsys):
    generate = vpl.data.pets.generate_pets

    def tiny_pets(variant, seed=0):
        return generate(variant, seed=seed, users_per_type=5, test_users_per_type=2,
                        pairs_per_user=12)

    monkeypatch.setattr(vpl.data.pets, "generate_pets", tiny_pets)
    for module in (vpl.experiments.runs, vpl.experiments.prepare):
        monkeypatch.setattr(module, "get_encoder", lambda *a, **k: fake_encoder)
    rows = run_demo(tmp_path, epochs=1, context_size=4, progress=False)
    assert [(r["variant"], r["model"]) for r in rows] == [
        (v, m) for v in DEMO_VARIANTS for m in DEMO_MODELS]
    for r in rows:
        for key in ("seen_users_heldout", "unseen_users", "test_file", "test_file_item_disjoint"):
            assert 0.0 <= r[key] <= 1.0, (r, key)
        assert (r["active_units"] is None) == (r["model"] == "btl")
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["rows"] == rows
    for v in DEMO_VARIANTS:
        assert (tmp_path / v / "test.jsonl").exists()
        assert all((tmp_path / v / m / "model.json").exists() for m in DEMO_MODELS)
    table = capsys.readouterr().out
    assert "Pets, K=4 context pairs" in table
    assert sum(line.startswith("| full |") or line.startswith("| controversial |")
               for line in table.splitlines()) == 4
