"""Principal-component projection of wide item vectors, fitted on training items.

Layer-pooled text vectors are wide (2,688 dimensions per text with MiniLM, 5,376 per item with
its prompt), and the first layer of every reward model then costs 7 times what it costs on the
sentence embedding. Projecting the items onto the top principal components of the *training*
items keeps the directions along which items vary most. Nothing is learned from labels; test
items are projected with the basis of the training items.

The reduced space is then turned by a fixed random rotation (seeded). Adam is not rotation
invariant: in the principal-component basis each coordinate carries one direction, ordered by
variance, and per-coordinate step sizes then move the weights on low-variance directions as fast
as those on high-variance ones. In the raw vectors, as after a random rotation, every direction
is spread over many coordinates (measurements: docs/models.md, "Text vectors" and "Evidence
behind the defaults").
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vpl.data.pairs import PairData

PROJECTION = "projection.safetensors"
"""File name of a fitted projection in a run directory."""

RANK_TOL = 1e-5
"""Principal components whose variance is below this share of the largest are dropped as
numerical noise: the projection keeps fewer than the asked-for dimensions when the training
items span fewer."""


@dataclass(frozen=True)
class Projection:
    """x -> (x - mean) @ components: mean (D,), components (D, d) with orthonormal columns."""

    mean: np.ndarray
    components: np.ndarray

    @property
    def in_dim(self) -> int:
        """Size D of the vectors it takes."""
        return int(self.components.shape[0])

    @property
    def out_dim(self) -> int:
        """Size d of the vectors it returns."""
        return int(self.components.shape[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Project (N, D) vectors to (N, d) float32."""
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"projection expects (N, {self.in_dim}) item vectors, "
                             f"got {tuple(x.shape)}: were the items embedded with another "
                             "encoder than the run's?")
        return ((x - self.mean) @ self.components).astype(np.float32)

    def apply(self, data: PairData) -> PairData:
        """The same comparisons with projected item vectors."""
        return dataclasses.replace(data, items=self(data.items), _by_user=None)

    def save(self, path: str | os.PathLike) -> None:
        """Write the projection as safetensors, atomically."""
        import torch
        from safetensors.torch import save_file

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"mean": torch.from_numpy(np.ascontiguousarray(self.mean)),
                   "components": torch.from_numpy(np.ascontiguousarray(self.components))},
                  str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Projection:
        """Read a projection written by `save` (tensors only; nothing is unpickled)."""
        from safetensors.numpy import load_file

        t = load_file(str(path))
        try:
            return cls(t["mean"], t["components"])
        except KeyError as exc:
            raise ValueError(f"{path}: not a projection file (missing {exc})") from exc


def random_rotation(dim: int, seed: int = 0) -> np.ndarray:
    """A (dim, dim) orthogonal matrix drawn uniformly (Haar) with a seeded generator."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))  # the sign fix makes the draw uniform and unique


def fit_pca(items: np.ndarray, dim: int, *, max_rows: int = 20_000, seed: int = 0,
            rotate: bool = True) -> Projection:
    """The top-`dim` principal components of item vectors (N, D), from at most `max_rows`
    of them drawn at random (seeded). Components are the leading eigenvectors of the D x D
    covariance (or of the N x N Gram matrix when N < D), each signed so that its largest
    entry is positive: the basis is a deterministic function of the rows used. With `rotate`,
    the reduced space is turned by `random_rotation(dim, seed)` (see the module docstring):
    the same subspace, and the same distances within it. Components without variance
    (`RANK_TOL`) are dropped, so rank-deficient items give fewer than `dim` columns."""
    from scipy.linalg import eigh

    x = np.asarray(items, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"fit_pca needs at least 2 item vectors, got shape {x.shape}")
    if len(x) > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
    n, d = x.shape
    dim = min(dim, d, n - 1)
    mean = x.mean(0, dtype=np.float64)
    xc = (x - mean).astype(np.float32)
    gram = n < d  # fewer rows than dimensions: the smaller eigenproblem
    m = (xc @ xc.T if gram else xc.T @ xc).astype(np.float64)  # float32 product, float64 solve
    size = m.shape[0]
    vals, vecs = eigh(m, subset_by_index=(size - dim, size - 1))  # ascending
    vals, vecs = vals[::-1], vecs[:, ::-1]
    # Directions without variance (duplicate or collinear items: rank below `dim`) carry
    # rounding noise only; in the Gram path dividing by their ~0 eigenvalue would blow them up
    # to huge, non-orthonormal columns, which the rotation would then spread over all of them.
    keep = vals > max(float(vals[0]), 0.0) * RANK_TOL
    vals, vecs = vals[keep], vecs[:, keep]
    if not len(vals):
        raise ValueError("fit_pca: the item vectors are all identical (no variance to keep)")
    if gram:
        vecs = xc.T.astype(np.float64) @ vecs / np.sqrt(np.maximum(vals, 1e-30))
    vecs *= np.sign(vecs[np.abs(vecs).argmax(0), np.arange(vecs.shape[1])])
    if rotate:
        vecs = vecs @ random_rotation(vecs.shape[1], seed)
    return Projection(mean.astype(np.float32), np.ascontiguousarray(vecs, dtype=np.float32))


def fit_for(train: PairData, dim: int, *, seed: int = 0, rotate: bool = True) -> Projection:
    """`fit_pca` on the distinct items that the pairs of `train` use."""
    used = np.unique(np.concatenate([train.chosen, train.rejected]))
    return fit_pca(train.items[used], dim, seed=seed, rotate=rotate)


def fit_if_wider(train: PairData, item_dim: int | None, *, seed: int = 0) -> Projection | None:
    """`fit_for(train, item_dim)` where the item vectors are wider than `item_dim`; None where
    they are not, or where `item_dim` is None or 0 (never project)."""
    if not item_dim or train.dim <= item_dim:
        return None
    return fit_for(train, item_dim, seed=seed)
