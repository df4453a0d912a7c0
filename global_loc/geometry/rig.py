"""Camera rigs: one pose from the 2D-3D matches of several cameras (generalized absolute pose).

A rig is cameras fixed to one body (the robot's ``base_link``, or a stereo bar): each camera
``c`` has its extrinsics ``cam_from_rig[c]`` (from tf, or a kapture rig). A rig frame is the
images the cameras took at the same time. Its pose ``rig_from_world`` is solved from all their
2D-3D matches together: LO-RANSAC over the generalized P3P (GP3P) problem, then one non-linear
refinement with a Cauchy loss, as COLMAP registers the images of a rig
(``EstimateGeneralizedAbsolutePose`` + ``RefineGeneralizedAbsolutePose``, through pycolmap's
``estimate_and_refine_generalized_absolute_pose``). Pooling the cameras widens the field of view:
a camera that sees too little of the map for a pose of its own still constrains the rig's, and a
rig of opposite cameras pins the rotation and the position along the viewing axes better than
either camera alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pycolmap

from .camera import Camera
from .pnp import colmap_pose_covariance
from .transforms import Pose


@dataclass
class RigPnPResult:
    """Attributes:
    rig_from_world: the estimated rig pose.
    inliers: (N,) bool mask over the pooled matches (cameras in the order given).
    camera_index: (N,) int the camera of each pooled match.
    covariance: (6, 6) float64 covariance of ``rig_from_world`` over ``[dtheta, dt]``
        (rotation vector left-multiplied, then translation; as
        :class:`~global_loc.geometry.pnp.PnPResult`), scaled by the a-posteriori variance of
        the inlier residuals; None where it could not be computed.
    """

    rig_from_world: Pose
    inliers: np.ndarray
    camera_index: np.ndarray
    covariance: np.ndarray | None

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    def inliers_per_camera(self, num_cameras: int) -> list[int]:
        return [int(self.inliers[self.camera_index == c].sum()) for c in range(num_cameras)]


def estimate_rig_absolute_pose(
    keypoints: Sequence[np.ndarray],
    points3D: Sequence[np.ndarray],
    cameras: Sequence[Camera],
    cams_from_rig: Sequence[Pose],
    max_error_px: float = 8.0,
    max_iterations: int = 10000,
    seed: int = -1,
    covariance_scale: float = 1.0,
) -> RigPnPResult | None:
    """The pose of a rig from the 2D-3D matches of each of its cameras.

    Args:
        keypoints: per camera, (N_c, 2) pixels (OpenCV convention); a camera without matches
            has an empty (0, 2) array.
        points3D: per camera, (N_c, 3) world points, metres.
        cameras: per camera, its :class:`~global_loc.geometry.camera.Camera`.
        cams_from_rig: per camera, ``cam_from_rig`` (the rig's frame to the camera's optical
            frame).
        max_error_px: RANSAC inlier threshold, pixels (in each camera).
        max_iterations: RANSAC iteration bound; seed: its seed (-1: random).
        covariance_scale: factor on the covariance (``localization.covariance_scale``).
    Returns:
        :class:`RigPnPResult`, or None with fewer than 4 matches in all or when RANSAC finds no
        model.
    Raises:
        ValueError: lists of different lengths, or keypoints and points of different counts.
    """
    n = len(cameras)
    if not (len(keypoints) == len(points3D) == len(cams_from_rig) == n):
        raise ValueError(f"per-camera lists of different lengths: {len(keypoints)} keypoint arrays, "
                         f"{len(points3D)} point arrays, {len(cams_from_rig)} extrinsics, {n} cameras")
    kps = [np.asarray(k, np.float64).reshape(-1, 2) for k in keypoints]
    xyz = [np.asarray(x, np.float64).reshape(-1, 3) for x in points3D]
    for c, (k, x) in enumerate(zip(kps, xyz)):
        if len(k) != len(x):
            raise ValueError(f"camera {c}: {len(k)} keypoints but {len(x)} points")
    index = np.concatenate([np.full(len(k), c, np.int64) for c, k in enumerate(kps)])
    if len(index) < 4:
        return None
    pixels = np.concatenate([cam.to_colmap_pixels(k) for cam, k in zip(cameras, kps)])
    X = np.concatenate(xyz)
    # the single-camera PnP's RANSAC settings (pycolmap's generalized default asks for 1000
    # trials at least: 48 ms for 600 matches, against 1.6 ms for 100)
    est = pycolmap.AbsolutePoseEstimationOptions().ransac
    est.max_error = float(max_error_px)
    est.max_num_trials = int(max_iterations)
    est.random_seed = int(seed)
    ret = pycolmap.estimate_and_refine_generalized_absolute_pose(
        pixels, X, index.tolist(), [p.to_pycolmap() for p in cams_from_rig], [c.to_pycolmap() for c in cameras],
        est, pycolmap.AbsolutePoseRefinementOptions(), return_covariance=True)
    if ret is None:
        return None
    rig_from_world = Pose.from_pycolmap(ret["rig_from_world"])
    inliers = np.asarray(ret["inlier_mask"], bool)
    kp = np.concatenate(kps)
    res = np.concatenate([cam.project((cam_from_rig * rig_from_world).transform(X[m])) - kp[m]
                          for c, (cam, cam_from_rig) in enumerate(zip(cameras, cams_from_rig))
                          for m in [inliers & (index == c)]])
    cov = colmap_pose_covariance(ret.get("covariance"), res, covariance_scale)
    return RigPnPResult(rig_from_world, inliers, index, cov)
