"""A disk cache of embeddings keyed by (model id, text hash), stored in SQLite."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def cache_root() -> Path:
    """`$VPL_CACHE_DIR`, by default ~/.cache/vpl."""
    return Path(os.environ.get("VPL_CACHE_DIR") or Path.home() / ".cache" / "vpl")


def default_cache_path() -> Path:
    """`$VPL_CACHE_DIR/embeddings.sqlite`, by default under ~/.cache/vpl."""
    return cache_root() / "embeddings.sqlite"


def models_dir() -> Path:
    """Where models converted on first use are kept (`$VPL_CACHE_DIR/models`)."""
    return cache_root() / "models"


@contextmanager
def building(out: Path) -> Iterator[Path]:
    """An empty temporary folder beside `out` to write a model folder into: renamed to `out` when
    the block succeeds (dropped if another process made `out` meanwhile), removed when it fails,
    so `out` never holds a half-written model."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(out)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)


def text_key(model_id: str, text: str) -> str:
    """Cache key of one text under one model."""
    return hashlib.sha1(f"{model_id}\x00{text}".encode()).hexdigest()


class EmbeddingCache:
    """Persistent map from (model id, text) to a float32 vector; safe to share across runs."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: a server shares one cache between its request threads
        # (sqlite3 serializes calls on one connection)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._setup()

    def _setup(self, attempts: int = 100) -> None:
        """WAL mode and the table. Several processes opening a new cache at once (the ranks of
        a distributed run) can find it locked while one switches the journal mode, which
        SQLite reports at once rather than waiting: retried for up to ~10 s."""
        for i in range(attempts):
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.1)

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Vectors for the keys that are cached."""
        found: dict[str, np.ndarray] = {}
        for s in range(0, len(keys), 500):
            chunk = keys[s : s + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
            for k, blob in self._db.execute(q, chunk):
                found[k] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors (one transaction)."""
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
