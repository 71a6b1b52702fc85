"""A disk cache of embeddings keyed by (model id, text hash), stored in SQLite."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np


def default_cache_path() -> Path:
    """`$VPL_CACHE_DIR/embeddings.sqlite`, by default under ~/.cache/vpl."""
    root = os.environ.get("VPL_CACHE_DIR") or Path.home() / ".cache" / "vpl"
    return Path(root) / "embeddings.sqlite"


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
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")

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
