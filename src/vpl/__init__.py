"""vpl: personalized reward learning from human feedback (Variational Preference Learning).

Importing vpl makes the Hugging Face libraries work offline unless the caller decided
otherwise: model names that are not on disk fail at once instead of hanging on the network.
"""

import os as _os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
