"""Optical-flow tracking: the last frame's PnP inliers followed into the next frame.

Between two frames a few tens of milliseconds apart, the map points that were inliers of the
last pose are still in view and have barely moved in the image. Following each of their
keypoints with pyramidal Lucas-Kanade optical flow (Lucas and Kanade, IJCAI 1981; Bouguet's
pyramidal implementation in OpenCV, ``cv2.calcOpticalFlowPyrLK``) gives 2D-3D correspondences
for the new frame without extracting or matching any descriptor; PnP-RANSAC then solves the
pose from them. This is the inter-frame tracking of visual odometry (e.g. Forster et al.,
"SVO", ICRA 2014; Qin et al., "VINS-Mono", T-RO 2018), here against fixed map points, so the
pose does not drift: only the 2D positions can, and they are re-anchored to the map's
descriptors by :class:`~global_loc.tracking.LocalMapTracker` after ``flow_max_interval_s`` of
image time or ``flow_max_frames`` frames, whichever comes first.

Safeguards, so that a flow track cannot become a confident wrong pose:

- flow starts where the keypoints were (zero motion), never where a prior projects them:
  the prior does not choose the correspondences;
- forward-backward check (Kalal, Mikolajczyk and Matas, "Forward-Backward Error", ICPR 2010):
  a point followed back into the last frame must land within ``flow_max_fb_error_px`` of where
  it started;
- the pose passes the same checks as every tracked pose (inliers, inlier ratio, uncertainty,
  distance from the prior), and at least ``flow_min_tracked_ratio`` of the inliers of the last
  descriptor-based pose (the anchor) must have been followed and be inliers.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import LocalizationConf, TrackingConf
from ..features.base import to_grayscale
from ..geometry.camera import Camera
from ..types import LocalizationResult, Status
from .motion import PosePrior
from .pose import noop_timer, solve_tracked_pose


@dataclass
class FlowReference:
    """The last localized frame, as optical flow needs it.

    Attributes:
        grey: (H, W) uint8, its grey image.
        keypoints: (N, 2) float32 pixels of its PnP inliers.
        points3D: (N, 3) float64 world points of those inliers, metres.
        frames_since_anchor: frames tracked by flow since the last pose from descriptors.
        seconds_since_anchor: image time since that pose, seconds.
        anchor_inliers: inliers of that last pose from descriptors.
        point_rows: (N,) int64 map rows of ``points3D``, or None where unknown.
    """

    grey: np.ndarray
    keypoints: np.ndarray
    points3D: np.ndarray
    frames_since_anchor: int
    seconds_since_anchor: float
    anchor_inliers: int
    point_rows: np.ndarray | None = None


class FlowTracker:
    """Localizes a frame by following the previous frame's inliers with optical flow.

    Args:
        conf: :class:`~global_loc.config.TrackingConf` (``flow_*`` options, the prior bounds,
            ``min_inlier_ratio``, ``ransac_max_iterations``).
        loc_conf: :class:`~global_loc.config.LocalizationConf` (RANSAC threshold and seed,
            the inlier and uncertainty checks).
        point_uncertainty: optional ``f(point_rows) -> ((N, 3, 3) covariances, noise_px, weigh)``
            of the map's points, for PnP (``Localizer.point_uncertainty``).
    """

    def __init__(self, conf: TrackingConf, loc_conf: LocalizationConf, point_uncertainty=None):
        self.conf = conf
        self.loc_conf = loc_conf
        self.point_uncertainty = point_uncertainty
        self._criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (image, grey) of the last track()

    @property
    def enabled(self) -> bool:
        return self.conf.flow_max_frames > 0

    def _grey(self, image: np.ndarray, reuse: bool) -> np.ndarray:
        """``image`` in grey. :meth:`track` converts it and keeps it for :meth:`reference` of
        the same frame (``reuse``), which takes it once. (OpenCV's Python bindings take images,
        not prebuilt pyramids: each Lucas-Kanade call builds them.)"""
        last, self._last = self._last, None
        if reuse and last is not None and last[0] is image:
            return last[1]
        grey = np.ascontiguousarray(to_grayscale(image))
        if not reuse:
            self._last = (image, grey)
        return grey

    def reference(self, image: np.ndarray, result: LocalizationResult,
                  previous: FlowReference | None = None, age_s: float = 0.0) -> FlowReference | None:
        """The reference for the next frame from a localized ``result`` of ``image``.

        Call it once per frame, after :meth:`track` and whatever the result (it ends the
        frame: the grey image :meth:`track` kept is used or dropped, so a caller that refills
        one buffer with the next frame never gets this frame's pixels).

        Args:
            image: (H, W) or (H, W, 3) uint8, the frame that was localized.
            result: its result; None is returned unless it is ``LOCALIZED`` with inliers.
            previous: the reference the result was tracked from, when its mode is ``"flow"``
                (carries the frames and time since the last anchor).
            age_s: image time between ``previous`` and this frame, seconds (the prior's age).
        """
        if not self.enabled or not result.success or result.inlier_keypoints is None:
            self._last = None
            return None
        flowed = result.mode == "flow" and previous is not None
        return FlowReference(
            grey=self._grey(image, reuse=True),
            keypoints=np.ascontiguousarray(result.inlier_keypoints, np.float32).reshape(-1, 1, 2),
            points3D=np.asarray(result.inlier_points3D, np.float64),
            frames_since_anchor=previous.frames_since_anchor + 1 if flowed else 0,
            seconds_since_anchor=previous.seconds_since_anchor + age_s if flowed else 0.0,
            anchor_inliers=previous.anchor_inliers if flowed else int(result.num_inliers),
            point_rows=result.inlier_point_rows,
        )

    def track(self, image: np.ndarray, camera: Camera, prior: PosePrior, ref: FlowReference | None,
              timer=None) -> LocalizationResult:
        """Localize ``image`` from the reference frame ``ref`` and check the pose against ``prior``.

        Args:
            image: (H, W) or (H, W, 3) uint8, of the size of ``camera``.
            camera: the query camera.
            prior: the predicted pose (:class:`~global_loc.tracking.PosePrior`), used only to
                reject a pose too far from it.
            ref: the reference (:meth:`reference`) of the previous localized frame.
            timer: optional ``timer(stage)`` context manager factory; stages ``flow``, ``pnp``.
        Returns:
            A :class:`~global_loc.types.LocalizationResult` with ``mode="flow"``: ``LOCALIZED``
            with a pose solved from the followed points, or ``NOT_LOCALIZED`` with the reason
            (then descriptor tracking decides).
        """
        timer = timer or noop_timer
        tc, lc = self.conf, self.loc_conf
        res = LocalizationResult(status=Status.NOT_LOCALIZED, mode="flow")
        if ref is None:
            res.reason = "flow: no reference frame"
            return res
        if (ref.frames_since_anchor + 1 > tc.flow_max_frames
                or ref.seconds_since_anchor + prior.age_s > tc.flow_max_interval_s + 1e-6):
            res.reason = (f"flow: re-anchoring to the map after {ref.frames_since_anchor} frames, "
                          f"{ref.seconds_since_anchor + prior.age_s:.3f} s")
            return res
        if ref.grey.shape[:2] != image.shape[:2]:
            res.reason = "flow: the image size changed"
            return res
        with timer("flow"):
            grey = self._grey(image, reuse=False)
            w = (int(tc.flow_window_px),) * 2
            levels = int(tc.flow_pyramid_levels)
            p0 = ref.keypoints
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(ref.grey, grey, p0, None, winSize=w, maxLevel=levels,
                                                  criteria=self._criteria)
            p0b, st2, _ = cv2.calcOpticalFlowPyrLK(grey, ref.grey, p1, None, winSize=w, maxLevel=levels,
                                                   criteria=self._criteria)
            fb = np.linalg.norm((p0b - p0).reshape(-1, 2), axis=1)
            uv = p1.reshape(-1, 2)
            ok = ((st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb <= tc.flow_max_fb_error_px)
                  & (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1)
                  & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1))
        res.num_matches = int(ok.sum())
        needed = max(lc.min_inliers, int(np.ceil(tc.flow_min_tracked_ratio * ref.anchor_inliers)))
        if res.num_matches < needed:
            res.reason = (f"flow: {res.num_matches} of {len(p0)} points followed, fewer than {needed} "
                          f"({tc.flow_min_tracked_ratio} of the {ref.anchor_inliers} inliers at the last anchor)")
            return res
        def enough_inliers(pnp):
            return [] if pnp.num_inliers >= needed else [
                f"{pnp.num_inliers} inliers < {needed} ({tc.flow_min_tracked_ratio} of the "
                f"{ref.anchor_inliers} at the last anchor)"]

        return solve_tracked_pose(res, uv[ok].astype(np.float64), ref.points3D[ok], camera, prior, tc, lc, "flow",
                                  timer, enough_inliers, None if ref.point_rows is None else ref.point_rows[ok],
                                  self.point_uncertainty)
