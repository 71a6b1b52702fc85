"""vpl: personalized reward learning from human feedback (Variational Preference Learning).

Importing vpl changes no global state. The `vpl` command, and the library wherever it loads a
Hugging Face model or dataset, first calls `vpl.embed.offline_defaults()`, which makes those
libraries work offline (`HF_HUB_OFFLINE=1` and friends) unless the caller set the variables:
model names that are not on disk fail at once instead of hanging on the network.
"""

__version__ = "0.1.0"
