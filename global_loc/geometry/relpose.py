"""Camera pose from relative poses to keyframes of known pose (essential matrices).

Zhou, Sattler, Pollefeys and Leal-Taixé, "To Learn or Not to Learn: Visual Localization from
Essential Matrices", ICRA 2020: with 2D-2D matches between a query and several keyframes of
known pose, each keyframe's essential matrix gives the query's rotation and the direction of
its centre from that keyframe; two or more keyframes fix the centre, scale included, where
their rays meet. Here:

1. :func:`estimate_relative_view`: LO-RANSAC essential matrix per keyframe (pycolmap),
   cheirality-checked, with the rotation-compensated parallax of its inliers;
2. :func:`pose_from_relative_views`: the query rotation by a robust chordal mean of the
   per-keyframe estimates ``R_qk R_k`` (views that disagree are dropped), the camera centre
   by the least-squares intersection of the rays of the agreeing views (pairs tried in turn,
   the largest consensus kept), then the whole pose refined by minimising the Sampson errors
   of all their inlier matches (the keyframe poses fixed), which gives its covariance.

Frames: ``cam_from_world`` poses (``X_cam = R X_world + t``); ``query_from_keyframe`` maps the
keyframe's camera frame to the query's, its translation of unit length (scale unknown).
Covariances are over ``[dtheta, dt]`` of ``cam_from_world`` with ``R' = exp([dtheta]x) R``, as
everywhere in :mod:`global_loc.geometry.covariance`.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pycolmap
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from .camera import Camera
from .transforms import Pose, rotation_angle_deg


@dataclass
class RelativeView:
    """One keyframe's relative pose to the query.

    Attributes:
        row: the keyframe's row in the map.
        keyframe_from_world: the keyframe's known pose (``cam_from_world``).
        query_from_keyframe: the essential matrix's decomposition; ``t`` is a unit vector.
        num_matches: 2D-2D matches given to RANSAC.
        query_rays, keyframe_rays: (I, 3) float64 unit bearing vectors of the inlier matches
            in each camera's frame.
        query_inliers: (I,) int64 rows of the inliers in the query's keypoints.
        parallax_deg: median angle between the inliers' rays once the rotation is removed: near
            zero, the translation direction is not determined (the query stood where the
            keyframe did, or the scene is far).
    """

    row: int
    keyframe_from_world: Pose
    query_from_keyframe: Pose
    num_matches: int
    query_rays: np.ndarray
    keyframe_rays: np.ndarray
    query_inliers: np.ndarray
    parallax_deg: float

    @property
    def num_inliers(self) -> int:
        return len(self.query_rays)

    @property
    def query_rotation(self) -> np.ndarray:
        """(3, 3) the query's ``cam_from_world`` rotation this view implies."""
        return self.query_from_keyframe.R @ self.keyframe_from_world.R

    @property
    def ray(self) -> tuple[np.ndarray, np.ndarray]:
        """``(origin (3,), unit direction (3,))`` in the world: the keyframe's centre and the
        direction from it towards the query's centre."""
        qk = self.query_from_keyframe
        d_kf = -qk.R.T @ qk.t  # the query's centre in the keyframe's frame, up to scale
        d = self.keyframe_from_world.R.T @ d_kf
        return self.keyframe_from_world.center, d / np.linalg.norm(d)


