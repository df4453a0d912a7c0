"""Covisibility clustering of retrieved keyframes into places (HF-Net, Sarlin et al. 2019)."""
from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def covisibility_clusters(
    keyframes: Sequence[int],
    num_shared: Union[Callable[[int, int], int], np.ndarray],
    min_shared: int = 1,
) -> list[list[int]]:
    """Group keyframes that observe common 3D points.

    Two keyframes are linked when they share at least ``min_shared`` points; a place is a
    connected component of that graph.

    Args:
        keyframes: keyframe rows in retrieval order (best first).
        num_shared: ``(i, j) -> number of 3D points both observe`` (keyframe rows), or the
            (n, n) matrix of those numbers for ``keyframes`` in their order
            (:meth:`~global_loc.map.index.MapIndex.covisibility`).
        min_shared: link threshold.
    Returns:
        Places as lists of keyframe rows, each in retrieval order; places sorted by the rank
        of their best-ranked keyframe (the place of the top-1 keyframe first).
    """
    kfs = list(keyframes)
    n = len(kfs)
    if n == 0:
        return []
    if callable(num_shared):
        shared = np.zeros((n, n), np.int64)
        for a in range(n):
            for b in range(a + 1, n):
                shared[a, b] = num_shared(kfs[a], kfs[b])
    else:
        shared = np.asarray(num_shared)
        if shared.shape != (n, n):
            raise ValueError(f"num_shared must be ({n}, {n}) for {n} keyframes, got {shared.shape}")
    rows, cols = np.nonzero(np.triu(shared >= min_shared, k=1))
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    places: dict[int, list[int]] = {}
    for rank, label in enumerate(labels):
        places.setdefault(int(label), []).append(kfs[rank])
    return list(places.values())  # dict order = order of first appearance = best rank
