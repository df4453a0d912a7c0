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

Between global queries a rig is tracked as one camera is (:mod:`global_loc.tracking`): each
camera's features are matched against the local map of its own predicted pose (the rig's prior
composed with its extrinsics), the matches pooled, and the rig's pose solved from all of them
and checked as a tracked pose (inlier ratio, distance from the prior).

As hloc and COLMAP localize a rig (``RefineGeneralizedAbsolutePose``); the generalized P3P is
Lee et al., "Minimal solutions for pose estimation of a multi-camera system" (ISRR 2013).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .errors import ImageReadError, InputError
from .geometry.camera import Camera
from .geometry.rig import estimate_rig_absolute_pose
from .geometry.transforms import Pose, pose_error
from .localizer import Localizer, _Timer
from .tracking import PosePrior
from .types import LocalizationResult, Status


def carry_covariance(a_from_b: Pose, covariance: np.ndarray) -> np.ndarray:
    """The covariance of ``a_from_b * b_from_world`` given that of ``b_from_world`` (6, 6) over
    ``[dtheta, dt]`` (left-multiplied rotation vector, then translation): both blocks turn by
    ``a_from_b``'s rotation."""
    R = np.zeros((6, 6))
    R[:3, :3] = R[3:, 3:] = a_from_b.R
    return R @ np.asarray(covariance, np.float64) @ R.T


