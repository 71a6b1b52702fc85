"""Offline defaults for the Hugging Face libraries (hub, transformers, datasets, tokenizers)."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""Environment variables that `offline_defaults` sets where the caller has not set them."""


def offline_defaults() -> None:
    """Set each of `OFFLINE_DEFAULTS` that is not already in the environment.

    With them a model or dataset name that is not on disk fails at once instead of waiting on
    the network, no telemetry is sent, and tokenizers do not start threads that forked worker
    processes would inherit. A variable the caller set, to any value, is left alone. The
    libraries read these variables when they are first imported, so this runs before any of
    them is: at the start of the `vpl` command and where `vpl` loads a model or a dataset.
    """
    for name, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
