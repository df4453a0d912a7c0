"""Turns one camera frame into what a localizer node publishes, without ROS.

The localizer node, ``global-loc localize --bag`` and the tests share this code: given an
image, its camera and stamp, and a tf lookup, the :class:`FrameHandler` localizes and returns
a :class:`Publication`: the robot pose in the map frame with its covariance, and the transform
to broadcast, following REP-105:

- with an odometry frame: ``map -> odom`` = ``map_from_base * inverse(odom_from_base)``, with
  ``odom_from_base`` looked up at the image stamp, so that ``map -> odom -> base_link`` gives
  the localized pose and the odometry keeps its own, drifting, frame;
- without one (``odom_frame`` empty): ``map -> base_link`` directly.

Nothing is published for a frame that is not localized; the :class:`Diagnostics` count it.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import GlobalLocError
from ..geometry.camera import Camera
from ..geometry.covariance import compose_covariance
from ..geometry.transforms import Pose
from ..localizer import Localizer
from ..types import LocalFeatures, LocalizationResult, Status

#: ``lookup(target_frame, source_frame, stamp_seconds) -> target_from_source``; raises
#: :class:`~global_loc.errors.GlobalLocError` (e.g. ``TransformError``) when unavailable.
Lookup = Callable[[str, str, float], Pose]


@dataclass
class FrameConfig:
    """Frames of REP-105.

    Attributes:
        map_frame: the map's frame (the map file's ``frame_id`` by default in the node).
        odom_frame: the odometry frame; empty: broadcast ``map -> base_frame`` instead.
        base_frame: the robot's body frame.
        camera_frame: the camera's optical frame; empty: the images' ``header.frame_id``.
        publish_tf: broadcast the transform at all.
    """

    map_frame: str = "map"
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    camera_frame: str = ""
    publish_tf: bool = True


@dataclass
class Publication:
    """What to publish for one frame.

    Attributes:
        stamp_ns: the image stamp.
        result: the localization result.
        map_frame: the frame of ``pose``.
        map_from_cam: camera pose in the map frame (None: not localized).
        pose_frame: the child frame of ``pose`` (the base frame, or the camera frame when
            the camera -> base transform is unknown).
        pose: ``map_from_<pose_frame>``, or None.
        covariance: (6, 6) ROS-form covariance of ``pose``.
        transform: ``(parent, child, parent_from_child)`` to broadcast, or None.
        note: why something was not published although the frame was localized.
    """

    stamp_ns: int
    result: LocalizationResult
    map_frame: str = "map"
    map_from_cam: Pose | None = None
    pose_frame: str = ""
    pose: Pose | None = None
    covariance: np.ndarray | None = None
    transform: tuple[str, str, Pose] | None = None
    note: str = ""

    @property
    def localized(self) -> bool:
        return self.result.status == Status.LOCALIZED


class FrameHandler:
    """Localize frames and compute the REP-105 outputs.

    Args:
        localizer: the :class:`~global_loc.localizer.Localizer`.
        frames: the frame names.
        lookup: tf lookup (see :data:`Lookup`).
    """

    def __init__(self, localizer: Localizer, frames: FrameConfig, lookup: Lookup):
        self.localizer = localizer
        self.frames = frames
        self.lookup = lookup
        self.diagnostics = Diagnostics()

    def handle(self, image: np.ndarray, camera: Camera, stamp_ns: int, camera_frame: str,
               decode_s: float = 0.0, features: LocalFeatures | None = None) -> Publication:
        """Localize one frame.

        Args:
            image: (H, W) grey or (H, W, 3) RGB uint8.
            camera: its camera.
            stamp_ns: the image stamp, nanoseconds.
            camera_frame: the image's frame (``frames.camera_frame`` overrides it).
            decode_s: time already spent decoding the image, for the timings.
            features: precomputed local features of the image (skips extraction).
        """
        f = self.frames
        cam_frame = f.camera_frame or camera_frame
        result = self.localizer.localize(image, camera, features=features, timings={"decode": decode_s})
        pub = Publication(stamp_ns, result, f.map_frame)
        if result.status == Status.LOCALIZED:
            t = stamp_ns * 1e-9
            pub.map_from_cam = result.cam_from_world.inverse()
            cov_cam = result.world_from_cam_covariance()
            if cov_cam is None:  # no covariance: do not claim certainty
                cov_cam = np.diag([1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
            try:
                cam_from_base = (
                    Pose.identity() if f.base_frame == cam_frame else self.lookup(cam_frame, f.base_frame, t)
                )
                pub.pose_frame = f.base_frame
                pub.pose = pub.map_from_cam * cam_from_base
                pub.covariance = compose_covariance(pub.map_from_cam, cov_cam, cam_from_base)
            except GlobalLocError as e:
                pub.pose_frame, pub.pose, pub.covariance = cam_frame, pub.map_from_cam, cov_cam
                pub.note = f"no transform {cam_frame} -> {f.base_frame} ({e}); publishing the camera pose"
            if f.publish_tf and pub.pose_frame == f.base_frame:
                if f.odom_frame:
                    try:
                        odom_from_base = self.lookup(f.odom_frame, f.base_frame, t)
                        pub.transform = (f.map_frame, f.odom_frame, pub.pose * odom_from_base.inverse())
                    except GlobalLocError as e:
                        pub.note = f"no transform {f.odom_frame} -> {f.base_frame} at the image stamp ({e})"
                else:
                    pub.transform = (f.map_frame, f.base_frame, pub.pose)
        self.diagnostics.update(pub)
        return pub


class Diagnostics:
    """Rolling statistics of a localizer, for ``/diagnostics``.

    Args:
        window: frames kept for rates, latencies and inlier counts.
    """

    def __init__(self, window: int = 100):
        self._recent: collections.deque = collections.deque(maxlen=window)
        self.total = 0
        self.localized = 0
        self.failures_in_a_row = 0
        self.last_reason = ""

    def update(self, pub: Publication) -> None:
        self.total += 1
        ok = pub.localized and pub.pose is not None
        if ok:
            self.localized += 1
            self.failures_in_a_row = 0
        else:
            self.failures_in_a_row += 1
            self.last_reason = pub.result.reason or pub.note
        self._recent.append((time.monotonic(), ok, pub.result.num_inliers, dict(pub.result.timings)))

    def summary(self) -> dict[str, float | int | str]:
        """Key figures: frames, success ratio, rate (Hz), median latency per stage (ms),
        median inliers of the localized frames, failures in a row."""
        out: dict[str, float | int | str] = {
            "frames": self.total,
            "localized": self.localized,
            "failures_in_a_row": self.failures_in_a_row,
            "last_failure": self.last_reason,
        }
        if self._recent:
            times = [r[0] for r in self._recent]
            span = times[-1] - times[0]
            out["rate_hz"] = round((len(times) - 1) / span, 3) if span > 0 else 0.0
            out["success_ratio"] = round(float(np.mean([r[1] for r in self._recent])), 3)
            inl = [r[2] for r in self._recent if r[1]]
            out["median_inliers"] = float(np.median(inl)) if inl else 0.0
            stages = {k for r in self._recent for k in r[3]}
            for s in sorted(stages):
                out[f"latency_{s}_ms"] = round(float(np.median([r[3].get(s, 0.0) for r in self._recent])) * 1e3, 2)
        return out



def diagnostic_level(diag: Diagnostics, max_failures_in_a_row: int = 10) -> tuple[str, str]:
    """``(level, message)`` for ``/diagnostics``: OK while localizing, WARN after
    ``max_failures_in_a_row`` frames without a pose, STALE before the first frame."""
    if diag.total == 0:
        return "STALE", "no camera frame received yet"
    if diag.failures_in_a_row >= max_failures_in_a_row:
        return "WARN", f"not localized for {diag.failures_in_a_row} frames: {diag.last_reason}"
    return "OK", f"localized {diag.localized} of {diag.total} frames"
