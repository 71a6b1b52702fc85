"""Item projection: principal components of the training items, rotated, saved with the run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vpl.data.pairs import PairData
from vpl.embed.projection import PROJECTION, Projection, fit_for, fit_pca, random_rotation


def _low_rank_items(n: int = 300, d: int = 40, rank: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, d)) * np.arange(rank, 0, -1)[:, None]  # distinct variances
    return (rng.normal(size=(n, rank)) @ basis + 0.01 * rng.normal(size=(n, d)) + 3.0).astype(
        np.float32)


def _sklearn_subspace(x: np.ndarray, dim: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(dim, svd_solver="full").fit(x).components_.T  # (D, dim)


@pytest.mark.parametrize("n", [300, 20])  # covariance path, and Gram path (fewer rows than D)
def test_pca_matches_sklearn_components(n):
    x = _low_rank_items(n=n)
    dim = 5
    p = fit_pca(x, dim, rotate=False)
    want = _sklearn_subspace(x, dim)
    # the same components up to sign, in the same order
    np.testing.assert_allclose(np.abs(np.sum(p.components * want, 0)), 1.0, atol=1e-4)
    np.testing.assert_allclose(p.mean, x.mean(0), atol=1e-5)
    np.testing.assert_allclose(p.components.T @ p.components, np.eye(dim), atol=1e-4)


def test_rotation_keeps_the_subspace_and_distances():
    x = _low_rank_items()
    plain, turned = fit_pca(x, 6, rotate=False), fit_pca(x, 6)
    # same span: the projector onto the columns is unchanged
    np.testing.assert_allclose(plain.components @ plain.components.T,
                               turned.components @ turned.components.T, atol=1e-4)
    a, b = plain(x), turned(x)
    np.testing.assert_allclose(np.linalg.norm(a[:50, None] - a[None, :50], axis=-1),
                               np.linalg.norm(b[:50, None] - b[None, :50], axis=-1), atol=1e-3)
    # and the rotation really mixes coordinates: no column stays a single component
    overlap = np.abs(plain.components.T @ turned.components)  # (6, 6)
    assert overlap.max() < 0.99
    q = random_rotation(6, seed=3)
    np.testing.assert_allclose(q @ q.T, np.eye(6), atol=1e-10)
    np.testing.assert_array_equal(q, random_rotation(6, seed=3))


def test_fit_is_deterministic_and_keeps_the_variance():
    x = _low_rank_items()
    a, b = fit_pca(x, 6), fit_pca(x.copy(), 6)
    np.testing.assert_array_equal(a.components, b.components)
    # a rank-6 signal plus small noise: 6 components keep nearly all of the variance
    xc = x - x.mean(0)
    kept = np.sum(a(x) ** 2) / np.sum(xc**2)
    assert kept > 0.999


@pytest.mark.parametrize("n", [300, 20])
def test_rank_deficient_items_keep_only_components_with_variance(n):
    # exact rank 4 (no noise) and duplicated rows: asking for more components than the items
    # span must not give huge, non-orthonormal columns (the Gram path divided by ~0 before)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(n // 2, 4)) @ rng.normal(size=(4, 40))).astype(np.float32)
    x = np.concatenate([x, x])
    p = fit_pca(x, 12)
    assert p.out_dim == 4
    np.testing.assert_allclose(p.components.T @ p.components, np.eye(4), atol=1e-4)
    xc = x - x.mean(0)
    np.testing.assert_allclose(np.sum(p(x) ** 2), np.sum(xc**2), rtol=1e-3)
    with pytest.raises(ValueError, match="identical"):
        fit_pca(np.ones((5, 40), dtype=np.float32), 3)


def test_projection_roundtrip_and_shape_errors(tmp_path):
    x = _low_rank_items()
    p = fit_pca(x, 4)
    p.save(tmp_path / PROJECTION)
    q = Projection.load(tmp_path / PROJECTION)
    np.testing.assert_array_equal(p(x), q(x))
    with pytest.raises(ValueError, match=r"expects \(N, 40\)"):
        q(x[:, :10])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own header error
        Projection.load(tmp_path / "bad.safetensors")


def test_fit_for_uses_only_the_items_of_the_pairs():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(60, 12)).astype(np.float32)
    items[30:] += 100.0  # items no pair uses: they would dominate the mean and components
    data = PairData(items=items, user=np.zeros(20, dtype=int),
                    chosen=np.arange(0, 20), rejected=np.arange(10, 30), users=["u"])
    p = fit_for(data, 3)
    np.testing.assert_allclose(p.mean, items[:30].mean(0), atol=1e-5)
    out = p.apply(data)
    assert out.items.shape == (60, 3) and out.dim == 3
    np.testing.assert_array_equal(out.chosen, data.chosen)


def test_train_run_saves_the_projection_and_evaluate_applies_it(tmp_path, capsys):
    from vpl.cli import main
    from vpl.data.io import write_jsonl
    from vpl.data.pets import generate_pets

    train, test = generate_pets("controversial", seed=0, users_per_type=5,
                                test_users_per_type=2, pairs_per_user=12)
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "test.jsonl", test)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "train.jsonl"), "--model", "vpl", "--out",
                 str(run), "--epochs", "1", "--context-size", "4", "--item-dim", "32",
                 "--quiet"]) == 0
    saved = json.loads((run / "run.json").read_text())
    assert saved["item_dim"] == 32
    assert saved["embed_model"] == "bundled:all-MiniLM-L6-v2#layers"  # the default encoder
    assert json.loads((run / "model.json").read_text())["input_dim"] == 32
    assert Projection.load(run / PROJECTION).out_dim == 32
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(tmp_path / "test.jsonl"),
                 "--context-size", "4", "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0
    # without a projection the model sees the encoder's own vectors
    raw = tmp_path / "raw"
    assert main(["train", "--data", str(tmp_path / "train.jsonl"), "--model", "btl", "--out",
                 str(raw), "--epochs", "1", "--item-dim", "0", "--quiet"]) == 0
    assert not (raw / PROJECTION).exists()
    assert json.loads((raw / "model.json").read_text())["input_dim"] == 2 * 7 * 384
