"""Mutual nearest-neighbour matching with Lowe's ratio test, exact, on one BLAS product.

Descriptors are L2-normalised, so the Euclidean distance is ``sqrt(2 - 2 s)`` for the inner
product ``s``. The ratio test follows Lowe (IJCV 2004): a match is kept when the distance to
the nearest neighbour is below ``ratio_threshold`` times the distance to the second nearest.

For 2D-3D matching a database descriptor belongs to a 3D point that other descriptors (its
other observations) may share. With ``groups`` the nearest and second-nearest neighbours are
taken over *points*: the second must belong to another point than the first, and the mutual
check asks whether the query descriptor is the nearest to any observation of that point.

All three questions (nearest, second nearest of another group, nearest query of each database
row) are answered from the same similarity matrix ``query @ db.T`` (one float32 GEMM, in row
blocks of at most :data:`BLOCK_BYTES`), exactly: no candidate list bounds the search for the
second group, and nothing is computed twice.

With ``threads`` above 1 the row blocks are shared among that many threads of a pool
(:func:`global_loc.runtime.threads.shared_thread_pool`), each running a single-threaded BLAS
product and its reductions (numpy releases the GIL in both); the results are the same rows of
the same products, so they do not depend on the thread count. Threads wait on a queue when
idle instead of spinning as BLAS's own threads do (see :mod:`global_loc.runtime.threads`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.threads import in_pool_thread, resolve_threads, shared_thread_pool

#: largest similarity block held at once per thread (bytes); rows of the query are processed in blocks
BLOCK_BYTES = 32 << 20

#: fewest query rows in a block given to a thread of its own: a smaller product is not worth a thread
MIN_ROWS_PER_THREAD = 128


@dataclass
class Matches:
    """Matches between query descriptors and database descriptors (or groups).

    Attributes:
        query: (K,) int64 row indices into the query descriptors.
        db: (K,) int64 row indices into the database descriptors, or group labels when
            matching was grouped.
        similarity: (K,) float32 inner product of the matched descriptors.
    """

    query: np.ndarray
    db: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.query)

    @classmethod
    def empty(cls) -> "Matches":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))


def _dist(sim: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(2.0 - 2.0 * sim, 0.0, None))


class _Groups:
    """Dense group ids of the database rows and, per group, its rows (CSR)."""

    def __init__(self, groups: np.ndarray):
        self.labels, self.inv = np.unique(groups, return_inverse=True)
        self.inv = self.inv.reshape(-1)
        self.order = np.argsort(self.inv, kind="stable")
        self.sizes = np.bincount(self.inv, minlength=len(self.labels))
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    def members(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(k, column)`` pairs: every database row of group ``g[k]``, for each ``k``."""
        counts = self.sizes[g]
        k = np.repeat(np.arange(len(g)), counts)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return k, self.order[self.starts[g][k] + within]


def match_descriptors(
    query: np.ndarray,
    db: np.ndarray,
    ratio_threshold: float = 0.8,
    mutual: bool = True,
    groups: np.ndarray | None = None,
    max_candidates: int = 16,
    threads: int = 1,
) -> Matches:
    """Match each query descriptor to its nearest database descriptor (or group).

    Args:
        query: (N, D) float32/float16, L2-normalised.
        db: (M, D) float32/float16, L2-normalised.
        ratio_threshold: Lowe's ratio; 1.0 or more disables the test.
        mutual: keep only mutual nearest neighbours.
        groups: optional (M,) int labels of the database rows (3D point ids); matches are
            then made to groups, as described in the module docstring. Where the database
            holds a single group, there is nothing to confuse it with and the ratio test passes.
        max_candidates: accepted for configurations written for the earlier k-NN search
            (``matching.max_candidates``); the search is now exact and does not use it.
        threads: threads sharing the row blocks (0: one per core, at most
            :data:`~global_loc.runtime.threads.MAX_POOL_THREADS`; 1: the calling thread alone).
            Blocks have at least :data:`MIN_ROWS_PER_THREAD` rows, so a small query uses fewer.
    Returns:
        :class:`Matches`; ``db`` holds row indices, or group labels when ``groups`` is given.
    Raises:
        ValueError: descriptors of different sizes, or ``groups`` of another length than ``db``.
    """
    del max_candidates
    n, m = len(query), len(db)
    if n == 0 or m == 0:
        return Matches.empty()
    xq = np.ascontiguousarray(query, dtype=np.float32)
    if xq.shape[1] != np.shape(db)[1]:
        raise ValueError(f"descriptor sizes differ: query {xq.shape[1]}, database {np.shape(db)[1]}")
    # (M, D) float32 as stored (a float16 map converted), its transpose a view: BLAS runs the
    # transposed product as fast as the plain one, and a transposed copy costs 7.6 ms for the
    # 8297 x 128 observations of a temple place (two thirds of the product itself)
    xbt = np.ascontiguousarray(db, dtype=np.float32).T
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if len(groups) != m:
            raise ValueError(f"groups must have one label per database row ({m}), got {len(groups)}")
        grp = _Groups(groups)
    else:
        grp = None
    ratio = ratio_threshold < 1.0

    step = max(1, min(n, BLOCK_BYTES // (4 * m)))
    threads = 1 if in_pool_thread() else resolve_threads(threads)
    if threads > 1:
        step = min(step, max(MIN_ROWS_PER_THREAD, -(-n // threads)))
    starts = range(0, n, step)

    def block(a: int):
        b = min(n, a + step)
        S = xq[a:b] @ xbt  # (r, m)
        r = np.arange(b - a)
        j = S.argmax(axis=1)
        s1 = S[r, j]
        # a column maximum, not its argmax: argmax across rows is ten times slower
        col_max = S.max(axis=0) if mutual else None
        s2 = None
        if ratio and m > 1:
            if grp is None:
                S[r, j] = -np.inf
            else:
                k, cols = grp.members(grp.inv[j])
                S[k, cols] = -np.inf
            s2 = S.max(axis=1)
        return j, s1, s2, col_max

    if threads > 1 and len(starts) > 1:
        parts = list(shared_thread_pool(threads).map(block, starts))
    else:
        parts = [block(a) for a in starts]
    best = np.concatenate([p[0] for p in parts])
    s1 = np.concatenate([p[1] for p in parts])
    s2 = np.concatenate([p[2] for p in parts]) if ratio and m > 1 else np.full(n, -np.inf, np.float32)
    col_max = np.maximum.reduce([p[3] for p in parts]) if mutual else None
    rows = np.arange(n)
    keep = np.ones(n, bool)
    if ratio:
        keep &= _dist(s1) < ratio_threshold * _dist(s2)  # no second candidate: inf, kept
    target = best if grp is None else grp.inv[best]
    if mutual:
        # query i is the nearest to its target when its similarity reaches the target's
        # largest one (over the target's columns); of exact ties the first query row stays,
        # as an argmax would keep it
        if grp is None:
            target_max = col_max
        else:
            target_max = np.full(len(grp.labels), -np.inf, np.float32)
            np.maximum.at(target_max, grp.inv, col_max)
        nearest = np.flatnonzero(s1 >= target_max[target])
        _, first = np.unique(target[nearest], return_index=True)
        is_mutual = np.zeros(n, bool)
        is_mutual[nearest[first]] = True
        keep &= is_mutual
    if grp is None:
        return Matches(rows[keep], best[keep], s1[keep])
    return Matches(rows[keep], grp.labels[target[keep]].astype(np.int64), s1[keep])
