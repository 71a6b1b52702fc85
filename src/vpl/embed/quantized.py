"""Sentence encoders compiled to ONNX and run by ONNX Runtime, with int8 weights.

A sentence encoder's name followed by a backend selects it: `+onnx-int8` (weights quantized to
int8 per output channel, activations quantized per batch as they come: ONNX Runtime's dynamic
quantization) or `+onnx` (the same graph in float32, to tell the compiler's share from the
quantizer's). `minilm+onnx-int8` runs the default encoder, layer pooling included, this way;
the PyTorch encoder stays the default.
The backend is part of the cache identity (`model_id`), so these vectors never mix with the
PyTorch encoder's in the embedding cache.

The exported graph computes the whole pooled vector (`sentence` pooling: the model's own
modules, then unit norm; `layers` pooling: `vpl.embed.encoder.pool_layers` over every hidden
state), so it is traced from the same code as the PyTorch path and the vectors differ only by
the quantization (for MiniLM, cosine above 0.99 with layer pooling, about 0.98 for the
sentence embedding: benchmarks/results/quantized.md, tests/embed/test_quantized.py). It is exported
once, from the local model folder, into the cache folder (`vpl.embed.cache.models_dir`), with
the tokenizer beside it; later loads take a second. The graph is traced with the model's eager
attention: plain matrix products, which ONNX Runtime quantizes and runs faster than the graph of
PyTorch's fused attention.

The folder of an export is named after the encoder's `model_id`: a local model folder that is
rewritten in place keeps its name (as in the embedding cache); delete its export to redo it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from vpl.embed.cache import EmbeddingCache, building, models_dir
from vpl.embed.encoder import (
    DEFAULT_ENCODER,
    SentenceEncoder,
    hidden_model,
    in_batches,
    pool_layers,
)
from vpl.embed.offline import offline_defaults

log = logging.getLogger(__name__)

BACKENDS: dict[str, bool] = {"onnx": False, "onnx-int8": True}
"""Backend name (after `+` in an encoder name) -> whether the graph's weights are int8."""

EXPORT_FORMAT = 1
"""Version of the export recipe, in the name of an export's folder, so that a new recipe makes a
new export; the embedding cache keys on the encoder's name alone, so a recipe that changes the
vectors takes a new backend name too."""

GRAPH = "model.onnx"
META = "export.json"
"""Files of an export folder beside the tokenizer's: the graph, and what it was made from (the
last to be written)."""

_SUFFIX = re.compile(r"\+([A-Za-z0-9_-]+)$")


def split_backend(name: str) -> tuple[str, str | None]:
    """(encoder name without its backend, the backend or None): the name's `+backend` suffix.
    A suffix that names no backend is an error, unless the whole name is a local folder."""
    m = _SUFFIX.search(name)
    if m is None or Path(name).exists():
        return name, None
    if m.group(1) not in BACKENDS:
        raise ValueError(f"{name!r}: unknown encoder backend {m.group(1)!r}; expected one of "
                         f"{', '.join('+' + b for b in BACKENDS)}")
    return name[: m.start()], m.group(1)


class _PooledGraph(torch.nn.Module):
    """What the exported graph computes: a sentence-transformers model's unit-norm vector of a
    tokenized batch, from the tokenizer's inputs (each (B, T)) in `names` order."""

    def __init__(self, model, pooling: str, names: list[str]) -> None:  # noqa: ANN001
        super().__init__()
        self.model, self.pooling, self.names = model, pooling, names
        self.hidden = hidden_model(model) if pooling == "layers" else None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.names, inputs, strict=True))
        if self.hidden is not None:
            states = self.hidden(**batch, output_hidden_states=True).hidden_states
            return pool_layers(states, batch["attention_mask"])  # (B, (1 + L) x H)
        vec = self.model(batch)["sentence_embedding"]  # (B, H)
        return torch.nn.functional.normalize(vec, dim=-1)


