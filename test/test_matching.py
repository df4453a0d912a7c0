import numpy as np
import pytest

from global_loc.matching import match_descriptors


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mutual_nn_finds_a_permutation():
    rng = np.random.default_rng(0)
    db = unit(rng.normal(size=(300, 64)))
    perm = rng.permutation(300)[:200]
    q = unit(db[perm] + 0.05 * rng.normal(size=(200, 64)))
    m = match_descriptors(q, db, ratio_threshold=0.8, mutual=True)
    assert len(m) == 200
    assert np.array_equal(m.db[np.argsort(m.query)], perm)


def test_ratio_test_rejects_ambiguous_matches():
    rng = np.random.default_rng(1)
    a = unit(rng.normal(size=(1, 16)))
    db = np.concatenate([a, unit(a + 0.01 * rng.normal(size=(1, 16)))])  # two near-identical
    q = unit(a + 0.02 * rng.normal(size=(1, 16)))
    assert len(match_descriptors(q, db, ratio_threshold=0.8, mutual=False)) == 0
    assert len(match_descriptors(q, db, ratio_threshold=1.0, mutual=False)) == 1


def test_grouped_matching_treats_observations_of_one_point_as_one():
    """Two observations of the same 3D point must not fail the ratio test against each other,
    and a query matches the point (group label), not the row."""
    rng = np.random.default_rng(2)
    pts = unit(rng.normal(size=(50, 32)))
    obs = np.concatenate([pts, unit(pts + 0.02 * rng.normal(size=pts.shape))])
    groups = np.concatenate([np.arange(50), np.arange(50)]) + 1000
    q = unit(pts[:30] + 0.03 * rng.normal(size=(30, 32)))
    plain = match_descriptors(q, obs, ratio_threshold=0.8, mutual=False)
    assert len(plain) < 20  # the duplicates defeat an ungrouped ratio test
    m = match_descriptors(q, obs, ratio_threshold=0.8, mutual=True, groups=groups)
    assert len(m) == 30
    assert np.array_equal(m.db[np.argsort(m.query)], np.arange(30) + 1000)


def test_mutual_check_keeps_one_query_per_point():
    rng = np.random.default_rng(3)
    db = unit(rng.normal(size=(10, 16)))
    q = unit(np.repeat(db[:1], 2, axis=0) + 0.01 * rng.normal(size=(2, 16)))
    m = match_descriptors(q, db, ratio_threshold=1.0, mutual=True, groups=np.arange(10))
    assert len(m) == 1
    assert len(match_descriptors(q, db, ratio_threshold=1.0, mutual=False)) == 2


def test_empty_inputs():
    z = np.zeros((0, 8), np.float32)
    x = unit(np.ones((3, 8)))
    assert len(match_descriptors(z, x)) == 0
    assert len(match_descriptors(x, z)) == 0
    assert len(match_descriptors(x, z, groups=np.zeros(0))) == 0


def _brute_force(q, db, ratio, mutual, groups):
    """The definition, one query at a time: nearest group, second-nearest other group, and
    whether the query is the nearest to some observation of its group."""
    S = q.astype(np.float64) @ db.astype(np.float64).T
    out = []
    for i in range(len(q)):
        j = int(np.argmax(S[i]))
        g = groups[j]
        others = S[i][groups != g]
        if ratio < 1.0 and len(others):
            d1, d2 = np.sqrt(max(2 - 2 * S[i, j], 0)), np.sqrt(max(2 - 2 * others.max(), 0))
            if not d1 < ratio * d2:
                continue
        if mutual:
            cols = np.flatnonzero(groups == g)
            best_col = cols[np.argmax(S[:, cols].max(axis=0))]
            if int(np.argmax(S[:, best_col])) != i:
                continue
        out.append((i, int(g)))
    return out


@pytest.mark.parametrize("seed,threads", [(0, 1), (1, 1), (2, 1), (0, 3), (1, 2)])
def test_grouped_matching_is_exact(seed, threads, monkeypatch):
    """Against the brute-force definition, also when the similarity is computed in blocks,
    and when the blocks are shared among threads (blocks of 16 rows: 10 blocks for 3 threads)."""
    import global_loc.matching.nn as nn

    rng = np.random.default_rng(seed)
    points = rng.normal(size=(60, 16))
    groups = rng.integers(0, 60, 400)
    db = points[groups] + 0.3 * rng.normal(size=(400, 16))
    q = points[rng.integers(0, 60, 150)] + 0.3 * rng.normal(size=(150, 16))
    db = (db / np.linalg.norm(db, axis=1, keepdims=True)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    # exact ties: the mutual check keeps one of two identical query rows. Which one is a matter
    # of the last bit: BLAS may round identical rows differently in different blocks (seen with
    # OpenBLAS's Haswell kernels), so a tied row counts as the first of its copies on both sides
    q[[40, 120]] = q[[7, 30]]
    first_copy = {40: 7, 120: 30}
    groups = groups * 7 + 3  # arbitrary labels
    monkeypatch.setattr(nn, "BLOCK_BYTES", 400 * 4 * 16)  # 16 query rows per block
    monkeypatch.setattr(nn, "MIN_ROWS_PER_THREAD", 16)

    def canonical(pairs):
        return sorted((first_copy.get(i, i), g) for i, g in pairs)

    for ratio, mutual in [(0.8, True), (0.9, False), (1.0, True)]:
        m = match_descriptors(q, db, ratio, mutual, groups=groups, threads=threads)
        assert canonical(zip(m.query.tolist(), m.db.tolist())) == canonical(_brute_force(q, db, ratio, mutual, groups))
    m = match_descriptors(q, db, 0.8, True, threads=threads)  # ungrouped: every row its own group
    assert canonical(zip(m.query.tolist(), m.db.tolist())) == canonical(_brute_force(q, db, 0.8, True, np.arange(400)))


def test_threads_give_the_same_matches_and_a_negative_count_is_refused():
    """Real-sized matching (1000 x 6000, 128-d) in one thread and shared among threads: the same
    matches, and the same similarities to float32 rounding (BLAS rounds a row's products in the
    last bit by where the row falls in a block, seen with OpenBLAS's Haswell kernels); a
    negative thread count names the setting."""
    rng = np.random.default_rng(5)
    points = unit(rng.normal(size=(3000, 128)))
    groups = np.repeat(np.arange(3000), 2)
    db = unit(points[groups] + 0.03 * rng.normal(size=(6000, 128)))
    q = unit(points[rng.integers(0, 3000, 1000)] + 0.03 * rng.normal(size=(1000, 128)))
    one = match_descriptors(q, db, 0.8, True, groups=groups, threads=1)
    assert len(one) > 100
    for threads in (0, 2, 4):
        many = match_descriptors(q, db, 0.8, True, groups=groups, threads=threads)
        for a, b in ((one.query, many.query), (one.db, many.db)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(one.similarity, many.similarity, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="thread count"):
        match_descriptors(q, db, 0.8, True, threads=-1)
