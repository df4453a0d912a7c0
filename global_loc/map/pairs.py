"""Pairs of covisible keyframes to match when building a map: from poses and from retrieval.

As hloc's ``pairs_from_poses`` and ``pairs_from_retrieval``.
"""
from __future__ import annotations

from typing import Sequence

import faiss
import numpy as np

from ..geometry.transforms import Pose


def pairs_from_poses(
    cams_from_world: Sequence[Pose],
    num_pairs: int,
    max_angle_deg: float = 70.0,
    max_distance_m: float = 0.0,
) -> set[tuple[int, int]]:
    """For each keyframe, its ``num_pairs`` nearest keyframes (camera centres) among those
    whose optical axis is within ``max_angle_deg`` of its own.

    Args:
        max_distance_m: also drop partners farther than this (0: no limit).
    Returns:
        Pairs ``(i, j)`` with ``i < j``.
    """
    n = len(cams_from_world)
    if n < 2 or num_pairs <= 0:
        return set()
    centers = np.array([p.center for p in cams_from_world])
    axes = np.array([p.R[2] for p in cams_from_world])  # optical axis in the world: R^T e_z
    c = np.ascontiguousarray(centers - centers.mean(axis=0), dtype=np.float32)
    k = min(n, 4 * num_pairs + 1)
    dist2, idx = faiss.knn(c, c, k)
    cos_max = np.cos(np.deg2rad(max_angle_deg))
    pairs = set()
    for i in range(n):
        found = 0
        for d2, j in zip(dist2[i], idx[i]):
            if j < 0 or j == i:
                continue
            if max_distance_m > 0 and d2 > max_distance_m**2:
                break
            if axes[i] @ axes[j] < cos_max:
                continue
            pairs.add((min(i, int(j)), max(i, int(j))))
            found += 1
            if found >= num_pairs:
                break
    return pairs


def pairs_from_retrieval(global_descriptors: np.ndarray, num_pairs: int) -> set[tuple[int, int]]:
    """For each keyframe, the ``num_pairs`` others with the most similar global descriptor.

    Args:
        global_descriptors: (K, D) float32, L2-normalised.
    Returns:
        Pairs ``(i, j)`` with ``i < j``.
    """
    n = len(global_descriptors)
    if n < 2 or num_pairs <= 0:
        return set()
    x = np.ascontiguousarray(global_descriptors, dtype=np.float32)
    _, idx = faiss.knn(x, x, min(n, num_pairs + 1), metric=faiss.METRIC_INNER_PRODUCT)
    pairs = set()
    for i in range(n):
        for j in idx[i]:
            if j >= 0 and j != i:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return pairs
