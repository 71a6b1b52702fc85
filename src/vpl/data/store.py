"""Embedded comparisons on disk, read through memory maps: data larger than memory.

A store is a directory of flat little-endian arrays and a `store.json` that says their shapes:

    items.f32       (N, D) item vectors          item_keys.i64  (N,) response ids
    user.i64        (P,) user index              chosen.i64 / rejected.i64  (P,) item indices
    store.json      {"dim", "items", "pairs", "users", "embed_model", ...}

`build_store` streams comparisons from files (JSONL, CSV, Parquet: `vpl.data.io.row_iterator`)
in chunks: each chunk's new items are embedded (through the encoder's cache) and appended, so
memory holds one chunk plus the index of distinct items (a 16-byte digest per item) and users,
never the comparisons or the vectors. `open_store` returns a `PairData` whose arrays are memory
maps: training (`vpl.train.fit`), evaluation and active selection gather the rows a batch needs
and the operating system pages the rest in and out. The store is built in a temporary
directory and swapped into place when complete, so an interrupted build leaves no store, or the
previous one, never half of one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm.auto import tqdm

from vpl.data.io import FieldMap, atomic_write_text, iter_records, replace_dir
from vpl.data.pairs import PairData
from vpl.data.schema import Comparison

META = "store.json"
ARRAYS = {"items": np.float32, "item_keys": np.int64, "user": np.int64, "chosen": np.int64,
          "rejected": np.int64}
"""Array files of a store and their element types."""
FORMAT = 1


def _file(name: str) -> str:
    return f"{name}.{'f32' if ARRAYS[name] is np.float32 else 'i64'}"


class StoreWriter:
    """Appends items and comparisons to a new store directory (`finish` swaps it into place).

    Items are identified by a key (bytes): `add_items` skips keys it has seen, and pairs refer
    to items by key. Users are numbered in order of first appearance.
    """

    def __init__(self, out: str | os.PathLike, *, embed_model: str = "",
                 users: Sequence[str] = ()) -> None:
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.tmp-"))
        self.files: dict[str, BinaryIO] = {  # closed by finish or abort
            n: open(self.tmp / _file(n), "wb") for n in ARRAYS}  # noqa: SIM115
        self.index: dict[bytes, int] = {}
        self.users: dict[str, int] = {name: i for i, name in enumerate(users)}
        self.dim: int | None = None
        self.n_items = self.pairs = 0
        self.embed_model = embed_model

    def has(self, key: bytes) -> bool:
        """Whether an item with this key is stored."""
        return key in self.index

    def append_items(self, vectors: np.ndarray, item_keys: np.ndarray) -> None:
        """Append (n, D) item vectors and their response ids; they get the next indices."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.dim is None:
            self.dim = vectors.shape[1]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(item_keys):
            raise ValueError(f"expected ({len(item_keys)}, {self.dim}) item vectors, got "
                             f"{vectors.shape}")
        self.files["items"].write(vectors.astype("<f4").tobytes())
        self.files["item_keys"].write(np.asarray(item_keys, "<i8").tobytes())
        self.n_items += len(vectors)

    def add_items(self, keys: Sequence[bytes], vectors: np.ndarray, item_keys: np.ndarray
                  ) -> None:
        """Append the items (keys, vectors, response ids) whose keys are new."""
        new: list[int] = []
        for i, k in enumerate(keys):
            if k not in self.index:
                self.index[k] = self.n_items + len(new)
                new.append(i)
        self.append_items(np.asarray(vectors)[new], np.asarray(item_keys)[new])

    def append_pairs(self, user: np.ndarray, chosen: np.ndarray, rejected: np.ndarray) -> None:
        """Append comparisons as (P,) user indices and item indices."""
        for name, idx in (("user", user), ("chosen", chosen), ("rejected", rejected)):
            self.files[name].write(np.asarray(idx, dtype="<i8").tobytes())
        self.pairs += len(user)

    def add_pairs(self, users: Sequence[str], chosen: Sequence[bytes], rejected: Sequence[bytes]
                  ) -> None:
        """Append comparisons of stored items (by key) by users (by name)."""
        self.append_pairs([self.users.setdefault(name, len(self.users)) for name in users],
                          [self.index[k] for k in chosen], [self.index[k] for k in rejected])

    def finish(self, **meta: Any) -> Path:
        """Close the files, write `store.json` and swap the store into place."""
        for fh in self.files.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        info = {"format": FORMAT, "dim": self.dim or 0, "items": self.n_items,
                "pairs": self.pairs, "users": list(self.users), "embed_model": self.embed_model,
                **meta}
        atomic_write_text(self.tmp / META, json.dumps(info))
        replace_dir(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        """Drop the unfinished store."""
        for fh in self.files.values():
            fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        if exc_type is not None:
            self.abort()


def item_key(prompt: str, response: str) -> bytes:
    """The 16-byte identity of a (prompt, response) item."""
    h = hashlib.blake2b(digest_size=16)
    h.update(prompt.encode())
    h.update(b"\0")
    h.update(response.encode())
    return h.digest()


def stream_records(paths: str | os.PathLike | Iterable[str | os.PathLike],
                   fields: FieldMap | None = None, *, chunk: int = 10_000
                   ) -> Iterator[list[Comparison]]:
    """Comparisons of the files, validated (`vpl.data.io.iter_records`: a bad row raises
    `DataError` naming the file, line and field), `chunk` at a time."""
    rows = iter_records(paths, fields)
    while out := list(itertools.islice(rows, chunk)):
        yield out


def build_store(paths: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike,
                encoder: Any, *, fields: FieldMap | None = None, chunk: int = 10_000,
                progress: bool = True, embed_model: str | None = None) -> Path:
    """Embed comparisons from files into a store at `out`, a chunk at a time (items as
    `vpl.embed.encoder.item_vectors` embeds them, through the encoder's cache; no projection).
    `embed_model` is the encoder's `--embed-model` name to record (so a run trained on the
    store embeds new data alike); by default its `model_id`."""
    from vpl.embed.encoder import hash_text, item_vectors, split_response

    name = embed_model if embed_model is not None else getattr(encoder, "model_id", "")
    with StoreWriter(out, embed_model=name) as w:
        bar = tqdm(desc="store", unit=" pairs", disable=not progress)
        for records in stream_records(paths, fields, chunk=chunk):
            split = [split_response(r.prompt, r.chosen, r.rejected) for r in records]
            ch = [item_key(p, c) for p, c, _ in split]
            rj = [item_key(p, j) for p, _, j in split]
            new: dict[bytes, tuple[str, str]] = {}
            for (p, c, j), kc, kr in zip(split, ch, rj, strict=True):
                for key, item in ((kc, (p, c)), (kr, (p, j))):
                    if not w.has(key):
                        new.setdefault(key, item)
            if new:
                items = list(new.values())
                w.add_items(list(new), item_vectors(items, encoder),
                            np.array([hash_text(r) for _, r in items], dtype=np.int64))
            w.add_pairs([r.user_id for r in records], ch, rj)
            bar.update(len(records))
        bar.close()
        return w.finish()


def write_arrays(out: str | os.PathLike, user: np.ndarray, chosen: np.ndarray,
                 rejected: np.ndarray, users: Sequence[str], item_rows: Iterable[np.ndarray],
                 *, item_keys: np.ndarray | None = None, chunk: int = 1 << 20) -> Path:
    """A store from index arrays (e.g. synthetic data), with item vectors given as successive
    blocks of rows (so a store larger than memory can be written); item_keys default to the
    item indices."""
    with StoreWriter(out, users=users) as w:
        for rows in item_rows:
            start = w.n_items
            keys = (np.arange(start, start + len(rows)) if item_keys is None
                    else item_keys[start : start + len(rows)])
            w.append_items(rows, keys)
        for s in range(0, len(user), chunk):
            w.append_pairs(user[s : s + chunk], chosen[s : s + chunk], rejected[s : s + chunk])
        return w.finish()


def store_info(path: str | os.PathLike) -> dict[str, Any]:
    """A store's `store.json` (sizes, users, the encoder that made its vectors)."""
    meta_path = Path(path) / META
    if not meta_path.exists():
        raise FileNotFoundError(f"{path}: not a vpl store (no {META}; an interrupted build "
                                "leaves none)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: store format {meta.get('format')}, expected {FORMAT}")
    return meta


def open_store(path: str | os.PathLike) -> PairData:
    """The comparisons of a store as a `PairData` over memory maps (copy-on-write: the files
    are never written, and tensors may be made from the arrays)."""
    path = Path(path)
    meta = store_info(path)
    shapes = {"items": (meta["items"], meta["dim"]), "item_keys": (meta["items"],),
              "user": (meta["pairs"],), "chosen": (meta["pairs"],), "rejected": (meta["pairs"],)}
    arrays = {}
    for name, shape in shapes.items():
        f = path / _file(name)
        want = int(np.prod(shape)) * np.dtype(ARRAYS[name]).itemsize
        if f.stat().st_size != want:
            raise ValueError(f"{f}: {f.stat().st_size} bytes, {META} says {want}")
        arrays[name] = (np.memmap(f, dtype=np.dtype(ARRAYS[name]).newbyteorder("<"), mode="c",
                                  shape=shape) if want else np.zeros(shape, ARRAYS[name]))
    return PairData(items=arrays["items"], user=arrays["user"], chosen=arrays["chosen"],
                    rejected=arrays["rejected"], users=list(meta["users"]),
                    item_keys=arrays["item_keys"])
