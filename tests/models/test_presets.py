"""Model presets: a registry name plus options, resolved the same way everywhere."""

from __future__ import annotations

import dataclasses

import pytest

from vpl.models import REGISTRY, build
from vpl.models.presets import PAPER_VPL, PRESETS, resolve


def test_a_preset_resolves_to_its_model_and_options():
    assert resolve("vpl-paper") == ("vpl", PAPER_VPL)
    assert resolve("low-rank-map") == ("low-rank", {"inference": "map"})
    assert resolve("vpl") == ("vpl", {})
    name, options = resolve("vpl-paper")
    model = build(name, 6, **options)
    assert (model.config.latent_mode, model.config.set_encoder) == ("concat", "attention")


def test_overrides_go_on_top_and_leave_the_preset_alone():
    name, options = resolve("vpl-paper", context_nll=1.0, hidden=8)
    assert name == "vpl"
    assert options == {**PAPER_VPL, "context_nll": 1.0, "hidden": 8}
    assert PRESETS["vpl-paper"][1]["context_nll"] == 0.0 and "hidden" not in PAPER_VPL
    options["latent_mode"] = "head"  # the caller's copy, not the registry's
    assert resolve("vpl-paper")[1]["latent_mode"] == "concat"


def test_a_registered_model_without_a_preset_resolves_to_itself(monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy-btl", REGISTRY["btl"])
    assert resolve("toy-btl", hidden=8) == ("toy-btl", {"hidden": 8})


def test_unknown_name_lists_the_presets():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; presets: btl, dpl-meanvar"):
        resolve("nope")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_names_a_model_and_options_it_has(preset):
    name, options = resolve(preset)
    assert name in REGISTRY
    assert set(options) <= {f.name for f in dataclasses.fields(REGISTRY[name].Config)}
