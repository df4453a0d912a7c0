"""Pose covariances: from the PnP solver's convention to the one ROS messages use.

Conventions, stated once:

- **PnP covariance** (``LocalizationResult.covariance``): 6x6 over ``[dtheta, dt]`` of
  ``cam_from_world``, perturbed as ``R' = exp([dtheta]x) R`` (left, camera frame) and
  ``t' = t + dt``; radians (a rotation vector) and metres. This is the parametrisation of
  COLMAP's pose refinement (Ceres' quaternion manifold and a Euclidean translation), whose
  rotation block :func:`~global_loc.geometry.pnp.estimate_absolute_pose` rescales from
  Ceres' half-angle tangent to rotation vectors; checked against Monte-Carlo runs in the
  tests.
- **ROS covariance** (``geometry_msgs/PoseWithCovariance``): 6x6 over
  ``[dx, dy, dz, drx, dry, drz]`` of a pose ``parent_from_child`` expressed in the parent
  frame: the child's origin moves by ``dp`` and its orientation turns about the parent's
  fixed axes, ``R' = exp([drot]x) R``.

The conversions are first-order (Jacobian) propagations.
"""
from __future__ import annotations

import numpy as np

from .transforms import Pose


def _skew(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def world_from_cam_covariance(cam_from_world: Pose, covariance: np.ndarray) -> np.ndarray:
    """ROS-convention covariance of ``world_from_cam`` from the PnP covariance.

    Args:
        cam_from_world: the estimated pose.
        covariance: (6, 6) PnP covariance ``[dtheta, dt]`` of ``cam_from_world``.
    Returns:
        (6, 6) float64 over ``[position of the camera in the world (3), rotation about the
        world axes (3)]``.
    """
    R_wc = cam_from_world.R.T
    t = cam_from_world.t
    J = np.zeros((6, 6))
    J[:3, :3] = -R_wc @ _skew(t)  # centre c = -R^T t moves with the rotation ...
    J[:3, 3:] = -R_wc  # ... and with the translation
    J[3:, :3] = -R_wc  # the world-frame rotation is the camera-frame one, turned and negated
    return J @ np.asarray(covariance, np.float64) @ J.T


def compose_covariance(parent_from_a: Pose, covariance: np.ndarray, a_from_b: Pose) -> np.ndarray:
    """ROS-convention covariance of ``parent_from_b = parent_from_a * a_from_b`` where only
    ``parent_from_a`` is uncertain (``a_from_b`` is a fixed extrinsic calibration).

    Args:
        parent_from_a: uncertain pose; covariance: its (6, 6) ROS-convention covariance.
        a_from_b: fixed transform.
    Returns:
        (6, 6) float64 ROS-convention covariance of ``parent_from_b``.
    """
    lever = parent_from_a.R @ a_from_b.t  # b's origin relative to a's, in the parent frame
    J = np.eye(6)
    J[:3, 3:] = -_skew(lever)
    return J @ np.asarray(covariance, np.float64) @ J.T
