"""Localize a frame from a pose prior against the local map (the keyframes near the prior)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..config import LocalizationConf, MatchingConf, TrackingConf
from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from ..map.index import MapIndex
from ..matching import match_descriptors
from ..types import LocalFeatures, LocalizationResult, Status
from .motion import PosePrior
from .pose import noop_timer, solve_tracked_pose


class LocalMapTracker:
    """Tracking step: 2D-3D matching against the local map of a pose prior, then PnP-RANSAC.

    Args:
        map_index: the map.
        conf: :class:`~global_loc.config.TrackingConf`.
        loc_conf: :class:`~global_loc.config.LocalizationConf`: the RANSAC threshold, seed and
            the inlier and uncertainty checks a pose must pass (the same as a global query's).
        matching: :class:`~global_loc.config.MatchingConf` (``mutual``).
        point_uncertainty: optional ``f(point_rows) -> ((N, 3, 3) covariances, noise_px, weigh)``
            of the map's points, for PnP (``Localizer.point_uncertainty``).

    Steps, for query features and a prior ``cam_from_world``:

    1. local map: the ``num_keyframes`` keyframes whose camera centres are nearest to the
       prior's and whose optical axes are within ``max_view_angle_deg`` of its (KD-tree over
       the keyframe centres);
    2. their 3D points projected with the prior; those in front of the camera and inside the
       image are kept;
    3. the query descriptors are matched to those points (mutual nearest neighbour and ratio
       test over all their observations in the local keyframes, as in a global query); a
       match is kept when its point projects within ``window_px_odometry`` (odometry prior)
       or ``window_px_motion_model`` pixels of its keypoint. The window only removes
       matches: choosing matches inside windows would make wrong priors look right;
    4. PnP-RANSAC (pycolmap) on those matches; the pose passes the global query's checks
       (``min_inliers``, ``min_inlier_ratio``, standard deviations), has at least
       ``tracking.min_inlier_ratio`` of its matches as inliers, and lies within
       ``max_prior_deviation_m`` / ``max_prior_deviation_deg`` of the prior.
    """

    def __init__(self, map_index: MapIndex, conf: TrackingConf, loc_conf: LocalizationConf,
                 matching: MatchingConf | None = None, point_uncertainty=None):
        self.map = map_index
        self.point_uncertainty = point_uncertainty
        self.conf = conf
        self.loc_conf = loc_conf
        self.matching = matching or MatchingConf()
        R = np.stack([map_index.cam_from_world(i).R for i in range(map_index.num_keyframes)])
        self._centres = np.einsum("kji,kj->ki", R, -map_index.t)  # -R^T t
        self._axes = R[:, 2, :]  # optical axis (camera z) in the world: R^T e_z
        self._tree = cKDTree(self._centres)

    def local_keyframes(self, cam_from_world: Pose) -> list[int]:
        """Rows of the keyframes nearest to ``cam_from_world`` with a similar viewing
        direction, nearest first (at most ``conf.num_keyframes``)."""
        k_all = self.map.num_keyframes
        k = min(k_all, max(4 * self.conf.num_keyframes, 16))
        _, idx = self._tree.query(cam_from_world.center, k=k)
        idx = np.atleast_1d(idx)
        idx = idx[idx < k_all]
        axis = cam_from_world.R[2, :]
        cos = self._axes[idx] @ axis
        keep = idx[cos >= np.cos(np.radians(self.conf.max_view_angle_deg))]
        return [int(i) for i in keep[: self.conf.num_keyframes]]

    def track(self, features: LocalFeatures, camera: Camera, prior: PosePrior, timer=None) -> LocalizationResult:
        """Localize one frame from ``prior``.

        Args:
            features: the query's local features (keypoints in pixels of ``camera``).
            camera: the query camera.
            prior: the predicted pose (:class:`~global_loc.tracking.PosePrior`).
            timer: optional ``timer(stage)`` context manager factory; stages ``local_map``,
                ``matching``, ``pnp``.
        Returns:
            A :class:`~global_loc.types.LocalizationResult` with ``mode="tracking"``:
            ``LOCALIZED`` with a pose solved from its own inliers, or ``NOT_LOCALIZED`` with
            the reason. Never the prior itself.
        """
        res, query_rows, point_rows = self.correspondences(features, camera, prior, timer)
        if res.reason:
            return res
        return solve_tracked_pose(res, features.keypoints[query_rows], self.map.points_xyz[point_rows], camera,
                                  prior, self.conf, self.loc_conf, "tracking", timer, point_rows=point_rows,
                                  point_uncertainty=self.point_uncertainty)

    def correspondences(self, features: LocalFeatures, camera: Camera, prior: PosePrior,
                        timer=None) -> tuple[LocalizationResult, np.ndarray, np.ndarray]:
        """Steps 1-3: the 2D-3D matches of a frame against the local map of ``prior``, for
        callers that solve the pose themselves (a camera rig pools its cameras' matches).

        Returns:
            ``(result, query rows (M,) int64, point rows (M,) int64)``: ``result`` has
            ``mode="tracking"``, ``keyframes`` and ``num_matches``, and a ``reason`` when there
            are too few matches for a pose (fewer than ``max(4, min_inliers)``).
        """
        timer = timer or noop_timer
        lc, tc = self.loc_conf, self.conf
        res = LocalizationResult(status=Status.NOT_LOCALIZED, mode="tracking")
        none = np.zeros(0, np.int64)
        with timer("local_map"):
            rows = self.local_keyframes(prior.cam_from_world)
            res.keyframes = [self.map.names[i] for i in rows]
            if not rows:
                res.reason = "tracking: no keyframe near the prior"
                return res, none, none
            desc, pidx = self.map.gather_observations(rows)
            points, inv = np.unique(pidx, return_inverse=True)
            uv = camera.project(prior.cam_from_world.transform(self.map.points_xyz[points]))
            with np.errstate(invalid="ignore"):
                visible = ((uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1)
                           & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1))
        if visible.sum() < lc.min_inliers or len(features) < 4:
            res.reason = (f"tracking: {int(visible.sum())} map points in view of the prior, "
                          f"{len(features)} query keypoints")
            return res, none, none
        with timer("matching"):
            q_idx, p_idx = self._match(features, desc, inv, visible, uv,
                                       tc.window_px_odometry if prior.from_odometry else tc.window_px_motion_model)
        res.num_matches = len(q_idx)
        if len(q_idx) < max(4, lc.min_inliers):
            res.reason = f"tracking: {len(q_idx)} 2D-3D matches < min_inliers {lc.min_inliers}"
        return res, q_idx, points[p_idx]

    def _match(self, features: LocalFeatures, desc: np.ndarray, inv: np.ndarray, visible: np.ndarray,
               uv: np.ndarray, window_px: float) -> tuple[np.ndarray, np.ndarray]:
        """Mutual nearest-neighbour matching with the ratio test against every visible point
        of the local map (over all its observations there), then the window test.

        The prior must not choose the matches: a ratio test among the few points of a window
        passes for wrong matches too, and wrong matches chosen near the prior's projections
        agree with a pose near the prior, so PnP would confirm a wrong prior. The prior only
        removes, after the fact, matches whose point projects far from their keypoint.

        Returns:
            ``(query rows, point positions in the local point list)``, both (M,) int64.
        """
        keep = visible[inv]
        mt = self.matching
        m = match_descriptors(features.descriptors, desc[keep], self.conf.ratio_threshold, mt.mutual,
                              groups=inv[keep], threads=mt.threads)
        if len(m) == 0:
            return m.query, m.db
        near = np.linalg.norm(uv[m.db] - features.keypoints[m.query], axis=1) <= window_px
        return m.query[near], m.db[near]
