"""Save and load models as safetensors weights + a JSON config; nothing is unpickled."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from vpl.data.io import atomic_write_text
from vpl.models import RewardModel, build

WEIGHTS = "model.safetensors"
CONFIG = "model.json"


def save_model(model: RewardModel, run_dir: str | os.PathLike) -> None:
    """Write `model.safetensors` and `model.json` into run_dir, each atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = run_dir / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, run_dir / WEIGHTS)
    atomic_write_text(run_dir / CONFIG, json.dumps(model.config_dict(), indent=2))


def load_model(run_dir: str | os.PathLike) -> RewardModel:
    """Rebuild a model from `model.json` and load `model.safetensors` (no code execution)."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path}: no model config; is {run_dir} a vpl run directory?")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    try:
        model = build(cfg["model"], int(cfg["input_dim"]), **cfg.get("config", {}))
    except KeyError as exc:
        raise ValueError(f"{cfg_path}: missing key {exc}") from exc
    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    model.eval()
    return model
