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


def pose_jacobians(camera, cam_from_world: Pose, points3D: np.ndarray):
    """Pixel Jacobians of the points' projections under ``cam_from_world``.

    Args:
        camera: the camera; cam_from_world: the pose.
        points3D: (N, 3) world points, metres, in front of the camera.
    Returns:
        ``(J, A)``: (N, 2, 6) float64 with respect to the pose's ``[dtheta, dt]`` (the PnP
        convention above), and (N, 2, 3) float64 with respect to the world points.
    """
    X = np.asarray(points3D, np.float64).reshape(-1, 3)
    RX = X @ cam_from_world.R.T
    Jp = camera.projection_jacobian(RX + cam_from_world.t)  # (N, 2, 3) d pixel / d camera point
    J = np.empty((len(X), 2, 6))
    J[:, :, 3:] = Jp
    # d pixel / d theta = Jp (-[RX]x): row by row the cross product RX x (row of Jp)
    v0, v1, v2 = RX[:, 0, None], RX[:, 1, None], RX[:, 2, None]
    u0, u1, u2 = Jp[:, :, 0], Jp[:, :, 1], Jp[:, :, 2]
    J[:, :, 0] = v1 * u2 - v2 * u1
    J[:, :, 1] = v2 * u0 - v0 * u2
    J[:, :, 2] = v0 * u1 - v1 * u0
    return J, Jp @ cam_from_world.R


def triangulation_covariances(
    points_xyz: np.ndarray,
    obs_keyframe: np.ndarray,
    obs_point: np.ndarray,
    obs_pixels: np.ndarray,
    cameras: list,
    poses: list[Pose],
    noise_px: float | None = None,
) -> tuple[np.ndarray, float]:
    """First-order covariance of each triangulated point, with the keyframe poses taken as exact.

    ``cov_p = noise^2 (sum_o A_o^T A_o)^-1`` over the point's observations ``o``, ``A_o`` the
    (2, 3) derivative of its projection into the observing keyframe (Hartley and Zisserman,
    "Multiple View Geometry", 2nd ed., sec. 5.2, the covariance of a maximum-likelihood estimate).
    Near points and points seen under a narrow baseline come out uncertain, mostly in depth.

    Args:
        points_xyz: (P, 3) float64 points, metres, world frame.
        obs_keyframe, obs_point: (O,) int keyframe row and point row of each observation.
        obs_pixels: (O, 2) observed keypoints, pixels (OpenCV convention).
        cameras, poses: per keyframe row, its :class:`~global_loc.geometry.camera.Camera` and
            ``cam_from_world``.
        noise_px: the keypoints' standard deviation, pixels; None: the a-posteriori value of
            the map's own residuals, ``sqrt(sum r^2 / (2 O - 3 P))`` over the points seen at
            least twice (1 px when there are too few).
    Returns:
        ``(cov, noise_px)``: (P, 3, 3) float32 covariances, m^2 (a point with fewer than two
        observations, or rays that do not intersect, gets an infinite one), and the noise used.
    """
    X = np.asarray(points_xyz, np.float64).reshape(-1, 3)
    obs_keyframe = np.asarray(obs_keyframe, np.int64)
    obs_point = np.asarray(obs_point, np.int64)
    obs_pixels = np.asarray(obs_pixels, np.float64).reshape(-1, 2)
    P = len(X)
    H = np.zeros((P, 3, 3))
    sq, used = 0.0, 0
    # the a-posteriori noise from the points seen at least twice (one observation has no residual)
    multi = np.bincount(obs_point, minlength=P) >= 2
    order = np.argsort(obs_keyframe, kind="stable")
    bounds = np.searchsorted(obs_keyframe[order], np.arange(len(poses) + 1))
    for k in range(len(poses)):
        sel = order[bounds[k]:bounds[k + 1]]
        if len(sel) == 0:
            continue
        pts = obs_point[sel]
        xc = poses[k].transform(X[pts])
        uv = cameras[k].project(xc)
        A = cameras[k].projection_jacobian(xc, uv) @ poses[k].R
        ok = np.all(np.isfinite(uv), axis=1) & np.all(np.isfinite(A), axis=(1, 2))
        np.add.at(H, pts[ok], np.einsum("oai,oaj->oij", A[ok], A[ok]))
        ok &= multi[pts]
        sq += float(np.sum((uv[ok] - obs_pixels[sel][ok]) ** 2))
        used += int(ok.sum())
    if noise_px is None:
        dof = 2 * used - 3 * int(multi.sum())
        noise_px = float(np.sqrt(sq / dof)) if dof > 0 else 1.0
    cov = np.full((P, 3, 3), np.inf, np.float64)
    trace = np.einsum("pii->p", H)
    good = np.linalg.det(H) > 1e-12 * np.maximum(trace, 1e-300) ** 3
    cov[good] = np.linalg.inv(H[good]) * noise_px**2
    return cov.astype(np.float32), float(noise_px)


