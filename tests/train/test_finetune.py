"""LoRA fine-tuning of a causal-LM backbone under the reward model's loss: adapters move, the
base weights do not, only adapters are saved, and the saved adapters reproduce the vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vpl.data.io import load_records
from vpl.embed.causal import CausalLMEncoder
from vpl.embed.encoder import index_comparisons, item_vectors
from vpl.models import build
from vpl.train import TrainConfig
from vpl.train.finetune import LoRAConfig, finetune_then_fit, save_adapters

pytest.importorskip("peft")


@pytest.mark.parametrize("name", ["btl", "vpl"])
def test_lora_trains_the_adapters_and_leaves_the_backbone(tiny_lm, pets, tmp_path, name):
    records, _ = load_records(pets / "train.jsonl")
    records = records[:120]
    pairs, data = index_comparisons(records)
    enc = CausalLMEncoder(f"causal:{tiny_lm}#mean", cache=False, progress=False, device="cpu",
                          max_tokens=32)
    base = {k: v.detach().clone() for k, v in enc.model.named_parameters()}
    torch.manual_seed(0)
    model = build(name, 64, **({"latent_dim": 4, "refine_epochs": 0} if name == "vpl" else {}))
    cfg = TrainConfig(epochs=1, seed=0, context_size=4)
    res, train_v, _ = finetune_then_fit(model, enc, pairs, data, None, cfg,
                                        LoRAConfig(epochs=1, users_per_batch=4, lr=1e-2),
                                        progress=False)
    assert np.isfinite(res.after_fit["lora_loss_epoch0"]) and train_v.items.shape == (len(pairs),
                                                                                     64)
    named = dict(enc.model.named_parameters())
    lora = {k: v for k, v in named.items() if "lora_" in k}
    assert lora and any(not torch.allclose(v, torch.zeros_like(v)) for k, v in lora.items()
                        if "lora_B" in k)  # B starts at zero: it moved
    plain_names = {k.removeprefix("base_model.model.").replace(".base_layer.", "."): v
                   for k, v in named.items() if "lora_" not in k}
    assert plain_names.keys() == base.keys()
    for k, v in base.items():  # every base weight is where it was
        torch.testing.assert_close(plain_names[k], v)

    out = save_adapters(enc, tmp_path / "run")
    files = sorted(p.name for p in out.iterdir())
    assert "adapter_model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert (out / "adapter_model.safetensors").stat().st_size < 200_000  # adapters, not a model
    reloaded = CausalLMEncoder(f"causal:{tiny_lm}#mean+lora={out}", cache=False,
                               progress=False, device="cpu", max_tokens=32)
    np.testing.assert_allclose(item_vectors(pairs[:10], reloaded), train_v.items[:10],
                               atol=1e-5)
    plain = CausalLMEncoder(f"causal:{tiny_lm}#mean", cache=False, progress=False,
                            device="cpu", max_tokens=32)
    assert reloaded.model_id != plain.model_id  # the cache never mixes tuned and frozen vectors


def test_train_command_with_lora_saves_adapters_that_evaluate_loads(tiny_lm, pets, tmp_path,
                                                                    capsys):
    from vpl.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(pets / "train.jsonl"), "--model", "btl", "--out",
                 str(run), "--embed-model", f"causal:{tiny_lm}#mean", "--finetune", "lora",
                 "--lora-epochs", "1", "--epochs", "2", "--quiet"]) == 0
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["embed_model"].endswith(f"+lora={run.resolve() / 'adapters'}")
    assert (run / "adapters" / "adapter_model.safetensors").exists()
    assert not (run / "projection.safetensors").exists()
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(pets / "test.jsonl"),
                 "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0
    assert main(["train", "--data", str(pets / "train.jsonl"), "--model", "btl", "--out",
                 str(tmp_path / "bad"), "--finetune", "lora", "--quiet"]) == 2  # MiniLM