def check_image_size(image: np.ndarray | None, camera: Camera, what: str = "the image") -> None:
    """Raises :class:`~global_loc.errors.ImageReadError` when ``image`` (not None) is not the
    size of ``camera``."""
    if image is not None and (image.shape[1], image.shape[0]) != (camera.width, camera.height):
        raise ImageReadError(f"{what} is {image.shape[1]}x{image.shape[0]} but its camera is "
                             f"{camera.width}x{camera.height}")


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

    def localize(self, images: Sequence[np.ndarray | None], cameras: Sequence[Camera],
                 prior: PosePrior | None = None, global_first: bool = False) -> LocalizationResult:
        """Localize one rig frame: tracking from ``prior``, or the global query.

        Args:
            images: per camera, (H, W) or (H, W, 3) uint8, or None for a camera without an image
                in this frame.
            cameras: per camera, its :class:`~global_loc.geometry.camera.Camera`.
            prior: the rig's predicted pose (``cam_from_world`` of the prior is
                ``rig_from_world``; :class:`~global_loc.tracking.MotionModel` fed with rig
                poses): with ``tracking.enabled``, each camera is matched against the local map
                of its own predicted pose (:meth:`~global_loc.tracking.LocalMapTracker.correspondences`),
                the matches pooled and the rig's pose solved and checked as a tracked pose
                (inlier ratio, distance from the prior); the global query runs when that fails.
                No optical flow for rigs.
            global_first: with a prior, the global query first, tracking only when it fails.
        Returns:
            A :class:`~global_loc.types.LocalizationResult` whose ``cam_from_world`` is the
            rig's pose (``rig_from_world``) with its covariance; ``mode`` is ``"rig"`` (global
            query), ``"rig_tracking"``, or that of the one camera's own query (fallback);
            ``rig`` gives per camera the matches and inliers, and the camera whose own pose was
            used when only one matched. ``prior_rejected`` when a global pose lies beyond the
            tracking gate of ``prior``.
        Raises:
            InputError: lists whose lengths differ from the number of cameras.
            ImageReadError: an image whose size differs from its camera's.
        """
        n = len(self.cams_from_rig)
        if len(images) != n or len(cameras) != n:
            raise InputError(f"a rig frame of this rig has {n} images and cameras, got {len(images)} and {len(cameras)}")
        for k, (image, camera) in enumerate(zip(images, cameras)):
            check_image_size(image, camera, f"the image of camera {k}")
        loc = self.localizer
        t0 = time.perf_counter()
        timer = _Timer()
        cameras = [loc.camera_corrections.get(c, c) for c in cameras]
        track = prior is not None and loc.conf.tracking.enabled
        tc = loc.conf.tracking
        features: list = [None] * n
        result = tracked = None
        if track and not global_first:  # tracked frames are described smaller, as one camera's
            small = [None] * n
            for k, image in enumerate(images):
                if image is not None:
                    scale = min(1.0, max(tc.image_scale, tc.min_image_size / max(image.shape[:2])))
                    small[k] = loc._extract(image, 0, timer, scale)
                    if scale == 1.0:
                        features[k] = small[k]
            tracked = result = self._track(small, cameras, prior, timer)
        if result is None or not result.success:
            features = [f if f is not None or image is None else loc._extract(image, 0, timer)
                        for f, image in zip(features, images)]
            result = self._global(images, features, cameras, timer)
            if track and result.success and not loc._agrees_with(result, prior):
                result.prior_rejected = True  # found elsewhere: the track was wrong
            elif track and global_first and not result.success:
                tracked = self._track(features, cameras, prior, timer)
                if tracked.success:
                    result = tracked
        if tracked is not None:
            result.tracking = "localized" if tracked.success else tracked.reason
        times = dict(timer.times)
        for k, v in result.timings.items():  # the fallback camera's own query
            if k != "total":
                times[k] = times.get(k, 0.0) + v
        times["total"] = time.perf_counter() - t0
        result.timings = times
        return result

    def _solve(self, kps, xyz, cameras, max_iterations: int, min_ratio: float, prior: PosePrior | None,
               rig: dict, result: LocalizationResult, timer) -> LocalizationResult:
        """Generalized PnP-RANSAC on the pooled matches and the checks of a pose (those of a
        tracked pose when ``prior`` is given)."""
        lc, tc = self.localizer.loc_conf, self.localizer.conf.tracking
        n, total = len(cameras), sum(len(k) for k in kps)
        with timer("pnp"):
            pnp = estimate_rig_absolute_pose(kps, xyz, cameras, self.cams_from_rig, lc.ransac_max_error_px,
                                             max_iterations, lc.ransac_seed, lc.covariance_scale)
        result.num_matches = total
        what = "rig tracking: " if prior is not None else ""
        if pnp is None:
            result.reason = f"{what}generalized PnP-RANSAC found no pose from {total} matches"
            return result
        rig["inliers_per_camera"] = pnp.inliers_per_camera(n)
        result.num_inliers = pnp.num_inliers
        result.inlier_ratio = pnp.num_inliers / total
        problems = []
        if pnp.num_inliers < lc.min_inliers:
            problems.append(f"{pnp.num_inliers} inliers < min_inliers {lc.min_inliers}")
        if result.inlier_ratio < min_ratio:
            problems.append(f"inlier ratio {result.inlier_ratio:.3f} < {min_ratio}")
        if prior is not None:
            dt, dr = pose_error(pnp.rig_from_world, prior.cam_from_world)
            if dt > tc.max_prior_deviation_m or dr > tc.max_prior_deviation_deg:
                problems.append(f"{dt:.3f} m / {dr:.2f} deg from the {prior.source} prior (max "
                                f"{tc.max_prior_deviation_m} m / {tc.max_prior_deviation_deg} deg)")
        if problems:
            result.reason = what + "; ".join(problems)
        else:
            result.status, result.reason = Status.LOCALIZED, ""
            result.cam_from_world, result.covariance = pnp.rig_from_world, pnp.covariance
        return result

    def _track(self, features, cameras, prior: PosePrior, timer) -> LocalizationResult:
        """Each camera's matches against the local map of its predicted pose, pooled."""
        loc, n = self.localizer, len(self.cams_from_rig)
        kps, xyz, keyframes, matches = [], [], [], []
        for f, camera, cam_from_rig in zip(features, cameras, self.cams_from_rig):
            k, x = np.zeros((0, 2), np.float32), np.zeros((0, 3))
            if f is not None:
                cam_prior = PosePrior(cam_from_rig * prior.cam_from_world, prior.source, prior.age_s)
                res, q, rows = loc.tracker.correspondences(f, camera, cam_prior, timer)
                k, x = f.keypoints[q], loc.map.points_xyz[rows]
                keyframes += res.keyframes
            kps.append(k)
            xyz.append(x)
            matches.append(len(k))
        rig = {"cameras": n, "matches_per_camera": matches, "inliers_per_camera": [0] * n, "fallback": None}
        result = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=keyframes, rig=rig, mode="rig_tracking")
        lc, tc = loc.loc_conf, loc.conf.tracking
        if sum(matches) < max(4, lc.min_inliers):
            result.reason = f"rig tracking: {sum(matches)} 2D-3D matches < min_inliers {lc.min_inliers}"
            return result
        return self._solve(kps, xyz, cameras, tc.ransac_max_iterations,
                           max(lc.min_inlier_ratio, tc.min_inlier_ratio), prior, rig, result, timer)

    def _camera_places(self, image, features, camera, timer):
        """One camera's places and their 2D-3D matches, strongest first: ``(chosen, contenders,
        ambiguity)``. ``chosen`` is ``(keyframe names, keypoints, points3D)`` of its place, or
        None when the camera sees places that look alike: two places fit with poses that
        disagree (:meth:`~global_loc.localizer.Localizer._choose`, the single-camera rule); then
        ``contenders`` holds ``(names, keypoints, points3D, cam_from_world)`` of each place that
        fits, and ``ambiguity`` what the single-camera decision said."""
        loc, lc = self.localizer, self.localizer.loc_conf
        _, places = loc._places(image, features, timer)
        per = []
        for place in places[: lc.max_places]:
            m = loc._match_place(features, place, timer)
            per.append(([loc.map.names[i] for i in place], features.keypoints[m.query], loc.map.points_xyz[m.db],
                        place))
        per.sort(key=lambda p: -len(p[1]))
        if not per:
            return None, [], {}
        need = max(4, lc.min_inliers)
        rival = (lc.ambiguity_min_ratio > 0 and len(per) > 1 and len(per[1][1]) >= need
                 and len(per[1][1]) >= lc.ambiguity_min_ratio * len(per[0][1]))
        if not rival:
            return per[0][:3], [], {}
        solved = [(p, r) for p in per if len(p[1]) >= need
                  for r in [loc._localize_place(features, camera, p[3], timer)] if r.success]
        if len(solved) < 2:
            return (solved[0][0] if solved else per[0])[:3], [], {}
        decision = loc._choose([r for _, r in solved], None)
        if decision.success:
            return next(p for p, r in solved if r is decision)[:3], [], {}
        return None, [(p[0], p[1], p[2], r.cam_from_world) for p, r in solved], decision.ambiguity

    def _global(self, images, features, cameras, timer) -> LocalizationResult:
        """The global query of each camera up to its matches, pooled over the cameras.

        A camera that sees places that look alike (two fit with poses that disagree) does not
        vote: the others' pose is solved first, then that camera's one place whose pose agrees
        with it (within the tracking gate, in the rig's frame) joins; when no other camera
        sees the map unambiguously, the rig frame is not localized ("ambiguous")."""
        loc, lc, n = self.localizer, self.localizer.loc_conf, len(self.cams_from_rig)
        none2, none3 = np.zeros((0, 2), np.float32), np.zeros((0, 3))
        kps, xyz, keyframes = [none2] * n, [none3] * n, []
        contenders, ambiguity = {}, {}
        for k, (f, image, camera) in enumerate(zip(features, images, cameras)):
            if f is None:
                continue
            chosen, rivals, said = self._camera_places(image, f, camera, timer)
            if chosen is not None:
                keyframes += chosen[0]
                kps[k], xyz[k] = chosen[1], chosen[2]
            elif rivals:
                contenders[k], ambiguity[k] = rivals, said
        matches = [len(x) for x in kps]
        seeing = [c for c in range(n) if matches[c] >= max(4, lc.min_inliers)]
        rig = {"cameras": n, "matches_per_camera": matches, "inliers_per_camera": [0] * n, "fallback": None}
        if ambiguity:
            rig["ambiguous_cameras"] = sorted(ambiguity)
        if not seeing:
            result = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=keyframes, rig=rig, mode="rig")
            if ambiguity:
                k = min(ambiguity)
                result.ambiguity = ambiguity[k]
                result.reason = (f"ambiguous: every camera that sees the map sees places that look alike "
                                 f"(camera {k}: {ambiguity[k].get('places', [[], []])[0][:1]} and "
                                 f"{ambiguity[k].get('places', [[], []])[1][:1]} both fit)")
            else:
                result.reason = (f"no camera of the rig has {max(4, lc.min_inliers)} 2D-3D matches "
                                 f"(matches per camera: {matches})")
            return result
        if len(seeing) == 1:  # one camera sees the map: its own query, carried to the rig
            result = self._single(seeing[0], images, cameras, features)
            result.rig = {**rig, **result.rig}
        else:
            result = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=keyframes, rig=rig, mode="rig")
            result = self._solve(kps, xyz, cameras, lc.ransac_max_iterations, lc.min_inlier_ratio, None, rig,
                                 result, timer)
        if not (result.success and contenders):
            return result
        # the look-alike cameras: the place that agrees with the others' pose joins
        tc = loc.conf.tracking
        joined = []
        for k, rivals in contenders.items():
            rig_from_cam = self.cams_from_rig[k].inverse()
            agree = [r for r in rivals if all(
                e <= g for e, g in zip(pose_error(rig_from_cam * r[3], result.cam_from_world),
                                       (tc.max_prior_deviation_m, tc.max_prior_deviation_deg)))]
            if len(agree) == 1:
                keyframes += agree[0][0]
                kps[k], xyz[k] = agree[0][1], agree[0][2]
                joined.append(k)
        if not joined:
            return result
        rig = {**rig, "matches_per_camera": [len(x) for x in kps], "fallback": None, "settled_by_rig": joined}
        pooled = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=keyframes, rig=rig, mode="rig")
        pooled = self._solve(kps, xyz, cameras, lc.ransac_max_iterations, lc.min_inlier_ratio, None, rig, pooled,
                             timer)
        return pooled if pooled.success else result

    def _single(self, c: int, images, cameras, features) -> LocalizationResult:
        result = self.localizer.localize(images[c], cameras[c], features=features[c])
        result.rig = {"fallback": c, "inliers_per_camera": [result.num_inliers if k == c else 0
                                                             for k in range(len(self.cams_from_rig))]}
        if result.success:
            rig_from_cam = self.cams_from_rig[c].inverse()
            result.cam_from_world = rig_from_cam * result.cam_from_world
            if result.covariance is not None:
                result.covariance = carry_covariance(rig_from_cam, result.covariance)
            result.inlier_points3D = result.inlier_keypoints = result.inlier_point_rows = None
        return result

