"""The exponential histogram math without per-bucket Python loops (``_stats``: ``_occupied``, ``_downscaled``,
``_combined``, ``ExpHist.quantiles``; ``_validate._counts``) against the straightforward loops it replaced, on
random histograms: the same buckets, in the same order (a cumulative diff drops the buckets that did not grow:
they count nowhere), and the same quantiles bit for bit."""

from __future__ import annotations

import math
import random

import pytest

from otel_wandb import records as r
from otel_wandb.core import _validate
from otel_wandb.core._stats import (
    ExpHist,
    _clamp,
    _combined,
    _dense_diff,
    _downscaled,
    _occupied,
    _position,
    nearest_rank,
)

# -- the reference: the loops as they were ------------------------------------------------------------------------


def ref_occupied(offset, counts):
    return {offset + i: c for i, c in enumerate(counts) if c}


def ref_downscaled(src, shift):
    dst = {}
    for i, c in src.items():
        j = i >> shift
        dst[j] = dst.get(j, 0) + c
    return dst


def ref_combined(a, b, sign):
    out = dict(a)
    for i, c in b.items():
        out[i] = max(0, out.get(i, 0) + sign * c)
    return out


def ref_quantile(h, q):
    if h.count <= 0:
        return None
    neg = sorted(((i, c) for i, c in h.neg.items() if c), reverse=True)
    pos = sorted((i, c) for i, c in h.pos.items() if c)
    total = h.zero_count + sum(c for _, c in neg) + sum(c for _, c in pos)
    if total <= 0:
        return None
    rank = nearest_rank(q, total)
    base = 2.0 ** (2.0**-h.scale)
    seen = 0
    for i, c in neg:
        if seen + c >= rank:
            return _clamp(-(base ** (i + 1 - _position(rank - seen, c))), h.min, h.max)
        seen += c
    if seen + h.zero_count >= rank:
        return _clamp(0.0, h.min, h.max)
    seen += h.zero_count
    for i, c in pos:
        if seen + c >= rank:
            return _clamp(base ** (i + _position(rank - seen, c)), h.min, h.max)
        seen += c
    return h.max if h.max is not None else 0.0


def ref_counts(xs):
    return all(_validate._count(x) for x in xs)


# -- random histograms --------------------------------------------------------------------------------------------


def random_counts(rng, n):
    return [rng.choice((0, 0, 1, 2, rng.randint(0, 10_000))) for _ in range(n)]


def random_hist(rng, negative=True):
    scale = rng.randint(-1, 8)
    limit = min(400, int(999 * 2.0**scale) - 321)  # bucket bounds within a float, as validated
    pos = ref_occupied(rng.randint(-limit, limit), random_counts(rng, rng.randint(0, 320)))
    neg = ref_occupied(rng.randint(-limit, limit), random_counts(rng, rng.randint(0, 40))) if negative else {}
    if rng.random() < 0.3:  # not in index order (a merge appends new buckets at the end)
        pos = dict(rng.sample(list(pos.items()), len(pos)))
    zero = rng.choice((0, 0, rng.randint(1, 50)))
    count = zero + sum(pos.values()) + sum(neg.values())
    lo = rng.choice((None, rng.uniform(-5, 0.01)))
    hi = rng.choice((None, rng.uniform(1, 1e6)))
    return ExpHist(scale, zero, pos, neg, count, rng.uniform(0, 1e6), lo, hi)


SEEDS = range(200)


@pytest.mark.parametrize("seed", SEEDS)
def test_bucket_maps_match_the_loops(seed):
    rng = random.Random(seed)
    offset, counts = rng.randint(-2000, 2000), random_counts(rng, rng.randint(0, 320))
    got = _occupied(offset, tuple(counts))
    assert got == ref_occupied(offset, counts) and list(got) == list(ref_occupied(offset, counts))
    h = random_hist(rng)
    for shift in range(0, 6):
        got = _downscaled(h.pos, shift)
        assert got == ref_downscaled(h.pos, shift) and list(got) == list(ref_downscaled(h.pos, shift))
    other = random_hist(rng)
    for sign in (1, -1, 2):
        got = _combined(h.pos, other.pos, sign)
        want = ref_combined(h.pos, other.pos, sign)
        assert got == want and list(got) == list(want)


@pytest.mark.parametrize("seed", SEEDS)
def test_merges_and_cumulative_diffs_match_the_loops(seed):
    rng = random.Random(seed)
    a, b = random_hist(rng), random_hist(rng)
    for sign in (1, -1):
        got = a.merged(b, sign)
        scale = min(a.scale, b.scale)
        want_pos = ref_combined(ref_downscaled(a.pos, a.scale - scale), ref_downscaled(b.pos, b.scale - scale), sign)
        want_neg = ref_combined(ref_downscaled(a.neg, a.scale - scale), ref_downscaled(b.neg, b.scale - scale), sign)
        # what is read from the result: the same as from the loops' maps (quantiles, explicit buckets)
        full = ExpHist(scale, got.zero_count, want_pos, want_neg, got.count, got.sum, got.min, got.max)
        qs = [0.01, 0.5, 0.95, 0.99, 1.0]
        assert got.quantiles(qs) == full.quantiles(qs)
        assert got.as_explicit() == full.as_explicit()
        if sign < 0:  # a cumulative diff keeps only the buckets that grew
            want_pos = {i: c for i, c in want_pos.items() if c}
            want_neg = {i: c for i, c in want_neg.items() if c}
        assert (got.scale, got.pos, got.neg) == (scale, want_pos, want_neg)
        assert list(got.pos) == list(want_pos)


