"""Checking the mapping cameras' principal points against the map's own tracks.

With the keyframe poses fixed, a principal point that is off by ``d`` pixels shifts every
projection of its camera by ``d``, as if each keyframe were turned by about ``d / f``. Between
keyframes with nearly parallel optical axes the triangulated points absorb most of that shift;
between keyframes that look in different directions, and above all between keyframes rolled
against each other (a gantry arm over the pole, a camera mounted upside down on a second pass),
they cannot: the points come out biased, in depth most, and so does every query pose that leans
on them (the temple ring's view 41 with a +0.5 px principal point: 12.6 mm and 1.36 deg off,
its points triangulated from views 6 and 40, 4 cm apart and rolled by 180 degrees). The tracks
then observe ``d``:
a Gauss-Newton bundle adjustment over the points and one principal-point offset per camera
(poses fixed; COLMAP's ``refine_principal_point`` with the poses held), with the points
eliminated by the Schur complement, gives ``d`` and its standard deviation. The map builder
applies the offset when it is significant (``mapping.refine_principal_point``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.camera import Camera
from ..geometry.transforms import Pose


@dataclass
class PrincipalPointEstimate:
    """Attributes:
    delta_px: (C, 2) float64 offset to add to each camera's (cx, cy), pixels.
    std_px: (C, 2) float64 standard deviations of ``delta_px`` (inf where unobservable).
    rmse_before_px, rmse_after_px: reprojection RMSE of the observations used, with the
        points re-estimated, before and after the offset.
    num_observations: observations used.
    """

    delta_px: np.ndarray
    std_px: np.ndarray
    rmse_before_px: float
    rmse_after_px: float
    num_observations: int


def estimate_principal_point_offsets(
    points_xyz: np.ndarray,
    obs_keyframe: np.ndarray,
    obs_point: np.ndarray,
    obs_pixels: np.ndarray,
    cameras: list[Camera],
    poses: list[Pose],
    camera_index: np.ndarray,
    iterations: int = 5,
    huber_px: float = 1.0,
) -> PrincipalPointEstimate:
    """Principal-point offsets per camera that best explain the tracks, poses fixed.

    Args:
        points_xyz: (P, 3) float64 triangulated points, metres (the start).
        obs_keyframe, obs_point: (O,) int64 keyframe row and point row of each observation.
        obs_pixels: (O, 2) float64 observed keypoints, pixels (OpenCV convention).
        cameras: the distinct cameras; ``camera_index`` (K,) int: each keyframe's camera.
        poses: (K,) cam_from_world of the keyframes.
        iterations: Gauss-Newton iterations.
        huber_px: Huber threshold of the robust weights, pixels.
    Returns:
        A :class:`PrincipalPointEstimate`.
    """
    X = np.array(points_xyz, np.float64)
    P, C = len(X), len(cameras)
    obs_cam = np.asarray(camera_index)[obs_keyframe]
    delta = np.zeros((C, 2))

    def residuals(X, delta, with_jac):
        uv = np.empty((len(obs_point), 2))
        J = np.empty((len(obs_point), 2, 3)) if with_jac else None
        for k in np.unique(obs_keyframe):
            sel = np.flatnonzero(obs_keyframe == k)
            cam = cameras[camera_index[k]]
            xc = poses[k].transform(X[obs_point[sel]])
            uv[sel] = cam.project(xc)
            if with_jac:  # d pixel / d X_world
                J[sel] = cam.projection_jacobian(xc, uv[sel]) @ poses[k].R
        r = uv + delta[obs_cam] - obs_pixels
        return r, J

    def rmse(r):
        ok = np.all(np.isfinite(r), axis=1)
        return float(np.sqrt(np.mean(np.sum(r[ok] ** 2, axis=1)))) if ok.any() else float("nan")

    r, J = residuals(X, delta, True)
    rmse_before = rmse(r)
    S = np.zeros((2 * C, 2 * C))
    sigma2 = 1.0
    for _ in range(iterations):
        ok = np.all(np.isfinite(r), axis=1) & np.all(np.isfinite(J), axis=(1, 2))
        n = np.linalg.norm(r, axis=1)
        w = np.where(ok, np.minimum(1.0, huber_px / np.maximum(n, 1e-12)), 0.0)
        r0 = np.where(ok[:, None], r, 0.0)
        J0 = np.where(ok[:, None, None], J, 0.0)
        # per point: H_XX (3x3), g_X (3), H_Xd (3 x 2C)
        JtJ = np.einsum("o,oai,oaj->oij", w, J0, J0)
        Jtr = np.einsum("o,oai,oa->oi", w, J0, r0)
        H_XX = np.zeros((P, 3, 3))
        g_X = np.zeros((P, 3))
        np.add.at(H_XX, obs_point, JtJ)
        np.add.at(g_X, obs_point, Jtr)
        H_Xd = np.zeros((P, 3, 2 * C))
        for c in range(C):
            sel = obs_cam == c
            np.add.at(H_Xd[:, :, 2 * c:2 * c + 2], obs_point[sel], (w[sel, None, None] * J0[sel]).transpose(0, 2, 1))
        H_dd = np.zeros((2 * C, 2 * C))
        g_d = np.zeros(2 * C)
        for c in range(C):
            sel = obs_cam == c
            H_dd[2 * c:2 * c + 2, 2 * c:2 * c + 2] = np.eye(2) * w[sel].sum()
            g_d[2 * c:2 * c + 2] = (w[sel, None] * r0[sel]).sum(axis=0)
        good = np.linalg.det(H_XX) > 1e-12 * np.maximum(np.einsum("pii->p", H_XX), 1e-300) ** 3
        Hinv = np.zeros_like(H_XX)
        Hinv[good] = np.linalg.inv(H_XX[good])
        S = H_dd - np.einsum("pai,pab,pbj->ij", H_Xd, Hinv, H_Xd)
        b = g_d - np.einsum("pai,pab,pb->i", H_Xd, Hinv, g_X)
        try:
            step_d = -np.linalg.solve(S + 1e-9 * np.eye(2 * C), b)
        except np.linalg.LinAlgError:
            break
        step_X = -np.einsum("pab,pb->pa", Hinv, g_X + np.einsum("pbi,i->pb", H_Xd, step_d))
        delta = delta + step_d.reshape(C, 2)
        X = X + np.where(good[:, None], step_X, 0.0)
        r, J = residuals(X, delta, True)
        ok = np.all(np.isfinite(r), axis=1)
        dof = max(2 * int(ok[good[obs_point]].sum()) - 3 * int(good.sum()) - 2 * C, 1)
        used = ok & good[obs_point]
        sigma2 = float(np.sum(np.minimum(np.sum(r[used] ** 2, axis=1), 9 * huber_px**2)) / dof)
        if np.abs(step_d).max() < 1e-4:
            break
    try:
        cov = np.linalg.inv(S) * sigma2
        std = np.sqrt(np.clip(np.diag(cov), 0, None)).reshape(C, 2)
    except np.linalg.LinAlgError:
        std = np.full((C, 2), np.inf)
    return PrincipalPointEstimate(delta, std, rmse_before, rmse(r), int(len(obs_point)))


def shifted_camera(camera: Camera, delta_px) -> Camera:
    """``camera`` with ``delta_px`` (2,) added to its principal point (cx, cy), at the indices
    its COLMAP model keeps them (pycolmap ``principal_point_idxs``)."""
    p = np.array(camera.params, np.float64)
    ix, iy = camera.to_pycolmap().principal_point_idxs()
    p[ix] += float(delta_px[0])
    p[iy] += float(delta_px[1])
    return Camera(camera.model, camera.width, camera.height, p)