def estimate_relative_view(
    query_keypoints: np.ndarray,
    keyframe_keypoints: np.ndarray,
    query_camera: Camera,
    keyframe_camera: Camera,
    keyframe_from_world: Pose,
    row: int = -1,
    max_error_px: float = 2.0,
    min_inliers: int = 30,
    seed: int = 0,
    query_index: np.ndarray | None = None,
    max_iterations: int = 2000,
) -> RelativeView | None:
    """The relative pose of the query to one keyframe from matched keypoints.

    Args:
        query_keypoints, keyframe_keypoints: (N, 2) matched pixels, OpenCV convention.
        query_camera, keyframe_camera: their cameras (distortion handled by the model).
        keyframe_from_world: the keyframe's ``cam_from_world``.
        row: the keyframe's row in the map (carried along).
        max_error_px: RANSAC's epipolar threshold, pixels (pycolmap's essential-matrix
            estimator).
        min_inliers: fewer inliers give None.
        seed: RANSAC's seed (-1: random).
        query_index: (N,) rows of the matches in the query's keypoints (carried along).
        max_iterations: RANSAC's bound on its trials (it stops earlier once confident; pycolmap's
            default floor of 1000 trials is lowered to 20).
    Returns:
        A :class:`RelativeView`, or None with fewer than ``min_inliers`` (at least 5) inliers.
    """
    q = np.asarray(query_keypoints, np.float64).reshape(-1, 2)
    k = np.asarray(keyframe_keypoints, np.float64).reshape(-1, 2)
    if len(q) < max(5, min_inliers):
        return None
    opts = pycolmap.RANSACOptions()
    opts.max_error = float(max_error_px)
    opts.random_seed = int(seed)
    opts.min_num_trials = 20
    opts.max_num_trials = int(max_iterations)
    ret = pycolmap.estimate_essential_matrix(
        keyframe_camera.to_colmap_pixels(k), query_camera.to_colmap_pixels(q),
        keyframe_camera.to_pycolmap(), query_camera.to_pycolmap(), opts)
    if ret is None:
        return None
    inl = np.asarray(ret["inlier_mask"], bool)
    if inl.sum() < max(5, min_inliers):
        return None
    qk = Pose.from_pycolmap(ret["cam2_from_cam1"])
    rq, rk = query_camera.rays(q), keyframe_camera.rays(k)
    inl &= (rq[:, 2] > 1e-3) & (rk[:, 2] > 1e-3)  # Sampson errors on the image plane: rays in front
    if inl.sum() < max(5, min_inliers):
        return None
    rq, rk = rq[inl], rk[inl]
    cos = np.clip(np.sum(rq * (rk @ qk.R.T), axis=1), -1.0, 1.0)
    idx = np.arange(len(q)) if query_index is None else np.asarray(query_index, np.int64)
    return RelativeView(int(row), keyframe_from_world, qk, len(q), rq, rk, idx[inl],
                        float(np.degrees(np.median(np.arccos(cos)))))


