"""Pose from retrieved neighbours, when 2D-3D matching fails: status ``localized_relative``.

relpose-gnn (Turkoglu et al., "Visual Camera Re-Localization Using Graph Neural Networks and
Relative Pose Supervision", 3DV 2021) regresses a query's pose from its retrieved neighbours
with a network trained per scene. Its essential idea needs no training (Zhou, Sattler,
Pollefeys and Leal-Taixé, "To Learn or Not to Learn: Visual Localization from Essential
Matrices", ICRA 2020): 2D-2D matches to several keyframes of known pose give essential
matrices, hence the query's rotation and the directions of its centre from those keyframes,
and two or more of them meet at the centre (:mod:`global_loc.geometry.relpose`).

It serves where the 3D map is too sparse for PnP: few points, keyframes not yet triangulated,
a map kept without points (:meth:`~global_loc.map.index.MapIndex.without_points`). It matches
against all the features a map keeps of a keyframe: those observing a 3D point and, where the
map was built with ``mapping.store_free_features``, the others. It refuses, rather than
guesses, when fewer than ``relpose.min_views`` keyframes agree on one pose.
"""
from __future__ import annotations

import numpy as np

from ..config import MatchingConf, RelPoseConf
from ..geometry.camera import Camera
from ..geometry.covariance import world_from_cam_covariance
from ..geometry.relpose import estimate_relative_view, pose_from_relative_views
from ..map.index import MapIndex
from ..matching import match_descriptors
from ..types import LocalFeatures, LocalizationResult, Status

__all__ = ["RelativePoseLocalizer"]


class RelativePoseLocalizer:
    """Localizes a query from the relative poses of its retrieved keyframes.

    Args:
        map_index: the map (its keyframes' poses, cameras and kept features).
        conf: ``relpose`` options.
        matching: ``matching`` options (ratio test, mutual check) for the 2D-2D matches.
        covariance_scale: factor on the covariance (default ``relpose.covariance_scale``).
        seed: RANSAC's seed (``localization.ransac_seed``).
    """

    def __init__(self, map_index: MapIndex, conf: RelPoseConf, matching: MatchingConf,
                 covariance_scale: float | None = None, seed: int = 0):
        self.map, self.conf, self.matching = map_index, conf, matching
        self.covariance_scale = conf.covariance_scale if covariance_scale is None else covariance_scale
        self.seed = seed
        self._features: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _keyframe(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints, descriptors as float32) of keyframe ``row``, kept after the first use."""
        if row not in self._features:
            kp, desc, _ = self.map.keyframe_features(row)
            if len(self._features) > 256:
                self._features.clear()
            self._features[row] = (kp, np.ascontiguousarray(desc, np.float32))
        return self._features[row]

    def localize(self, features: LocalFeatures, camera: Camera, retrieved: list[int]) -> LocalizationResult:
        """The query pose from the best-retrieved keyframes, or why there is none.

        Args:
            features: the query's local features (keypoints in pixels of ``camera``).
            camera: the query camera.
            retrieved: keyframe rows, best first.
        Returns:
            A :class:`LocalizationResult` of mode ``"relative"``: ``LOCALIZED_RELATIVE`` with
            ``cam_from_world`` and its covariance (``keyframes``: the agreeing keyframes,
            ``num_inliers``: their essential-matrix inliers, ``inlier_keypoints``: the query's
            keypoints among them), or ``NOT_LOCALIZED`` with the reason.
        """
        c, mt = self.conf, self.matching
        res = LocalizationResult(status=Status.NOT_LOCALIZED, mode="relative")
        views = []
        for row in retrieved[: c.max_keyframes]:
            kp, desc = self._keyframe(row)
            m = match_descriptors(features.descriptors, desc, mt.ratio_threshold, mt.mutual, threads=mt.threads)
            res.num_matches += len(m)
            if len(m) < c.min_inliers:
                continue
            v = estimate_relative_view(
                features.keypoints[m.query], kp[m.db], camera, self.map.camera(row), self.map.cam_from_world(row),
                row, c.ransac_max_error_px, c.min_inliers, self.seed, m.query)
            if v is not None:
                views.append(v)
        found = pose_from_relative_views(
            views, camera.focal_length, c.max_rotation_deviation_deg, c.max_ray_deviation_deg, c.min_ray_angle_deg,
            c.min_parallax_deg, c.min_views, c.min_agreement, c.ransac_max_error_px, self.covariance_scale)
        res.keyframes = [self.map.names[v.row] for v in (found.views or views)]
        res.num_inliers = sum(v.num_inliers for v in (found.views or views))
        res.inlier_ratio = res.num_inliers / max(res.num_matches, 1)
        if found.cam_from_world is None:
            res.reason = found.reason
            return res
        problems = _std_problems(found.cam_from_world, found.covariance, c)
        if problems:
            res.reason = problems
            return res
        res.status = Status.LOCALIZED_RELATIVE
        res.cam_from_world, res.covariance = found.cam_from_world, found.covariance
        res.inlier_keypoints = features.keypoints[np.unique(np.concatenate([v.query_inliers for v in found.views]))]
        return res


def _std_problems(cam_from_world, cov: np.ndarray | None, c: RelPoseConf) -> str:
    """Why a covariance is too wide for ``relpose.max_*_std`` (empty when it is not)."""
    if cov is None:
        return "the relative pose has no covariance"
    wc = world_from_cam_covariance(cam_from_world, cov)  # [camera centre, world rotation]
    pos = float(np.sqrt(max(np.linalg.eigvalsh(wc[:3, :3]).max(), 0.0)))
    rot = float(np.degrees(np.sqrt(max(np.linalg.eigvalsh(wc[3:, 3:]).max(), 0.0))))
    if c.max_position_std_m > 0 and pos > c.max_position_std_m:
        return f"relative pose: position std {pos:.3f} m > relpose.max_position_std_m {c.max_position_std_m:g}"
    if c.max_rotation_std_deg > 0 and rot > c.max_rotation_std_deg:
        return f"relative pose: rotation std {rot:.2f} deg > relpose.max_rotation_std_deg {c.max_rotation_std_deg:g}"
    return ""
