"""Covisibility clustering of retrieved keyframes into places (HF-Net, Sarlin et al. 2019)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def covisibility_clusters(
    keyframes: Sequence[int],
    num_shared: Callable[[int, int], int],
    min_shared: int = 1,
) -> list[list[int]]:
    """Group keyframes that observe common 3D points.

    Two keyframes are linked when they share at least ``min_shared`` points; a place is a
    connected component of that graph.

    Args:
        keyframes: keyframe rows in retrieval order (best first).
        num_shared: ``(i, j) -> number of 3D points both observe``.
        min_shared: link threshold.
    Returns:
        Places as lists of keyframe rows, each in retrieval order; places sorted by the rank
        of their best-ranked keyframe (the place of the top-1 keyframe first).
    """
    kfs = list(keyframes)
    n = len(kfs)
    if n == 0:
        return []
    rows, cols = [], []
    for a in range(n):
        for b in range(a + 1, n):
            if num_shared(kfs[a], kfs[b]) >= min_shared:
                rows.append(a)
                cols.append(b)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    places: dict[int, list[int]] = {}
    for rank, label in enumerate(labels):
        places.setdefault(int(label), []).append(kfs[rank])
    return list(places.values())  # dict order = order of first appearance = best rank