def chordal_mean(rotations: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The rotation nearest (Frobenius) to the weighted mean of (n, 3, 3) ``rotations``
    (Hartley et al., "Rotation Averaging", IJCV 2013, the chordal L2 mean)."""
    w = np.ones(len(rotations)) if weights is None else np.asarray(weights, np.float64)
    M = np.einsum("n,nij->ij", w, np.asarray(rotations, np.float64))
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def intersect_rays(origins: np.ndarray, directions: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The point nearest (weighted least squares of the perpendicular distances) to the rays
    ``origins[i] + s directions[i]``: (n, 3) each, directions of unit length. Returns (3,)."""
    o, d = np.asarray(origins, np.float64), np.asarray(directions, np.float64)
    w = np.ones(len(o)) if weights is None else np.asarray(weights, np.float64)
    P = np.eye(3)[None] - d[:, :, None] * d[:, None, :]  # projectors off each ray
    A = np.einsum("n,nij->ij", w, P)
    b = np.einsum("n,nij,nj->i", w, P, o)
    return np.linalg.lstsq(A, b, rcond=None)[0]


def _ray_angles_deg(c: np.ndarray, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Angle between each ray and the direction from its origin to ``c``, degrees (180 for a
    point behind the ray's origin)."""
    v = c[None] - origins
    n = np.linalg.norm(v, axis=1)
    cos = np.sum(v * directions, axis=1) / np.maximum(n, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@dataclass
class NeighbourPose:
    """What :func:`pose_from_relative_views` found.

    Attributes:
        cam_from_world: the query's pose, or None when refused.
        covariance: (6, 6) over ``[dtheta, dt]`` (radians, metres), scaled by the a-posteriori
            variance of the Sampson errors and ``covariance_scale``; None when refused.
        views: the agreeing views the pose rests on.
        reason: why it was refused (empty when not).
        sampson_rmse_px: RMS Sampson error of their inliers at the pose, pixels.
        ray_angle_deg: the largest angle between the lines of the agreeing rays at the camera
            centre (at most 90 deg).
    """

    cam_from_world: Pose | None
    covariance: np.ndarray | None
    views: list[RelativeView]
    reason: str = ""
    sampson_rmse_px: float = float("nan")
    ray_angle_deg: float = 0.0


def pose_from_relative_views(
    views: list[RelativeView],
    focal_px: float,
    max_rotation_deviation_deg: float = 2.0,
    max_ray_deviation_deg: float = 2.0,
    min_ray_angle_deg: float = 5.0,
    min_parallax_deg: float = 1.0,
    min_views: int = 3,
    min_agreement: float = 0.5,
    max_error_px: float = 2.0,
    covariance_scale: float = 4.0,
) -> NeighbourPose:
    """The query pose from the relative poses of two or more keyframes, or a refusal.

    Args:
        views: the keyframes' :class:`RelativeView` (from :func:`estimate_relative_view`).
        focal_px: the query's focal length, pixels (Sampson errors are reported in pixels).
        max_rotation_deviation_deg: a view whose query rotation differs more than this from
            the consensus does not agree.
        max_ray_deviation_deg: a view whose ray misses the centre by more than this angle does
            not agree.
        min_ray_angle_deg: the agreeing rays must spread at least this much at the centre, else
            the centre is not determined along them.
        min_parallax_deg: views with less parallax count for the rotation, not for the centre.
        min_views: at least this many views must agree (at least 2)...
        min_agreement: ...and at least this fraction of the views given.
        max_error_px: Sampson threshold of an inlier at the refined pose, pixels; its RMS over
            the agreeing views' inliers must stay below it.
        covariance_scale: factor on the covariance (see ``localization.covariance_scale``).
    Returns:
        A :class:`NeighbourPose`: with a pose, or with ``reason`` when the views disagree, the
        rays are near parallel, a ray points away from the centre, or the refined pose leaves
        the agreeing views' inliers.
    """
    min_views = max(2, int(min_views))
    out = NeighbourPose(None, None, [])
    n = len(views)
    if n < min_views:
        out.reason = f"{n} keyframe(s) gave a relative pose, {min_views} are needed"
        return out
    # 1. rotation: the largest consensus (by inliers), then its chordal mean
    Rs = np.stack([v.query_rotation for v in views])
    w = np.array([v.num_inliers for v in views], np.float64)
    agree = np.array([[rotation_angle_deg(Rs[i] @ Rs[j].T) <= max_rotation_deviation_deg for j in range(n)]
                      for i in range(n)])
    best = int(np.argmax(agree @ w))
    rot_ok = agree[best]
    if rot_ok.sum() < min_views or rot_ok.sum() < min_agreement * n:
        out.reason = (f"the keyframes disagree on the rotation: {int(rot_ok.sum())} of {n} within "
                      f"{max_rotation_deviation_deg:g} deg")
        return out
    R = chordal_mean(Rs[rot_ok], w[rot_ok])

    # 2. centre: pairs of rays with parallax, the largest consensus, then least squares
    cand = [i for i in np.flatnonzero(rot_ok) if views[i].parallax_deg >= min_parallax_deg]
    if len(cand) < 2:
        out.reason = (f"{len(cand)} agreeing keyframe(s) with parallax >= {min_parallax_deg:g} deg: the "
                      "camera centre is not determined")
        return out
    origins = np.stack([views[i].ray[0] for i in cand])
    dirs = np.stack([views[i].ray[1] for i in cand])
    wc = w[cand]
    best_set, best_score = None, -1.0
    for a, b in combinations(range(len(cand)), 2):
        c = intersect_rays(origins[[a, b]], dirs[[a, b]])
        ok = _ray_angles_deg(c, origins, dirs) <= max_ray_deviation_deg
        if ok[a] and ok[b] and wc[ok].sum() > best_score:
            best_set, best_score = ok, wc[ok].sum()
    if best_set is None or best_set.sum() < 2:
        out.reason = "no two keyframes' rays meet in front of them: the views disagree on the centre"
        return out
    c = intersect_rays(origins[best_set], dirs[best_set])
    dist = np.linalg.norm(c[None] - origins[best_set], axis=1)
    c = intersect_rays(origins[best_set], dirs[best_set], 1.0 / np.maximum(dist, 1e-9) ** 2)
    ray_ok = _ray_angles_deg(c, origins, dirs) <= max_ray_deviation_deg
    used = [views[cand[i]] for i in np.flatnonzero(ray_ok)]
    # views without parallax agree when their rotation does; they join the refinement
    used += [views[i] for i in np.flatnonzero(rot_ok) if views[i].parallax_deg < min_parallax_deg]
    if len(used) < min_views or len(used) < min_agreement * n or ray_ok.sum() < 2:
        out.reason = (f"the keyframes disagree on the centre: {int(ray_ok.sum())} of {len(cand)} rays within "
                      f"{max_ray_deviation_deg:g} deg of it")
        return out
    v = c[None] - origins[ray_ok]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    # the angle between the rays' lines: rays from either side along one line fix nothing on it
    spread = float(np.degrees(np.arccos(np.clip(np.abs(v @ v.T).min(), 0.0, 1.0))))
    out.ray_angle_deg = spread
    if spread < min_ray_angle_deg:
        out.reason = (f"the agreeing keyframes' rays meet at {spread:.2f} deg < {min_ray_angle_deg:g} deg: "
                      "the camera centre is not determined along them")
        return out

    # 3. the pose refined on the Sampson errors of all agreeing inliers, keyframe poses fixed
    pose, cov, rmse, per_view = _refine_sampson(R, c, used, focal_px, max_error_px)
    out.sampson_rmse_px = rmse
    moved = rotation_angle_deg(pose.R @ R.T)
    o = used[0].ray[0]  # the centre's move, as an angle seen from the best view's keyframe
    shift = _ray_angles_deg(pose.center, o[None], ((c - o) / max(np.linalg.norm(c - o), 1e-12))[None])[0]
    if not np.isfinite(rmse) or rmse > max_error_px:
        out.reason = f"Sampson RMSE {rmse:.2f} px > {max_error_px:g} px at the refined pose"
        return out
    if moved > max_rotation_deviation_deg or shift > max_ray_deviation_deg:
        out.reason = (f"the refinement moved the pose by {moved:.2f} deg and {shift:.2f} deg along the rays: "
                      "the views do not agree on one pose")
        return out
    kept = [u for u, k in zip(used, per_view) if k >= 0.5]
    if len(kept) < min_views:
        out.reason = f"at the refined pose {len(kept)} keyframe(s) keep half their inliers, {min_views} are needed"
        return out
    out.cam_from_world = pose
    out.covariance = None if cov is None else cov * covariance_scale
    out.views = used
    return out


def _homogeneous(rays: np.ndarray) -> np.ndarray:
    """(n, 3) unit rays with z > 0 -> (n, 3) points ``(x/z, y/z, 1)`` of the normalised image plane."""
    return rays / rays[:, 2:3]


def _sampson(R: np.ndarray, c: np.ndarray, data) -> np.ndarray:
    """Sampson errors (normalised image units) for the query pose ``(R, c)`` (its rotation and
    centre in the world) of matches ``data``: per view ``(R_k, c_k, x_k (n, 3), x_q (n, 3))``."""
    out = []
    for Rk, ck, x1, x2 in data:
        t_qk = R @ (ck - c)  # the keyframe's centre in the query's frame
        E = np.array([[0, -t_qk[2], t_qk[1]], [t_qk[2], 0, -t_qk[0]], [-t_qk[1], t_qk[0], 0]]) @ (R @ Rk.T)
        E = E / max(np.linalg.norm(E), 1e-12)
        Ex1 = x1 @ E.T
        Etx2 = x2 @ E
        num = np.sum(x2 * Ex1, axis=1)
        den = np.sqrt(Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2)
        out.append(num / np.maximum(den, 1e-15))
    return np.concatenate(out)


def _refine_sampson(R0: np.ndarray, c0: np.ndarray, views: list[RelativeView], focal_px: float,
                    max_error_px: float, max_points_per_view: int = 1024):
    """Non-linear least squares (Cauchy loss at the threshold) over the query's rotation
    (``exp([dtheta]x) R0``) and centre, on at most ``max_points_per_view`` inliers of each view
    (evenly chosen).

    Returns:
        ``(pose, covariance, rmse_px, per_view)``: the pose; its (6, 6) covariance over
        ``[dtheta, dt]``: the Sampson errors' sandwich ``H^-1 (sum_q g_q g_q^T) H^-1`` clustered by
        query keypoint (``g_q``: the summed gradients of the residuals of keypoint ``q``, which
        shares its error with every keyframe it is matched in; Liang and Zeger, Biometrika 1986)
        plus, with three views or more, the jackknife over the views (each left out in turn),
        which carries what the matches of one view share (its keyframe's pose error, a relative
        pose biased by its structure); the inliers' RMS Sampson error, pixels; the fraction of
        each view's matches that stay inliers.
    """
    data, query_rows = [], []
    for v in views:
        keep = np.unique(np.linspace(0, v.num_inliers - 1, min(v.num_inliers, max_points_per_view)).astype(int))
        kf = v.keyframe_from_world
        data.append((kf.R, kf.center, _homogeneous(v.keyframe_rays[keep]), _homogeneous(v.query_rays[keep])))
        query_rows.append(v.query_inliers[keep])
    query_rows = np.concatenate(query_rows)
    scale = max(np.linalg.norm(c0 - np.mean([d[1] for d in data], axis=0)), 1e-6)

    def solve(subset, x0, max_nfev=50):
        def residuals(x):
            R = Rotation.from_rotvec(x[:3]).as_matrix() @ R0
            return _sampson(R, c0 + x[3:] * scale, subset) * focal_px
        sol = least_squares(residuals, x0, loss="cauchy", f_scale=max_error_px, method="trf", max_nfev=max_nfev)
        return sol.x, residuals

    x, residuals = solve(data, np.zeros(6))
    R = Rotation.from_rotvec(x[:3]).as_matrix() @ R0
    c = c0 + x[3:] * scale
    r = residuals(x)
    inl = np.abs(r) <= max_error_px
    sizes = np.cumsum([0] + [len(d[2]) for d in data])
    per_view = [float(inl[a:b].mean()) for a, b in zip(sizes[:-1], sizes[1:])]
    rmse = float(np.sqrt(np.mean(r[inl] ** 2))) if inl.any() else float("inf")
    pose = Pose(R, -R @ c)
    if inl.sum() <= 6:
        return pose, None, rmse, per_view
    # the solver's Jacobian is of the Cauchy-scaled residuals; recompute it plainly
    J = _numeric_jacobian(residuals, x)[inl]
    try:
        H_inv = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return pose, None, rmse, per_view
    # sandwich clustered by query keypoint: a keypoint matched in several keyframes puts the
    # same localisation error into each of its residuals, which are therefore not independent
    _, cluster = np.unique(query_rows[inl], return_inverse=True)
    scores = np.zeros((cluster.max() + 1, 6))
    np.add.at(scores, cluster, J * r[inl, None])
    m = len(scores)
    cov_x = H_inv @ (scores.T @ scores) @ H_inv * (m / max(m - 6, 1))
    n = len(data)
    if n >= 3:  # jackknife over the views: (n - 1) / n sum (x_i - mean)(x_i - mean)^T
        xs = np.stack([solve(data[:i] + data[i + 1:], x, 20)[0] for i in range(n)])
        d = xs - xs.mean(axis=0)
        cov_x = cov_x + (n - 1) / n * d.T @ d
    if not np.all(np.isfinite(cov_x)):
        return pose, None, rmse, per_view
    # x = [dtheta, dc / scale] -> [dtheta, dt], t = -R c: dt = -[t]x dtheta - R dc
    t = pose.t
    T = np.zeros((6, 6))
    T[:3, :3] = np.eye(3)
    T[3:, :3] = -np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    T[3:, 3:] = -R * scale
    return pose, T @ cov_x @ T.T, rmse, per_view


def _numeric_jacobian(f, x: np.ndarray, h: float = 1e-7) -> np.ndarray:
    f0 = f(x)
    J = np.empty((len(f0), len(x)))
    for i in range(len(x)):
        dx = np.zeros_like(x)
        dx[i] = h
        J[:, i] = (f(x + dx) - f(x - dx)) / (2 * h)
    return J
