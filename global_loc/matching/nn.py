"""Mutual nearest-neighbour matching with Lowe's ratio test, on faiss exact k-NN.

Descriptors are L2-normalised, so the Euclidean distance is ``sqrt(2 - 2 s)`` for the inner
product ``s``. The ratio test follows Lowe (IJCV 2004): a match is kept when the distance to
the nearest neighbour is below ``ratio_threshold`` times the distance to the second nearest.

For 2D-3D matching a database descriptor belongs to a 3D point that other descriptors (its
other observations) may share. With ``groups`` the nearest and second-nearest neighbours are
taken over *points*: the second must belong to another point than the first, and the mutual
check asks whether the query descriptor is the nearest to any observation of that point.
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


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


def _knn(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    return faiss.knn(xq, xb, k, metric=faiss.METRIC_INNER_PRODUCT)


def _dist(sim: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(2.0 - 2.0 * sim, 0.0, None))


def match_descriptors(
    query: np.ndarray,
    db: np.ndarray,
    ratio_threshold: float = 0.8,
    mutual: bool = True,
    groups: np.ndarray | None = None,
    max_candidates: int = 16,
) -> Matches:
    """Match each query descriptor to its nearest database descriptor (or group).

    Args:
        query: (N, D) float32/float16, L2-normalised.
        db: (M, D) float32/float16, L2-normalised.
        ratio_threshold: Lowe's ratio; 1.0 or more disables the test.
        mutual: keep only mutual nearest neighbours.
        groups: optional (M,) int labels of the database rows (3D point ids); matches are
            then made to groups, as described in the module docstring.
        max_candidates: neighbours searched per query descriptor when grouped.
    Returns:
        :class:`Matches`; ``db`` holds row indices, or group labels when ``groups`` is given.
    """
    n, m = len(query), len(db)
    if n == 0 or m == 0:
        return Matches.empty()
    xq = np.ascontiguousarray(query, dtype=np.float32)
    xb = np.ascontiguousarray(db, dtype=np.float32)
    if xq.shape[1] != xb.shape[1]:
        raise ValueError(f"descriptor sizes differ: query {xq.shape[1]}, database {xb.shape[1]}")
    rows = np.arange(n)

    if groups is None:
        k = min(2, m)
        sim, idx = _knn(xq, xb, k)
        best, s1 = idx[:, 0], sim[:, 0]
        keep = best >= 0
        if ratio_threshold < 1.0 and k == 2:
            keep &= _dist(s1) < ratio_threshold * _dist(sim[:, 1])
        if mutual:
            _, rev = _knn(xb, xq, 1)
            keep &= rev[np.clip(best, 0, m - 1), 0] == rows
        return Matches(rows[keep].astype(np.int64), best[keep].astype(np.int64), s1[keep])

    groups = np.asarray(groups).reshape(-1)
    if len(groups) != m:
        raise ValueError(f"groups must have one label per database row ({m}), got {len(groups)}")
    k = min(max(2, int(max_candidates)), m)
    sim, idx = _knn(xq, xb, k)
    g = groups[np.clip(idx, 0, m - 1)]
    g1, s1 = g[:, 0], sim[:, 0]
    keep = idx[:, 0] >= 0
    if ratio_threshold < 1.0:
        other = (g != g1[:, None]) & (idx >= 0)
        has_other = other.any(axis=1)
        j = np.argmax(other, axis=1)
        s2 = np.where(has_other, sim[rows, j], sim[:, -1] if k < m else -1.0)
        # no second group at all (a single point in the database): nothing to be confused with
        lone = ~has_other & (k >= m)
        keep &= lone | (_dist(s1) < ratio_threshold * _dist(s2))
    if mutual:
        rsim, rq = _knn(xb, xq, 1)
        labels, inv = np.unique(groups, return_inverse=True)
        order = np.lexsort((-rsim[:, 0], inv))
        first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
        best_query = np.full(len(labels), -1, np.int64)
        best_query[inv[first]] = rq[first, 0]
        pos = np.searchsorted(labels, g1)
        keep &= best_query[np.clip(pos, 0, len(labels) - 1)] == rows
    return Matches(rows[keep].astype(np.int64), g1[keep].astype(np.int64), s1[keep])
