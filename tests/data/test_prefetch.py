"""Background batch building: the same batches, errors in place, the thread stopped."""

import threading
import time

import numpy as np
import pytest

from vpl.data.contexts import training_batches
from vpl.data.pairs import PairData
from vpl.data.prefetch import prefetched


def _threads() -> int:
    return sum(t.name == "vpl-prefetch" for t in threading.enumerate())


def test_prefetched_yields_the_same_sequence_and_draws_the_same_random_numbers():
    rng = np.random.default_rng(0)
    data = PairData(items=rng.normal(size=(50, 4)).astype(np.float32),
                    user=np.sort(rng.integers(0, 6, 300)), chosen=rng.integers(0, 50, 300),
                    rejected=rng.integers(0, 50, 300), users=[f"u{i}" for i in range(6)])
    runs = []
    for depth in (0, 2):
        gen = np.random.default_rng(1)
        out = []
        for _ in range(2):  # two epochs from one generator, as the training loop draws
            for b in prefetched(training_batches(data, users_per_batch=2, targets_per_user=4,
                                                 context_size=3, rng=gen), depth):
                out.append((b.chosen.numpy().copy(), b.ctx_mask.numpy().copy()))
        runs.append((out, gen.random()))  # the generator's state after both epochs
    (a, next_a), (b, next_b) = runs
    assert len(a) == len(b) > 10 and next_a == next_b
    for (ca, ma), (cb, mb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_array_equal(ma, mb)
    assert _threads() == 0


def test_prefetched_raises_the_producers_error_in_place():
    def items():
        yield 1
        yield 2
        raise ValueError("bad row 3")

    got = []
    with pytest.raises(ValueError, match="bad row 3"):
        for x in prefetched(items()):
            got.append(x)
    assert got == [1, 2] and _threads() == 0


def test_prefetched_stops_its_thread_when_the_consumer_leaves_early():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for x in prefetched(endless(), depth=2):
        if x == 3:
            break
    time.sleep(0.05)
    assert _threads() == 0
    assert 4 <= len(produced) <= 4 + 2 + 1  # at most depth (+ the one in hand) ahead
