"""Item identity codes: recurring items get a code, new items none, decided on training data."""

from __future__ import annotations

import numpy as np
import torch

from vpl.data.pairs import PairData
from vpl.embed.identity import ItemIdentity, fit_identity, users_per_item
from vpl.models import build
from vpl.train import TrainConfig, fit


def _recurring(n_users: int = 30, n_items: int = 12, pairs: int = 20, seed: int = 0) -> PairData:
    """Users of one taste over a few shared items whose text says nothing (random vectors)."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, 4)).astype(np.float32)
    worth = rng.normal(size=n_items)
    user, ch, rj = [], [], []
    for u in range(n_users):
        for _ in range(pairs):
            a, b = rng.choice(n_items, 2, replace=False)
            if worth[a] < worth[b]:
                a, b = b, a
            user.append(u)
            ch.append(a)
            rj.append(b)
    return PairData(items=items, user=np.array(user), chosen=np.array(ch),
                    rejected=np.array(rj), users=[f"u{i}" for i in range(n_users)],
                    item_keys=np.arange(100, 100 + n_items))


def test_fit_identity_codes_recurring_items_and_zeros_for_new_ones():
    data = _recurring()
    keys, counts = users_per_item(data)
    assert (counts >= 3).all() and len(keys) == 12
    ident = fit_identity(data)
    assert ident is not None and ident.dim == 12
    coded = ident.apply(data)
    assert coded.id_dim == 12 and coded.items.shape == (12, 16)
    assert np.allclose(coded.items[:, 4:], np.eye(12)) and np.allclose(coded.items[:, :4],
                                                                       data.items)
    assert coded.subset(np.arange(3)).id_dim == 12
    new = ident.codes_of(np.array([100, 999]))
    assert new[0].sum() == 1 and not new[1].any()


def test_no_identity_where_items_do_not_recur():
    data = _recurring()
    unique = PairData(items=np.zeros((2 * len(data), 4), np.float32), user=data.user,
                      chosen=np.arange(len(data)), rejected=np.arange(len(data), 2 * len(data)),
                      users=data.users)
    assert fit_identity(unique) is None


def test_many_items_get_unit_random_codes_and_round_trip(tmp_path):
    data = _recurring(n_items=40)
    ident = fit_identity(data, max_dim=16)
    assert ident.dim == 16 and np.allclose(np.linalg.norm(ident.codes, axis=1), 1.0)
    ident.save(tmp_path / "id.safetensors")
    back = ItemIdentity.load(tmp_path / "id.safetensors")
    assert np.array_equal(back.keys, ident.keys) and np.allclose(back.codes, ident.codes)


def test_identity_lets_a_model_learn_what_the_text_does_not_say():
    train, test = _recurring(seed=0), _recurring(n_users=10, seed=0)
    ident = fit_identity(train)
    acc = {}
    for name, (tr, te) in {"text": (train, test),
                           "identity": (ident.apply(train), ident.apply(test))}.items():
        torch.manual_seed(0)
        model = build("btl", tr.dim, hidden=32)
        fit(model, tr, None, TrainConfig(epochs=40, seed=0, patience=40), progress=False)
        from vpl.evaluate import evaluate_pairs
        acc[name] = evaluate_pairs(model, te, context_size=0).accuracy
    assert acc["identity"] > acc["text"] + 0.05 and acc["identity"] > 0.9
