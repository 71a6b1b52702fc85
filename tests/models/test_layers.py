"""Shared building blocks: the MLP builder, the pair encoder and the set encoders."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vpl.models.layers import PairEncoder, SetEncoder, mlp


def test_mlp_layers_widths_and_output_bias():
    net = mlp(5, 7, 3, layers=2)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 7), (7, 3)]
    assert sum(isinstance(m, nn.GELU) for m in net) == 2 and linears[-1].bias is not None
    assert mlp(5, 7, 1, layers=2, out_bias=False)[-1].bias is None
    (only,) = mlp(5, 7, 3, layers=0)  # no hidden layer: one linear map
    assert (only.in_features, only.out_features) == (5, 3)
    assert sum(isinstance(m, nn.Dropout) for m in mlp(5, 7, 3, layers=2, dropout=0.1)) == 2


def test_pair_encoder_knows_which_item_was_chosen():
    torch.manual_seed(0)
    enc = PairEncoder(4, 8, 6)
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert enc(a, b).shape == (2, 3, 6)
    assert not torch.allclose(enc(a, b), enc(b, a))


@pytest.mark.parametrize("kind", ["mean", "attention"])
def test_set_encoder_ignores_padding_and_order(kind):
    torch.manual_seed(0)
    enc = SetEncoder(8, kind).eval()
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    ref = enc(h, mask)
    assert ref.shape == (2, 8)
    junk = h.clone()
    junk[~mask] = 1e3
    assert torch.allclose(enc(junk, mask), ref, atol=1e-5)
    perm = torch.tensor([2, 0, 1, 4, 3])
    assert torch.allclose(enc(h[:, perm], mask[:, perm]), ref, atol=1e-5)
    assert torch.allclose(enc(h[:1, :3], mask[:1, :3]), ref[:1], atol=1e-5)
    # an empty set is well defined, the same for every row
    empty = enc(h, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(empty).all() and torch.allclose(empty[0], empty[1], atol=1e-6)


def test_mean_set_encoder_is_the_mlp_of_the_masked_mean():
    torch.manual_seed(0)
    enc = SetEncoder(4, "mean")
    h = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, False, True]])
    assert torch.allclose(enc(h, mask), enc.ff((h[0, 0] + h[0, 2]).unsqueeze(0) / 2))
    with pytest.raises(ValueError, match="unknown set encoder"):
        SetEncoder(4, "max")


@pytest.mark.parametrize("kind", ["mean", "attention"])
def test_a_last_affine_layer_pools_as_if_applied_to_every_vector(kind):
    # `mean` applies it after the mean (once per set); an empty set still pools to zero
    torch.manual_seed(0)
    enc, last = SetEncoder(8, kind).eval(), nn.Linear(8, 8)
    h = torch.randn(3, 4, 8)
    mask = torch.tensor([[True, True, False, True], [False] * 4, [True] * 4])
    torch.testing.assert_close(enc(h, mask, last=last), enc(last(h), mask))
    no_bias = nn.Linear(8, 8, bias=False)
    torch.testing.assert_close(enc(h, mask, last=no_bias), enc(no_bias(h), mask))