def export(path: str, pooling: str, out: Path, *, quantize: bool) -> None:
    """Write the ONNX graph (`GRAPH`) of a local sentence-transformers model with a pooling
    (`sentence` or `layers`), its weights int8 when `quantize`, the tokenizer and `META` into
    the folder `out`."""
    offline_defaults()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu",
                                model_kwargs={"attn_implementation": "eager"})
    tok = model.tokenizer
    names = list(tok.model_input_names)
    example = tok(["a first example", "a second, longer example of a text"], padding=True,
                  return_tensors="pt")
    traced = out / (f"float32-{GRAPH}" if quantize else GRAPH)
    with warnings.catch_warnings():
        # the tracer fixes Python-side shape checks of the attention mask as constants; in an
        # encoder they hold for every input (tests compare vectors on other shapes)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        # the TorchScript exporter (deprecated in favour of the dynamo one): its int8 graph of
        # MiniLM ran at 180-200 texts/s on 2 cores from the first batch on, the dynamo
        # exporter's at 80-190, and it needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_PooledGraph(model, pooling, names).eval(),
                          tuple(example[n] for n in names), str(traced), dynamo=False,
                          input_names=names, output_names=["vector"], opset_version=17,
                          dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names})
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(traced, out / GRAPH, weight_type=QuantType.QInt8, per_channel=True)
        traced.unlink()
    tok.save_pretrained(out)
    (out / META).write_text(json.dumps(
        {"source": path, "pooling": pooling, "int8": quantize, "inputs": names,
         "max_tokens": int(model.max_seq_length), "format": EXPORT_FORMAT}, indent=1))


def exported_dir(path: str, pooling: str, model_id: str, *, quantize: bool,
                 root: Path | None = None) -> Path:
    """The export folder of an encoder (`export`), made on first use under `root` (default the
    cache's `models_dir`), written to a temporary folder and renamed when complete."""
    root = root if root is not None else models_dir()
    digest = hashlib.sha1(f"{model_id}\x00{EXPORT_FORMAT}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", model_id.rsplit("/", 1)[-1]).strip("_")
    out = root / f"{slug}-{digest}"
    if (out / META).exists():
        return out
    log.info("exporting %s to ONNX (once): %s", model_id, out)
    with building(out) as tmp:
        export(path, pooling, tmp, quantize=quantize)
    return out


class OnnxEncoder(SentenceEncoder):
    """A sentence encoder (the names and pooling of `SentenceEncoder`) run by ONNX Runtime on
    the CPU, from a graph exported once into the cache folder; loaded lazily, with the disk
    cache. It uses as many threads as PyTorch is set to (`torch.get_num_threads`)."""

    def __init__(self, model: str = DEFAULT_ENCODER, *, backend: str = "onnx-int8",
                 cache: EmbeddingCache | None | bool = True, batch_size: int = 64,
                 device: str = "cpu", progress: bool = True, root: Path | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; expected one of "
                             f"{tuple(BACKENDS)}")
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"the +{backend} backend needs {' and '.join(missing)}: "
                               "pip install 'vpl-rlhf[fast]'")
        if device != "cpu":
            raise ValueError(f"the +{backend} backend runs on the CPU, not {device!r}: on a "
                             f"GPU, use the PyTorch encoder (the name without +{backend})")
        super().__init__(model, cache=cache, batch_size=batch_size, device=device,
                         progress=progress)
        self.backend = backend
        self.model_id += f"+{backend}"
        self.root = root
        self._tok = None
        self._meta: dict = {}

    def export_dir(self) -> Path:
        """The export folder (exported now if it is not there yet)."""
        return exported_dir(self.path, self.pooling, self.model_id,
                            quantize=BACKENDS[self.backend], root=self.root)

    @property
    def model(self):
        """The ONNX Runtime session of the exported graph (loaded on first use)."""
        if self._model is None:
            import onnxruntime as ort
            from transformers import AutoTokenizer

            folder = self.export_dir()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.inter_op_num_threads = 1
            self._tok = AutoTokenizer.from_pretrained(str(folder))
            self._meta = json.loads((folder / META).read_text())
            self._model = ort.InferenceSession(str(folder / GRAPH), opts,
                                               providers=["CPUExecutionProvider"])
        return self._model

    @property
    def tokenizer(self):
        """The model's tokenizer (saved with the graph, loaded with it)."""
        _ = self.model
        return self._tok

    @property
    def max_tokens(self) -> int:
        """The encoder's input length limit in tokens."""
        _ = self.model
        return int(self._meta["max_tokens"])

    def _embed(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 vectors of texts by the graph, no cache."""
        session, tok, limit = self.model, self.tokenizer, self.max_tokens
        names = self._meta["inputs"]

        def run(batch: list[str]) -> np.ndarray:
            enc = tok(batch, padding=True, truncation=True, max_length=limit,
                      return_tensors="np")
            return session.run(None, {n: enc[n].astype(np.int64) for n in names})[0]

        return in_batches(texts, self.batch_size, run, desc=f"embedding (+{self.backend})",
                          progress=self.progress)
