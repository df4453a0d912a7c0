"""Turns one camera frame into what a localizer node publishes, without ROS.

The localizer node, ``global-loc localize --bag`` and the tests share this code: given an
image, its camera and stamp, and a tf lookup, the :class:`FrameHandler` localizes and returns
a :class:`Publication`: the robot pose in the map frame with its covariance, and the transform
to broadcast, following REP-105:

- with an odometry frame: ``map -> odom`` = ``map_from_base * inverse(odom_from_base)``, with
  ``odom_from_base`` looked up at the image stamp, so that ``map -> odom -> base_link`` gives
  the localized pose and the odometry keeps its own, drifting, frame;
- without one (``odom_frame`` empty): ``map -> base_link`` directly.

Between global queries, frames are tracked (:mod:`global_loc.tracking`): the handler keeps a
:class:`~global_loc.tracking.MotionModel` fed with the localized poses and the odometry
(``odom -> camera`` from tf at each stamp), gives the localizer its prior, and asks for a global
query first at least every ``tracking.global_period_s`` seconds of image time. The prior also
settles places that look alike; when a global query's evidence rejects it (the pose found is
elsewhere, or the prior agrees only with a weaker look-alike, or with none of those that fit),
the track is dropped.

Nothing is published for a frame that is not localized; the :class:`Diagnostics` count it.
Nor is anything published when the camera's place on the robot (``base -> camera`` in tf) is
unknown: the pose would be the camera's, not the robot's. That state is a problem in the
diagnostics (and the publication's ``note``), never a silent change of frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import GlobalLocError
from ..geometry.camera import Camera
from ..geometry.covariance import compose_covariance
from ..geometry.transforms import Pose
from ..localizer import Localizer
from ..tracking import MotionModel
from ..types import LocalFeatures, LocalizationResult
from .diagnostics import Diagnostics

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
        pose_frame: the child frame of ``pose``: always the configured base frame.
        pose: ``map_from_<pose_frame>``, or None (not localized, or localized but the
            transform base -> camera is unknown: ``note`` says so).
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
        return self.result.success


class FrameHandler:
    """Localize frames and compute the REP-105 outputs.

    Args:
        localizer: the :class:`~global_loc.localizer.Localizer`.
        frames: the frame names.
        lookup: tf lookup (see :data:`Lookup`).
        diagnostics: where frames and problems are counted (a new one by default).
    """

    def __init__(self, localizer: Localizer, frames: FrameConfig, lookup: Lookup,
                 diagnostics: Diagnostics | None = None):
        self.localizer = localizer
        self.frames = frames
        self.lookup = lookup
        self.diagnostics = diagnostics if diagnostics is not None else Diagnostics()
        self.motion = MotionModel(localizer.conf.tracking)
        self._last_global_s: float | None = None

    def _prior(self, stamp_s: float, cam_frame: str):
        """``(prior or None, global_first, odom_from_cam or None)`` for a frame."""
        tc = self.localizer.conf.tracking
        if not tc.enabled:
            return None, False, None
        odom_from_cam = None
        if self.frames.odom_frame:
            try:
                odom_from_cam = self.lookup(self.frames.odom_frame, cam_frame, stamp_s)
            except GlobalLocError:
                odom_from_cam = None  # no odometry at this stamp: the constant-velocity model
        prior = self.motion.predict(stamp_s, odom_from_cam)
        due = self._last_global_s is None or not 0 <= stamp_s - self._last_global_s < tc.global_period_s
        return prior, prior is not None and due, odom_from_cam

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
        cam_frame = self.frames.camera_frame or camera_frame
        stamp_s = stamp_ns * 1e-9
        prior, global_first, odom_from_cam = self._prior(stamp_s, cam_frame)
        result = self.localizer.localize(image, camera, features=features, timings={"decode": decode_s},
                                         prior=prior, global_first=global_first)
        self._track_state(stamp_s, prior, global_first, result, odom_from_cam)
        return self._publication(result, stamp_ns, cam_frame, odom_from_cam)

    def _track_state(self, stamp_s: float, prior, global_first: bool, result: LocalizationResult,
                     odom_from_cam: Pose | None) -> None:
        """The motion model and the global query's period after a frame."""
        if prior is None or global_first or result.mode in ("global", "rig"):  # a global query ran
            self._last_global_s = stamp_s
        if result.prior_rejected:  # the map says the track was wrong (a kidnap, the twin place)
            self.motion.reset()
            self.diagnostics.count("track_rejected")
        if result.success:
            self.motion.update(stamp_s, result.cam_from_world, odom_from_cam)

    def _publication(self, result: LocalizationResult, stamp_ns: int, cam_frame: str,
                     odom_from_cam: Pose | None) -> Publication:
        """The REP-105 outputs of a result whose ``cam_from_world`` is ``cam_frame``'s pose
        (the base frame's for a rig), counted in the diagnostics."""
        f = self.frames
        stamp_s = stamp_ns * 1e-9
        pub = Publication(stamp_ns, result, f.map_frame, pose_frame=f.base_frame)
        if result.success:
            pub.map_from_cam = result.cam_from_world.inverse()
            cov_cam = result.world_from_cam_covariance()
            if cov_cam is None:  # no covariance: do not claim certainty
                cov_cam = np.diag([1.0, 1.0, 1.0, 0.1, 0.1, 0.1])
            try:
                cam_from_base = (
                    Pose.identity() if f.base_frame == cam_frame else self.lookup(cam_frame, f.base_frame, stamp_s)
                )
            except GlobalLocError as e:
                # never publish the camera's pose as if it were the robot's: say what is missing
                pub.note = (f"localized, but no transform {f.base_frame} -> {cam_frame} ({e}): no pose "
                            f"published; publish the camera extrinsics on /tf_static, or set base_frame "
                            f"to '{cam_frame}' to publish the camera pose")
                self.diagnostics.set_problem("tf_camera", "ERROR", pub.note)
            else:
                self.diagnostics.clear_problem("tf_camera")
                pub.pose = pub.map_from_cam * cam_from_base
                pub.covariance = compose_covariance(pub.map_from_cam, cov_cam, cam_from_base)
            if f.publish_tf and pub.pose is not None:
                if f.odom_frame:
                    try:
                        # the odometry at this stamp was looked up for the prior already
                        odom_from_base = (odom_from_cam * cam_from_base if odom_from_cam is not None
                                          else self.lookup(f.odom_frame, f.base_frame, stamp_s))
                    except GlobalLocError as e:
                        pub.note = (f"no transform {f.odom_frame} -> {f.base_frame} at the image stamp ({e}): "
                                    f"{f.map_frame} -> {f.odom_frame} not updated; is the odometry running?")
                        self.diagnostics.set_problem("tf_odom", "WARN", pub.note)
                    else:
                        self.diagnostics.clear_problem("tf_odom")
                        pub.transform = (f.map_frame, f.odom_frame, pub.pose * odom_from_base.inverse())
                else:
                    pub.transform = (f.map_frame, f.base_frame, pub.pose)
        self.diagnostics.update(pub)
        return pub
