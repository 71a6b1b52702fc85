"""Checkpoints: safetensors weights and a JSON config, reloaded without executing anything."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from tests.models.helpers import vpl_batch as _batch
from vpl.checkpoint import load_model, save_model
from vpl.models import build


@pytest.mark.parametrize("name", ["btl", "vpl"])
def test_save_load_round_trip(name, tmp_path):
    model = build(name, 12, hidden=16).eval()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    b = _batch()
    assert type(loaded) is type(model)
    assert torch.equal(model.predict(b), loaded.predict(b))
    assert loaded.config == model.config


class _Boom:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_a_pickle_never_executes_it(tmp_path):
    import pickle

    model = build("btl", 12, hidden=16)
    save_model(model, tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(Exception):  # noqa: B017 - any parse error is fine, execution is not
        load_model(tmp_path)
    assert not marker.exists()


def test_save_writes_the_weights_and_the_config_and_nothing_else(tmp_path):
    model = build("btl", 12, hidden=16)
    save_model(model, tmp_path / "new" / "run")  # parents are created
    run = tmp_path / "new" / "run"
    assert sorted(p.name for p in run.iterdir()) == ["model.json", "model.safetensors"]
    cfg = json.loads((run / "model.json").read_text())
    assert cfg == {"model": "btl", "input_dim": 12, "config": dataclasses.asdict(model.config)}


def test_missing_config_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "model.json"))):
        load_model(tmp_path)
    save_model(build("btl", 12, hidden=16), tmp_path)
    cfg = json.loads((tmp_path / "model.json").read_text())
    del cfg["input_dim"]
    (tmp_path / "model.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'model.json'}: missing key "
                                                   "'input_dim'")):
        load_model(tmp_path)


def test_loaded_models_are_in_eval_mode(tmp_path):
    model = build("vpl", 12, hidden=16)
    model.train()
    save_model(model, tmp_path)
    assert not load_model(tmp_path).training
