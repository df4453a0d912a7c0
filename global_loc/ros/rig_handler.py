"""Turns one rig frame (the images of several cameras taken together) into what the localizer
node publishes, without ROS: one pose of the robot's base frame per rig frame.

The :class:`RigFrameHandler` is the :class:`~global_loc.ros.frame_handler.FrameHandler` of a
camera rig. Each camera's extrinsics ``cam_from_base`` come from tf (looked up once per camera
frame: they are static, ``/tf_static``); a camera whose extrinsics are not known yet sits the
frame out, and the diagnostics say which. The rig's pose is solved from all cameras' matches
(:class:`~global_loc.rig_localizer.RigLocalizer`), tracked between global queries with the
same motion model and period as one camera (the base frame's odometry, ``odom -> base``),
and published as REP-105 says, as for one camera.

:class:`CameraHealth` keeps, per camera, what the ``/diagnostics`` status of that camera says:
images received in rig frames, matches and inliers of the latest frames, how often it answered
alone, and a warning when it has matched nothing for a while although the others did (a covered
lens, a camera turned on its mount, wrong extrinsics).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import GlobalLocError
from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from ..localizer import Localizer
from ..rig_localizer import RigLocalizer
from ..types import LocalizationResult, Status
from .diagnostics import Diagnostics
from .frame_handler import FrameConfig, FrameHandler, Lookup, Publication

#: rig frames in a row in which a camera matched nothing while another camera did, before its
#: status warns
BLIND_FRAMES = 20


@dataclass
class CameraHealth:
    """What one camera of a rig contributed, for its ``/diagnostics`` status.

    Attributes:
        name: the camera (its topic namespace).
        frames: rig frames that held an image of this camera.
        missing: rig frames without one (the synchroniser completes rig frames, so only
            images that could not be decoded count here in the node).
        answered_alone: localized frames in which only this camera matched the map.
        blind_in_a_row: frames in a row in which it had no match while another camera had.
        recent_matches, recent_inliers: the latest frames' counts.
    """

    name: str
    frames: int = 0
    missing: int = 0
    answered_alone: int = 0
    blind_in_a_row: int = 0
    recent_matches: deque = field(default_factory=lambda: deque(maxlen=50))
    recent_inliers: deque = field(default_factory=lambda: deque(maxlen=50))

    def problem(self) -> tuple[str, str] | None:
        """``(level, message)`` when this camera needs a look, else None."""
        if self.blind_in_a_row >= BLIND_FRAMES:
            return "WARN", (f"camera {self.name} matched no map point in the last {self.blind_in_a_row} rig "
                            "frames while the other cameras did: covered, moved on its mount, or wrong "
                            "extrinsics in tf?")
        return None

    def values(self) -> dict[str, float | int]:
        m, i = list(self.recent_matches), list(self.recent_inliers)
        return {"frames": self.frames, "missing": self.missing, "answered_alone": self.answered_alone,
                "matches_median": float(np.median(m)) if m else 0.0,
                "inliers_median": float(np.median(i)) if i else 0.0}


class RigFrameHandler(FrameHandler):
    """Localize rig frames and compute the REP-105 outputs of the base frame.

    Args:
        localizer: the map's :class:`~global_loc.localizer.Localizer`.
        frames: the frame names; ``base_frame`` is the rig's frame (the published pose's
            child), ``camera_frame`` is ignored (each image's ``header.frame_id`` names its
            camera).
        lookup: tf lookup (see :data:`~global_loc.ros.frame_handler.Lookup`).
        camera_names: one name per camera (the node's camera namespaces), for the diagnostics.
        diagnostics: where frames and problems are counted.
    """

    def __init__(self, localizer: Localizer, frames: FrameConfig, lookup: Lookup, camera_names: Sequence[str],
                 diagnostics: Diagnostics | None = None):
        super().__init__(localizer, frames, lookup, diagnostics)
        self.cameras = [CameraHealth(n) for n in camera_names]
        self._extrinsics: dict[str, Pose] = {}  # camera frame -> cam_from_base (static)

    def _cam_from_base(self, camera_frame: str, stamp_s: float) -> Pose:
        pose = self._extrinsics.get(camera_frame)
        if pose is None:
            base = self.frames.base_frame
            pose = Pose.identity() if camera_frame == base else self.lookup(camera_frame, base, stamp_s)
            self._extrinsics[camera_frame] = pose
        return pose

    def handle_rig(self, images: Sequence[np.ndarray | None], cameras: Sequence[Camera], stamp_ns: int,
                   camera_frames: Sequence[str], decode_s: float = 0.0) -> Publication:
        """Localize one rig frame.

        Args:
            images: per camera, (H, W) grey or (H, W, 3) RGB uint8, or None (that camera sits
                this frame out: no image, or one that could not be decoded).
            cameras: per camera, its camera model.
            stamp_ns: the rig frame's stamp (its first camera's), nanoseconds.
            camera_frames: per camera, its optical frame (the images' ``header.frame_id``).
            decode_s: time already spent decoding the images.
        Returns:
            The :class:`~global_loc.ros.frame_handler.Publication` of ``base_frame``; not
            localized when no camera's extrinsics are known.
        Raises:
            InputError: lists whose lengths differ from the number of cameras.
        """
        f = self.frames
        stamp_s = stamp_ns * 1e-9
        images = list(images)
        extrinsics, unknown = [], []
        for k, frame in enumerate(camera_frames):
            try:
                extrinsics.append(self._cam_from_base(frame, stamp_s))
            except GlobalLocError as e:
                extrinsics.append(Pose.identity())  # placeholder: the camera sits out
                images[k] = None
                unknown.append(f"{f.base_frame} -> {frame} ({e})")
        if unknown:
            self.diagnostics.set_problem("tf_rig_camera", "ERROR", (
                f"no transform {'; '.join(unknown)}: those cameras sit out; publish the camera extrinsics "
                "on /tf_static"))
        else:
            self.diagnostics.clear_problem("tf_rig_camera")
        prior, global_first, odom_from_base = self._prior(stamp_s, f.base_frame)
        if all(im is None for im in images):
            result = LocalizationResult(status=Status.NOT_LOCALIZED, reason="no camera of the rig has an image with "
                                        "known extrinsics in this frame")
        else:
            result = RigLocalizer(self.localizer, extrinsics).localize(images, cameras, prior, global_first)
        result.timings["decode"] = decode_s
        result.timings["total"] = result.timings.get("total", 0.0) + decode_s
        self._track_state(stamp_s, prior, global_first, result, odom_from_base)
        self._count(images, result)
        return self._publication(result, stamp_ns, f.base_frame, odom_from_base)

    def _count(self, images, result: LocalizationResult) -> None:
        rig = result.rig or {}
        matches = rig.get("matches_per_camera", [0] * len(self.cameras))
        inliers = rig.get("inliers_per_camera", [0] * len(self.cameras))
        anyone = any(m > 0 for m in matches)
        for k, health in enumerate(self.cameras):
            if images[k] is None:
                health.missing += 1
                continue
            health.frames += 1
            health.recent_matches.append(matches[k])
            health.recent_inliers.append(inliers[k])
            health.blind_in_a_row = health.blind_in_a_row + 1 if anyone and matches[k] == 0 else 0
            if result.success and rig.get("fallback") == k:
                health.answered_alone += 1
