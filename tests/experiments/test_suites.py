"""The benchmark suites and the models they run."""

from __future__ import annotations

from vpl.experiments.suites import SUITES


def test_on_request_variants_stay_out_of_the_suites():
    from vpl.experiments.suites import ALL_MODELS, MODEL_VARIANTS

    assert MODEL_VARIANTS["vpl-linear"] == ("vpl", {"layers": 1, "latent_dim": 4})
    assert MODEL_VARIANTS["vpl-mlp"] == ("vpl", {"layers": 2})
    assert not {"vpl-linear", "vpl-amortized", "vpl-mlp", "vpl-concat"} & set(ALL_MODELS)
    assert all(m in ALL_MODELS for s in SUITES.values() for m in s.models)
