"""Item identity beside the text vector: collaborative signal where items recur across users.

Where the same items are judged by many users (ratings tables, crowd comparisons), who
preferred an item says something its text may not. `ItemIdentity` appends an identity code to
every item vector: a one-hot code for each item seen by at least `min_users` training users
(random unit codes when there are more such items than `max_dim`), zeros for every other item.
A model's first linear layer on the code is then a learned per-item vector (LightFM's identity
features; Kula, 2015), and an item never seen in training keeps its text vector alone (cold
start). During training the loop zeroes the codes of a random share of the items every epoch
(`TrainConfig.identity_dropout`), so the text path stays able to score new items (the
DropoutNet idea; Volkovs et al., NeurIPS 2017).

Items are identified by `PairData.item_keys` (a hash of the response text). Whether to use
identity at all is decided on the training data alone (`fit_identity`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from vpl.data.pairs import PairData

IDENTITY = "identity.safetensors"
"""File name of a fitted identity code table in a run directory."""


@dataclass(frozen=True)
class ItemIdentity:
    """Codes (N, d) of the N vocabulary items, by their sorted keys (N,)."""

    keys: np.ndarray
    codes: np.ndarray

    @property
    def dim(self) -> int:
        """Size d of the appended code."""
        return int(self.codes.shape[1])

    def codes_of(self, item_keys: np.ndarray) -> np.ndarray:
        """(M, d) codes of items with keys (M,): their row, or zeros outside the vocabulary."""
        out = np.zeros((len(item_keys), self.dim), dtype=np.float32)
        if not len(self.keys):
            return out
        pos = np.searchsorted(self.keys, item_keys).clip(0, len(self.keys) - 1)
        hit = self.keys[pos] == item_keys
        out[hit] = self.codes[pos[hit]]
        return out

    def apply(self, data: PairData) -> PairData:
        """The same comparisons with item vectors [x, code]; `id_dim` records the code size."""
        if data.id_dim:
            raise ValueError("these item vectors already carry identity codes")
        items = np.concatenate([data.items, self.codes_of(data.item_keys)], axis=1)
        return dataclasses.replace(data, items=items, id_dim=self.dim, _by_user=None)

    def save(self, path: str | os.PathLike) -> None:
        """Keys and codes as safetensors, written atomically."""
        import torch
        from safetensors.torch import save_file

        tmp = f"{path}.tmp"
        save_file({"keys": torch.from_numpy(self.keys.astype(np.int64)),
                   "codes": torch.from_numpy(self.codes.astype(np.float32))}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ItemIdentity:
        """Read a table written by `save`."""
        from safetensors.numpy import load_file

        t = load_file(str(path))
        return cls(t["keys"], t["codes"])


def users_per_item(data: PairData) -> tuple[np.ndarray, np.ndarray]:
    """(item keys (N,), how many distinct users judged each (N,)) over the pairs of `data`."""
    keys = np.concatenate([data.item_keys[data.chosen], data.item_keys[data.rejected]])
    users = np.concatenate([data.user, data.user])
    pairs = np.unique(np.stack([keys, users], 1), axis=0)  # one row per (item, user)
    uniq, counts = np.unique(pairs[:, 0], return_counts=True)
    return uniq, counts


def fit_identity(train: PairData, *, min_users: int = 3, min_share: float = 0.5,
                 max_dim: int = 1024, seed: int = 0) -> ItemIdentity | None:
    """Identity codes for the items of `train` judged by at least `min_users` users, or None
    when items do not recur: when fewer than `min_share` of the training pairs have both items
    in that vocabulary."""
    keys, counts = users_per_item(train)
    vocab = np.sort(keys[counts >= min_users])
    if not len(vocab):
        return None
    both = (np.isin(train.item_keys[train.chosen], vocab)
            & np.isin(train.item_keys[train.rejected], vocab))
    if both.mean() < min_share:
        return None
    n = len(vocab)
    if n <= max_dim:
        codes = np.eye(n, dtype=np.float32)
    else:  # nearly orthogonal random unit codes
        codes = np.random.default_rng(seed).normal(size=(n, max_dim)).astype(np.float32)
        codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    return ItemIdentity(vocab.astype(np.int64), codes)
