"""Pose priors for tracking: the last localized pose moved by odometry or by a constant
velocity."""
from __future__ import annotations

from dataclasses import dataclass

from scipy.spatial.transform import Rotation

from ..config import TrackingConf
from ..geometry.transforms import Pose


@dataclass
class PosePrior:
    """A predicted pose for a new frame.

    Attributes:
        cam_from_world: the predicted pose (map frame to camera frame).
        source: ``"odometry"`` (last pose composed with the odometry's motion since then),
            ``"constant_velocity"`` (the last two poses extrapolated) or ``"last_pose"`` (one
            pose known, no odometry: the camera is assumed still).
        age_s: image time since the localized frame the prediction starts from, seconds.
    """

    cam_from_world: Pose
    source: str
    age_s: float

    @property
    def from_odometry(self) -> bool:
        return self.source == "odometry"


@dataclass
class _State:
    stamp_s: float
    world_from_cam: Pose
    odom_from_cam: Pose | None


def _scaled(motion: Pose, s: float) -> Pose:
    """``motion`` to the power ``s`` (rotation vector and translation scaled; first order)."""
    rotvec = Rotation.from_matrix(motion.R).as_rotvec() * s
    return Pose(Rotation.from_rotvec(rotvec).as_matrix(), motion.t * s)


class MotionModel:
    """Predicts the pose of the next frame from the last localized ones.

    Args:
        conf: :class:`~global_loc.config.TrackingConf` (``max_prior_age_s``,
            ``max_prior_age_odometry_s``).

    With odometry (``odom_from_cam`` given both at the last localized frame and now), the
    prediction is ``world_from_cam = world_from_cam_last * inv(odom_from_cam_last) *
    odom_from_cam_now``: the odometry's drift cancels over the short interval. Without, the
    motion between the last two localized frames is extrapolated at constant velocity (in the
    camera frame).
    """

    def __init__(self, conf: TrackingConf):
        self.conf = conf
        self._last: _State | None = None
        self._previous: _State | None = None

    def reset(self) -> None:
        """Forget the past poses (the next frame needs a global query)."""
        self._last = self._previous = None

    @property
    def last_stamp_s(self) -> float | None:
        return None if self._last is None else self._last.stamp_s

    def update(self, stamp_s: float, cam_from_world: Pose, odom_from_cam: Pose | None = None) -> None:
        """Record a localized frame.

        Args:
            stamp_s: its image stamp, seconds.
            cam_from_world: its pose.
            odom_from_cam: the odometry's camera pose at that stamp, or None.
        """
        if self._last is not None and stamp_s <= self._last.stamp_s:
            self.reset()  # time went backwards (a bag restarted): start again
        self._previous = self._last
        self._last = _State(stamp_s, cam_from_world.inverse(), odom_from_cam)

    def predict(self, stamp_s: float, odom_from_cam: Pose | None = None) -> PosePrior | None:
        """The prior for a frame at ``stamp_s``, or None when there is none to trust: nothing
        localized yet, time going backwards, or the last pose older than the configured age.

        Args:
            stamp_s: the new frame's image stamp, seconds.
            odom_from_cam: the odometry's camera pose at that stamp, or None.
        """
        last = self._last
        if last is None:
            return None
        age = stamp_s - last.stamp_s
        if age < 0:
            return None
        if odom_from_cam is not None and last.odom_from_cam is not None:
            if age > self.conf.max_prior_age_odometry_s:
                return None
            world_from_cam = last.world_from_cam * last.odom_from_cam.inverse() * odom_from_cam
            return PosePrior(world_from_cam.inverse(), "odometry", age)
        if age > self.conf.max_prior_age_s:
            return None
        prev = self._previous
        if prev is None or not last.stamp_s > prev.stamp_s:
            return PosePrior(last.world_from_cam.inverse(), "last_pose", age)
        # camera motion per interval, in the last camera's frame
        motion = prev.world_from_cam.inverse() * last.world_from_cam
        s = age / (last.stamp_s - prev.stamp_s)
        world_from_cam = last.world_from_cam * _scaled(motion, s)
        return PosePrior(world_from_cam.inverse(), "constant_velocity", age)