@pytest.mark.parametrize("seed", SEEDS)
def test_quantiles_are_the_linear_scan_bit_for_bit(seed):
    rng = random.Random(seed)
    h = random_hist(rng, negative=seed % 3 == 0)
    qs = [0.5, 0.95, 0.99, 0.0, 1.0] + [(i + 0.5) / 200 for i in range(200)]
    got = h.quantiles(qs)
    want = [ref_quantile(h, q) for q in qs]
    assert got == want  # exact: the same float operations
    assert [h.quantile(q) for q in qs[:5]] == want[:5]


def test_quantiles_of_edge_histograms():
    cases = [
        ExpHist(3, 0, {}, {}, 0),  # empty
        ExpHist(3, 5, {}, {}, 5, 0.0, 0.0, 0.0),  # zeros only
        ExpHist(3, 0, {4: 0}, {}, 3),  # count set, no bucket counts
        ExpHist(0, 2, {1: 3}, {0: 1}, 6, 1.0),
        ExpHist(2, 0, {1: 5, 2: -2, 3: 1}, {}, 4),  # negative counts (never from a point): the linear scan
        ExpHist(2, -1, {1: 2}, {}, 1),
    ]
    for h in cases:
        for q in (0.0, 0.01, 0.5, 0.95, 1.0):
            assert h.quantiles([q]) == [ref_quantile(h, q)], (h, q)


@pytest.mark.parametrize(
    "counts",
    [
        (),
        (0, 1, 2),
        (2**53,),
        (2**53 + 1,),
        (-1, 3),
        (True, 1),
        (1.0, 2),
        (1, None),
        (1, "2"),
        (1, math.nan),
        [3] * 320,
        (r.SUM,),
    ],
)
def test_bucket_count_check_matches_the_loop(counts):
    assert _validate._counts(counts) == ref_counts(counts)


def test_int_subclass_counts_are_checked_like_before():
    class Count(int):
        pass

    assert _validate._counts((Count(3), 1)) is ref_counts((Count(3), 1)) is True
    assert _validate._counts((Count(-3), 1)) is ref_counts((Count(-3), 1)) is False


def exp_point(rng, scale, n_pos, n_neg):
    return r.MetricPoint(
        "lat",
        r.EXP_HISTOGRAM,
        scale=scale,
        zero_count=rng.randint(0, 3),
        positive_offset=rng.randint(-60, 60),
        positive_counts=tuple(random_counts(rng, n_pos)),
        negative_offset=rng.randint(-60, 60),
        negative_counts=tuple(random_counts(rng, n_neg)),
        count=10**6,
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_a_diff_of_two_points_from_their_arrays_is_the_loop(seed):
    rng = random.Random(seed)
    scale = rng.randint(0, 6)
    p1 = exp_point(rng, scale, rng.randint(0, 320), rng.choice((0, 0, 30)))
    p2 = exp_point(rng, scale, rng.randint(0, 320), rng.choice((0, 0, 30)))
    a, b = ExpHist.from_point(p1), ExpHist.from_point(p2)
    assert a.dense is not None
    got = a.merged(b, -1)
    for side, (oa, ca), (ob, cb) in (
        ("pos", (p1.positive_offset, p1.positive_counts), (p2.positive_offset, p2.positive_counts)),
        ("neg", (p1.negative_offset, p1.negative_counts), (p2.negative_offset, p2.negative_counts)),
    ):
        full = ref_combined(ref_occupied(oa, ca), ref_occupied(ob, cb), -1)
        want = {i: c for i, c in full.items() if c}
        assert getattr(got, side) == want and list(getattr(got, side)) == list(want)
        assert _dense_diff(oa, ca, ob, cb) == want


@pytest.mark.parametrize(
    "b",
    [(-1, 2), (3, -4, 0), (math.nan, -1), (math.nan, 2), (2.5, 1), (1, math.nan, -1)],
)
def test_a_diff_with_counts_no_point_has_is_the_loop(b):
    for ob in (-3, 0, 1, 5):
        a = (0, 4, 1, 7)
        full = ref_combined(ref_occupied(0, a), ref_occupied(ob, b), -1)
        got = _dense_diff(0, a, ob, b)
        if got is not None:  # None: the caller takes the loop
            assert got == {i: c for i, c in full.items() if c}


@pytest.mark.parametrize(
    "keys",
    [
        {"http.route": 1, "http.request.method": 2},
        {"http.route": 1, "bad\nkey": 2},
        {"http.route": 1, "": 2},
        {"http.route": 1, 5: 2},
        {"http.route": 1, "x" * 256: 2},
        {"x" * 255: 1},
        {},
    ],
)
def test_attribute_keys_are_checked_like_before_also_when_seen_before(keys):
    for _ in range(2):  # the second time from the set of keys that passed
        assert _validate._names(keys) is all(_validate.is_name(k) for k in keys)
    assert all(_validate.is_name(k) for k in _validate._GOOD_NAMES)
