"""Reference features of 3D points: a robust mean of their observations' dense features.

Each observation of a point samples the dense features of its keyframe at its keypoint (all
levels, bilinear; :func:`~global_loc.refinement.base.sample_pyramid`); the point's reference is
the iteratively reweighted (Cauchy) mean of those samples, so that an occluded or mismatched
observation weighs little (PixLoc keeps every observation; DRAN and Pixel-Perfect SfM
(Lindenberger et al., ICCV 2021) summarise a track by a robust reference).
"""
from __future__ import annotations

import numpy as np


def robust_mean(samples: np.ndarray, point_index: np.ndarray, num_points: int, iterations: int = 3) -> np.ndarray:
    """Per-point Cauchy-reweighted mean of feature samples.

    Args:
        samples: (O, C) float features of the observations; NaN rows (outside a keyframe's
            features, or a keyframe without them) are ignored.
        point_index: (O,) int64 point row of each observation.
        num_points: P.
        iterations: reweighting rounds after the plain mean.
    Returns:
        (P, C) float32; NaN rows for points without a usable observation.
    """
    samples = np.asarray(samples, np.float64)
    point_index = np.asarray(point_index, np.int64)
    c = samples.shape[1] if samples.ndim == 2 else 0
    out = np.full((num_points, c), np.nan, np.float32)
    good = np.all(np.isfinite(samples), axis=1) if c else np.zeros(len(samples), bool)
    if not good.any():
        return out
    v, idx = samples[good], point_index[good]
    w = np.ones(len(v))
    for it in range(iterations + 1):
        wsum = np.bincount(idx, weights=w, minlength=num_points)
        mean = np.stack([np.bincount(idx, weights=w * v[:, k], minlength=num_points) for k in range(c)], axis=1)
        mean /= np.maximum(wsum, 1e-300)[:, None]
        if it == iterations:
            break
        d2 = np.sum((v - mean[idx]) ** 2, axis=1)
        scale2 = max(float(np.median(d2)), 1e-6)
        w = 1.0 / (1.0 + d2 / scale2)
    have = np.bincount(idx, minlength=num_points) > 0
    out[have] = mean[have]
    return out
