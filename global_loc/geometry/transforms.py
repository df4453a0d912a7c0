"""Rigid transforms and the one quaternion convention of global_loc.

Conventions (see DESIGN.md):

- A pose is named for its frames: ``cam_from_world`` maps a point in the world frame to the
  camera frame, ``X_cam = R @ X_world + t``. ``a_from_b * b_from_c == a_from_c``.
- Metres and radians inside; degrees only in reports.
- Quaternions are Hamilton, unit norm. Pose files (COLMAP, hloc) write them ``qw qx qy qz``;
  ROS messages and TUM files write them ``x y z w``. :func:`quat_to_wxyz` /
  :func:`quat_to_xyzw` are the only place where the order is swapped, and
  :func:`rotmat_from_quat_wxyz` / :func:`quat_wxyz_from_rotmat` the only conversion between
  quaternions and matrices (they delegate to pycolmap's ``Rotation3d``, i.e. Eigen).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycolmap


def quat_to_xyzw(q_wxyz) -> np.ndarray:
    """Reorder a quaternion from ``(w, x, y, z)`` (COLMAP) to ``(x, y, z, w)`` (ROS, Eigen).

    Args:
        q_wxyz: (4,) or (N, 4) array-like.
    Returns:
        float64 array of the same shape.
    """
    q = np.asarray(q_wxyz, dtype=np.float64)
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def quat_to_wxyz(q_xyzw) -> np.ndarray:
    """Reorder a quaternion from ``(x, y, z, w)`` (ROS, Eigen) to ``(w, x, y, z)`` (COLMAP)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    return np.concatenate([q[..., 3:], q[..., :3]], axis=-1)


def rotmat_from_quat_wxyz(q_wxyz) -> np.ndarray:
    """Rotation matrix (3, 3) float64 from a quaternion ``(w, x, y, z)``; it is normalised first.

    Raises:
        ValueError: if the quaternion has zero or non-finite norm.
    """
    q = np.asarray(q_wxyz, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"invalid quaternion {q.tolist()}: its norm is {n}")
    return pycolmap.Rotation3d(quat_to_xyzw(q / n)).matrix()


def quat_wxyz_from_rotmat(R) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` from a (3, 3) rotation matrix."""
    q = quat_to_wxyz(pycolmap.Rotation3d(np.asarray(R, dtype=np.float64)).quat)
    return -q if q[0] < 0 else q


def rotation_angle_deg(R) -> float:
    """Angle in degrees of the rotation matrix ``R`` (3, 3), in [0, 180]."""
    c = (np.trace(np.asarray(R, dtype=np.float64)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


@dataclass(frozen=True)
class Pose:
    """A rigid transform ``a_from_b``: ``X_a = R @ X_b + t``.

    The variable that holds it carries the frames in its name (``cam_from_world``); the
    object does not. Follows COLMAP's ``Rigid3d`` and PixLoc's ``Pose`` wrapper.

    Attributes:
        R: (3, 3) float64 rotation matrix.
        t: (3,) float64 translation, metres.
    """

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self):
        R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        t = np.asarray(self.t, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
            raise ValueError("a pose must be finite")
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", t)

    @classmethod
    def identity(cls) -> "Pose":
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_qt(cls, q_wxyz, t) -> "Pose":
        """From a quaternion ``(w, x, y, z)`` and a translation (3,), as in COLMAP files."""
        return cls(rotmat_from_quat_wxyz(q_wxyz), t)

    @classmethod
    def from_matrix(cls, T) -> "Pose":
        """From a (4, 4) or (3, 4) homogeneous matrix."""
        T = np.asarray(T, dtype=np.float64)
        return cls(T[:3, :3], T[:3, 3])

    @classmethod
    def from_pycolmap(cls, rigid: "pycolmap.Rigid3d") -> "Pose":
        """From pycolmap's ``Rigid3d``, its quaternion normalised: a model read from COLMAP's
        text files keeps their 6-digit quaternions, whose ``matrix()`` is off orthonormal by
        up to 1e-6."""
        return cls.from_qt(quat_to_wxyz(np.asarray(rigid.rotation.quat, np.float64)), rigid.translation)

    def to_pycolmap(self) -> "pycolmap.Rigid3d":
        return pycolmap.Rigid3d(pycolmap.Rotation3d(self.R), self.t)

    @property
    def q_wxyz(self) -> np.ndarray:
        """(4,) float64 unit quaternion ``(w, x, y, z)``, ``w >= 0``."""
        return quat_wxyz_from_rotmat(self.R)

    def matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous matrix."""
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    def inverse(self) -> "Pose":
        """``b_from_a`` for this ``a_from_b``."""
        return Pose(self.R.T, -self.R.T @ self.t)

    def __mul__(self, other: "Pose") -> "Pose":
        """Composition: ``a_from_b * b_from_c -> a_from_c``."""
        if not isinstance(other, Pose):
            return NotImplemented
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def transform(self, points) -> np.ndarray:
        """Map points (N, 3) or (3,) from frame b to frame a."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.R.T + self.t

    @property
    def center(self) -> np.ndarray:
        """Origin of frame a expressed in frame b: for ``cam_from_world``, the camera centre
        in the world, metres, (3,)."""
        return -self.R.T @ self.t

    def interpolate(self, other: "Pose", alpha: float) -> "Pose":
        """Pose at ``alpha`` in [0, 1] between this one (0) and ``other`` (1): slerp on the
        rotation, linear on the translation (pycolmap ``Rigid3d.interpolate``)."""
        return Pose.from_pycolmap(
            pycolmap.Rigid3d.interpolate(self.to_pycolmap(), other.to_pycolmap(), float(alpha))
        )

    def __repr__(self) -> str:
        q = np.array2string(self.q_wxyz, precision=6, separator=", ")
        t = np.array2string(self.t, precision=6, separator=", ")
        return f"Pose(q_wxyz={q}, t={t})"


def pose_error(cam_from_world_est: Pose, cam_from_world_gt: Pose) -> tuple[float, float]:
    """Localization error of an estimated camera pose.

    Returns:
        ``(position_error_m, rotation_error_deg)``: the distance between the two camera
        centres in the world frame, and the angle of ``R_est @ R_gt.T``; the usual measure of
        the visual localization benchmark (Sattler et al., CVPR 2018).
    """
    dt = float(np.linalg.norm(cam_from_world_est.center - cam_from_world_gt.center))
    dr = rotation_angle_deg(cam_from_world_est.R @ cam_from_world_gt.R.T)
    return dt, dr
