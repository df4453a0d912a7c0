"""A pose from a prior's 2D-3D correspondences: PnP-RANSAC and the checks a tracked pose must
pass, shared by the trackers (local map, optical flow)."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from ..config import LocalizationConf, TrackingConf
from ..geometry.camera import Camera
from ..geometry.pnp import PnPResult, acceptance_problems, estimate_absolute_pose
from ..geometry.transforms import pose_error
from ..types import LocalizationResult
from .motion import PosePrior


def noop_timer(stage: str):
    """A ``timer(stage)`` that times nothing, for trackers called without a timer."""
    return nullcontext()


def tracked_pose_problems(pnp: PnPResult, num_matches: int, prior: PosePrior, conf: TrackingConf,
                          loc_conf: LocalizationConf) -> list[str]:
    """Why a pose tracked from ``prior`` must not be trusted; empty when it passes.

    The global query's checks (:func:`~global_loc.geometry.pnp.acceptance_problems`: inliers,
    inlier ratio, standard deviations), at least ``conf.min_inlier_ratio`` of the matches as
    inliers, and at most ``conf.max_prior_deviation_m`` / ``max_prior_deviation_deg`` from the
    prior. One sentence per failed check.
    """
    problems = acceptance_problems(pnp, num_matches, loc_conf)
    ratio = pnp.num_inliers / max(num_matches, 1)
    if ratio < conf.min_inlier_ratio:
        problems.append(f"inlier ratio {ratio:.3f} < tracking.min_inlier_ratio {conf.min_inlier_ratio}")
    dt, dr = pose_error(pnp.cam_from_world, prior.cam_from_world)
    if dt > conf.max_prior_deviation_m or dr > conf.max_prior_deviation_deg:
        problems.append(f"{dt:.3f} m / {dr:.2f} deg from the {prior.source} prior (max "
                        f"{conf.max_prior_deviation_m} m / {conf.max_prior_deviation_deg} deg)")
    return problems


def solve_tracked_pose(res: LocalizationResult, keypoints: np.ndarray, points3D: np.ndarray, camera: Camera,
                       prior: PosePrior, conf: TrackingConf, loc_conf: LocalizationConf, what: str,
                       timer=None, more_checks=None, point_rows: np.ndarray | None = None,
                       point_uncertainty=None) -> LocalizationResult:
    """PnP-RANSAC on a tracker's correspondences, then :func:`tracked_pose_problems`.

    Args:
        res: the tracker's result so far (``num_matches`` set); filled and returned.
        keypoints: (N, 2) pixels of the query.
        points3D: (N, 3) world points, metres.
        camera: the query camera.
        prior: the prior the correspondences came from.
        conf, loc_conf: the tracking and localization configurations (RANSAC threshold, seed
            and ``tracking.ransac_max_iterations``; the checks).
        what: the tracker's name, which starts each reason (``"tracking"``, ``"flow"``).
        timer: optional ``timer(stage)`` context manager factory (stage ``pnp``).
        more_checks: optional ``f(pnp) -> list[str]`` of the tracker's own problems.
        point_rows: (N,) int64 map rows of ``points3D``, where known (for refinement).
        point_uncertainty: optional ``f(point_rows) -> ((N, 3, 3) covariances, noise_px,
            weigh)`` of the map's points, for PnP's covariance and weighted refinement
            (``Localizer.point_uncertainty``).
    Returns:
        ``res``: ``LOCALIZED`` with the pose and its inliers, or ``NOT_LOCALIZED`` with the
        reasons; never the prior.
    """
    timer = timer or noop_timer
    with timer("pnp"):
        uncertainty = None
        if point_uncertainty is not None and point_rows is not None:
            uncertainty = point_uncertainty(point_rows)
        pnp = estimate_absolute_pose(keypoints, points3D, camera, loc_conf.ransac_max_error_px,
                                     conf.ransac_max_iterations, loc_conf.ransac_seed, loc_conf.covariance_scale,
                                     *(uncertainty or (None, 1.0, False)))
    if pnp is None:
        res.reason = f"{what}: PnP-RANSAC found no pose from {len(keypoints)} correspondences"
        return res
    res.num_inliers = pnp.num_inliers
    res.inlier_ratio = pnp.num_inliers / max(len(keypoints), 1)
    problems = tracked_pose_problems(pnp, len(keypoints), prior, conf, loc_conf)
    if more_checks is not None:
        problems += more_checks(pnp)
    if problems:
        res.reason = f"{what}: " + "; ".join(problems)
        return res
    return res.accept(pnp, keypoints, points3D, point_rows)