def map_point_pose_covariance(camera, cam_from_world: Pose, points3D: np.ndarray,
                              point_covariances: np.ndarray, jacobians=None) -> np.ndarray | None:
    """The share of a PnP pose's covariance that comes from errors of the map's points.

    PnP's least squares take the 3D points as exact; a point off by ``dX`` moves its projection
    by ``A dX`` and so the pose by ``-H^-1 J^T A dX``. With independent point errors of
    covariance ``cov_i`` the pose gets ``H^-1 (sum_i J_i^T A_i cov_i A_i^T J_i) H^-1`` (the
    sandwich form of the least-squares covariance under errors the estimator does not model;
    the same propagation as in Hartley and Zisserman, sec. 5.2.6). Residuals do not show it:
    the pose absorbs the part of the points' errors it can explain. A few near points, whose
    depth the map knows poorly, then pull the pose with no trace in the residuals.

    Args:
        camera: the query camera.
        cam_from_world: the PnP pose.
        points3D: (N, 3) the inliers' points, metres, world frame.
        point_covariances: (N, 3, 3) their covariances, m^2
            (:func:`triangulation_covariances`); non-finite ones are left out.
        jacobians: :func:`pose_jacobians` of these points at this pose, where already computed.
    Returns:
        (6, 6) float64 over ``[dtheta, dt]`` (the PnP convention), or None when the points do
        not determine the pose.
    """
    J, A = pose_jacobians(camera, cam_from_world, points3D) if jacobians is None else jacobians
    C = np.asarray(point_covariances, np.float64).reshape(-1, 3, 3)
    ok = np.all(np.isfinite(J), axis=(1, 2)) & np.all(np.isfinite(A), axis=(1, 2))
    if ok.sum() < 3:
        return None
    J2 = J[ok].reshape(-1, 6)
    H = J2.T @ J2
    try:
        Hi = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None
    ok &= np.all(np.isfinite(C), axis=(1, 2))
    J, A, C = J[ok], A[ok], C[ok]
    S = (A @ C) @ A.transpose(0, 2, 1)  # (N, 2, 2) the points' errors in the image
    M = J.reshape(-1, 6).T @ (S @ J).reshape(-1, 6)
    out = Hi @ M @ Hi
    return 0.5 * (out + out.T) if np.all(np.isfinite(out)) else None


def point_weights(camera, cam_from_world: Pose, points3D: np.ndarray, point_covariances: np.ndarray,
                  noise_px: float) -> np.ndarray:
    """How much each correspondence's residual is the keypoint's and not its map point's.

    ``noise^2 / (noise^2 + tr(A cov A^T) / 2)`` with ``A`` the projection's derivative: 1 for an
    exact point, towards 0 for a point whose error moves its projection by many pixels (the
    scalar form of the weights of :func:`~global_loc.geometry.pnp.refine_with_point_uncertainty`).

    Args:
        camera, cam_from_world: the query camera and pose.
        points3D: (N, 3) world points, metres; point_covariances: (N, 3, 3) theirs, m^2.
        noise_px: the keypoints' standard deviation, pixels.
    Returns:
        (N,) float64 in [0, 1]: 1 for a point without a finite covariance (taken as exact, as
        in :func:`~global_loc.geometry.pnp.refine_with_point_uncertainty`), 0 for one that
        does not project.
    """
    _, A = pose_jacobians(camera, cam_from_world, points3D)
    C = np.asarray(point_covariances, np.float64).reshape(-1, 3, 3)
    C = np.where(np.all(np.isfinite(C), axis=(1, 2))[:, None, None], C, 0.0)
    spread = 0.5 * np.einsum("nai,nij,naj->n", A, C, A)
    w = noise_px**2 / (noise_px**2 + spread)
    return np.where(np.isfinite(w), w, 0.0)
