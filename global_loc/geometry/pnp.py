"""Absolute pose from 2D-3D matches: LO-RANSAC P3P and non-linear refinement (pycolmap).

Follows COLMAP's ``EstimateAbsolutePose`` + ``RefineAbsolutePose`` through pycolmap's
``estimate_and_refine_absolute_pose``, as hloc's localization does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycolmap

from .camera import Camera
from .transforms import Pose


@dataclass
class PnPResult:
    """Attributes:
    cam_from_world: the estimated pose.
    inliers: (N,) bool mask over the input matches.
    covariance: (6, 6) float64 covariance of ``cam_from_world`` (pycolmap order
        ``[rotation, translation]``, see :class:`~global_loc.types.LocalizationResult`), or None
        where it could not be computed.
    """

    cam_from_world: Pose
    inliers: np.ndarray
    covariance: np.ndarray | None

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def estimate_absolute_pose(
    keypoints: np.ndarray,
    points3D: np.ndarray,
    camera: Camera,
    max_error_px: float = 8.0,
    max_iterations: int = 10000,
    seed: int = -1,
) -> PnPResult | None:
    """Camera pose from 2D-3D correspondences.

    Args:
        keypoints: (N, 2) pixels, OpenCV convention.
        points3D: (N, 3) metres, world frame.
        camera: the query camera (distortion is handled by the model).
        max_error_px: RANSAC inlier threshold, pixels.
        max_iterations: RANSAC iteration bound.
        seed: RANSAC seed (-1: random).
    Returns:
        :class:`PnPResult`, or None when fewer than 4 matches are given or RANSAC finds no
        model.
    """
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
    points3D = np.asarray(points3D, np.float64).reshape(-1, 3)
    if len(keypoints) < 4:
        return None
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = float(max_error_px)
    est.ransac.max_num_trials = int(max_iterations)
    est.ransac.random_seed = int(seed)
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ret = pycolmap.estimate_and_refine_absolute_pose(
        camera.to_colmap_pixels(keypoints), points3D, camera.to_pycolmap(), est, ref,
        return_covariance=True,
    )
    if ret is None:
        return None
    cov = ret.get("covariance")
    if cov is not None and not np.all(np.isfinite(cov)):
        cov = None
    return PnPResult(
        cam_from_world=Pose.from_pycolmap(ret["cam_from_world"]),
        inliers=np.asarray(ret["inlier_mask"], bool),
        covariance=None if cov is None else np.asarray(cov, np.float64),
    )
