"""Localization of a camera rig: several cameras, one pose.

A rig frame is the images a robot's cameras took at the same time (a stereo pair, front and
back, a surround set), with each camera's extrinsics ``cam_from_rig``. The :class:`RigLocalizer`
runs the global query of each camera up to its 2D-3D matches (the map's
:class:`~global_loc.localizer.Localizer`, :meth:`~global_loc.localizer.Localizer.place_matches`),
pools the matches of each camera's strongest place, and solves the rig's pose from all of them
at once (generalized PnP-RANSAC and one refinement,
:func:`~global_loc.geometry.rig.estimate_rig_absolute_pose`), with the same inlier checks as a
single camera's query. When only one camera matches the map, that camera's own query answers
(the whole single-camera pipeline, places that look alike included) and its pose is carried to
the rig's frame.

As hloc and COLMAP localize a rig (``RefineGeneralizedAbsolutePose``); the generalized P3P is
Lee et al., "Minimal solutions for pose estimation of a multi-camera system" (ISRR 2013).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .errors import InputError
from .geometry.camera import Camera
from .geometry.rig import estimate_rig_absolute_pose
from .geometry.transforms import Pose
from .localizer import Localizer, _Timer
from .types import LocalizationResult, Status


def carry_covariance(a_from_b: Pose, covariance: np.ndarray) -> np.ndarray:
    """The covariance of ``a_from_b * b_from_world`` given that of ``b_from_world`` (6, 6) over
    ``[dtheta, dt]`` (left-multiplied rotation vector, then translation): both blocks turn by
    ``a_from_b``'s rotation."""
    R = np.zeros((6, 6))
    R[:3, :3] = R[3:, 3:] = a_from_b.R
    return R @ np.asarray(covariance, np.float64) @ R.T


class RigLocalizer:
    """Localize rig frames against one map.

    Args:
        localizer: the map's :class:`~global_loc.localizer.Localizer` (its configuration:
            ``localization.min_inliers``, ``min_inlier_ratio``, RANSAC settings).
        cams_from_rig: per camera, ``cam_from_rig`` (the rig frame, e.g. ``base_link``, to the
            camera's optical frame), metres.
    Raises:
        InputError: no camera.
    """

    def __init__(self, localizer: Localizer, cams_from_rig: Sequence[Pose]):
        if not cams_from_rig:
            raise InputError("a rig needs at least one camera (cams_from_rig is empty)")
        self.localizer = localizer
        self.cams_from_rig = list(cams_from_rig)

    def localize(self, images: Sequence[np.ndarray | None], cameras: Sequence[Camera]) -> LocalizationResult:
        """Localize one rig frame.

        Args:
            images: per camera, (H, W) or (H, W, 3) uint8, or None for a camera without an image
                in this frame.
            cameras: per camera, its :class:`~global_loc.geometry.camera.Camera`.
        Returns:
            A :class:`~global_loc.types.LocalizationResult` whose ``cam_from_world`` is the
            rig's pose (``rig_from_world``) with its covariance; ``rig`` gives per camera the
            matches and inliers, and the camera whose own pose was used when only one matched.
        Raises:
            InputError: lists whose lengths differ from the number of cameras.
        """
        n = len(self.cams_from_rig)
        if len(images) != n or len(cameras) != n:
            raise InputError(f"a rig frame of this rig has {n} images and cameras, got {len(images)} and {len(cameras)}")
        loc, lc = self.localizer, self.localizer.loc_conf
        t0 = time.perf_counter()
        timer = _Timer()
        timings = timer.times
        cameras = [loc.camera_corrections.get(c, c) for c in cameras]
        kps, xyz, keyframes = [], [], []
        for image, camera in zip(images, cameras):
            places = [] if image is None else loc.place_matches(image, camera, timings)
            top = max(places, key=lambda p: len(p[1]), default=None)
            kps.append(top[1] if top is not None else np.zeros((0, 2), np.float32))
            xyz.append(top[2] if top is not None else np.zeros((0, 3)))
            keyframes += top[0] if top is not None else []
        matches = [len(k) for k in kps]
        seeing = [c for c in range(n) if matches[c] >= max(4, lc.min_inliers)]
        rig = {"cameras": n, "matches_per_camera": matches, "inliers_per_camera": [0] * n, "fallback": None}
        if len(seeing) == 1:  # one camera sees the map: its own query, carried to the rig
            result = self._single(seeing[0], images, cameras)
            result.rig = {**rig, **result.rig}
        elif not seeing:
            result = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=keyframes, rig=rig,
                                        reason=f"no camera of the rig has {max(4, lc.min_inliers)} 2D-3D matches "
                                               f"(matches per camera: {matches})")
        else:
            with timer("pnp"):
                pnp = estimate_rig_absolute_pose(kps, xyz, cameras, self.cams_from_rig, lc.ransac_max_error_px,
                                                 lc.ransac_max_iterations, lc.ransac_seed, lc.covariance_scale)
            result = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=keyframes, rig=rig,
                                        num_matches=sum(matches))
            if pnp is None:
                result.reason = f"generalized PnP-RANSAC found no pose from {sum(matches)} matches"
            else:
                rig["inliers_per_camera"] = pnp.inliers_per_camera(n)
                result.num_inliers = pnp.num_inliers
                result.inlier_ratio = pnp.num_inliers / sum(matches)
                problems = []
                if pnp.num_inliers < lc.min_inliers:
                    problems.append(f"{pnp.num_inliers} inliers < min_inliers {lc.min_inliers}")
                if result.inlier_ratio < lc.min_inlier_ratio:
                    problems.append(f"inlier ratio {result.inlier_ratio:.3f} < min_inlier_ratio {lc.min_inlier_ratio}")
                if problems:
                    result.reason = "; ".join(problems)
                else:
                    result.status = Status.LOCALIZED
                    result.cam_from_world, result.covariance = pnp.rig_from_world, pnp.covariance
        result.mode = "rig"
        timings["total"] = time.perf_counter() - t0
        result.timings = timings
        return result

    def _single(self, c: int, images, cameras) -> LocalizationResult:
        result = self.localizer.localize(images[c], cameras[c])
        result.rig = {"fallback": c, "inliers_per_camera": [result.num_inliers if k == c else 0
                                                             for k in range(len(self.cams_from_rig))]}
        if result.success:
            rig_from_cam = self.cams_from_rig[c].inverse()
            result.cam_from_world = rig_from_cam * result.cam_from_world
            if result.covariance is not None:
                result.covariance = carry_covariance(rig_from_cam, result.covariance)
            result.inlier_points3D = result.inlier_keypoints = result.inlier_point_rows = None
        return result

