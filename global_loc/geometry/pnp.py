"""Absolute pose from 2D-3D matches: LO-RANSAC P3P (pycolmap) and one non-linear refinement.

RANSAC is COLMAP's ``EstimateAbsolutePose`` (pycolmap's ``estimate_absolute_pose``), as in hloc's
localization. Its pose is refined once: by maximum likelihood with the map points' uncertainty
(:func:`refine_with_point_uncertainty`), or, without it, by the refinement COLMAP's
``RefineAbsolutePose`` does (Cauchy loss of scale 1 px, here by iteratively reweighted
Gauss-Newton); the covariance is the one COLMAP's refinement gives (:func:`robust_pose_covariance`),
at the refined pose. (Before: COLMAP's refinement and covariance, then the weighted refinement
from its pose: two refinements, the same accuracy, 5-6 ms more per place on the temple.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycolmap

from .camera import Camera
from .covariance import map_point_pose_covariance, pose_jacobians, world_from_cam_covariance
from .transforms import Pose


@dataclass
class PnPResult:
    """Attributes:
    cam_from_world: the estimated pose.
    inliers: (N,) bool mask over the input matches.
    covariance: (6, 6) float64 covariance of ``cam_from_world`` over ``[dtheta, dt]`` (see
        :mod:`global_loc.geometry.covariance`), scaled by the a-posteriori variance of the
        inlier reprojection residuals; None where it could not be computed.
    reprojection_rmse_px: root-mean-square reprojection error of the inliers, pixels.
    camera: the camera with the focal length PnP estimated (``estimate_focal_length``), else None.
    """

    cam_from_world: Pose
    inliers: np.ndarray
    covariance: np.ndarray | None
    reprojection_rmse_px: float = float("nan")
    camera: Camera | None = None

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def estimate_absolute_pose(
    keypoints: np.ndarray,
    points3D: np.ndarray,
    camera: Camera,
    max_error_px: float = 8.0,
    max_iterations: int = 10000,
    seed: int = -1,
    covariance_scale: float = 1.0,
    point_covariances: np.ndarray | None = None,
    point_noise_px: float = 1.0,
    weigh_points: bool = True,
    estimate_focal_length: bool = False,
) -> PnPResult | None:
    """Camera pose from 2D-3D correspondences.

    Args:
        keypoints: (N, 2) pixels, OpenCV convention.
        points3D: (N, 3) metres, world frame.
        camera: the query camera (distortion is handled by the model).
        max_error_px: RANSAC inlier threshold, pixels.
        max_iterations: RANSAC iteration bound.
        seed: RANSAC seed (-1: random).
        covariance_scale: factor on the covariance (the square of a factor on the standard
            deviations), for what the reprojection residuals do not show: errors of the map
            shared by all points of a query (see ``localization.covariance_scale``).
        point_covariances: (N, 3, 3) covariances of ``points3D``, m^2 (the map's triangulation
            covariances, :meth:`~global_loc.map.index.MapIndex.point_covariances`), or None to
            take the points as exact. With them, RANSAC's pose is refined by
            :func:`refine_with_point_uncertainty` (maximum likelihood), and the points'
            share (:func:`~global_loc.geometry.covariance.map_point_pose_covariance`) is added
            to the covariance, which is the unweighted estimate's form
            (:func:`robust_pose_covariance`, at the refined pose): an upper bound of the
            weighted one's, and the one ``covariance_scale`` is calibrated with (the weighted
            estimate's own, ``(J^T W J)^-1``, assumes independent errors: on the temple and
            the robot world it left most errors outside its 2-sigma bound). Without them,
            RANSAC's pose gets COLMAP's refinement.
        point_noise_px: the keypoints' standard deviation for that refinement, pixels.
        weigh_points: False: no weighted refinement, only the points' share of the covariance.
        estimate_focal_length: the focal length of ``camera`` is a guess (no calibration, no
            EXIF): RANSAC estimates it with the pose (COLMAP's P4Pf-style focal sampling) and the
            refinement refines it, as COLMAP registers an image of unknown focal length; the
            result's ``camera`` has it, the covariance is the pose's given that focal length.
    Returns:
        :class:`PnPResult`, or None when fewer than 4 matches are given or RANSAC finds no
        model.
    """
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
    points3D = np.asarray(points3D, np.float64).reshape(-1, 3)
    if len(keypoints) < 4:
        return None
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = float(max_error_px)
    est.ransac.max_num_trials = int(max_iterations)
    est.ransac.random_seed = int(seed)
    if estimate_focal_length:
        return _estimate_with_focal_length(keypoints, points3D, camera, est, covariance_scale)
    ret = pycolmap.estimate_absolute_pose(camera.to_colmap_pixels(keypoints), points3D, camera.to_pycolmap(), est)
    if ret is None:
        return None
    inliers = np.asarray(ret["inlier_mask"], bool)
    kp, X = keypoints[inliers], points3D[inliers]
    start = Pose.from_pycolmap(ret["cam_from_world"])
    C = None if point_covariances is None else np.asarray(point_covariances)[inliers]
    # one refinement from RANSAC's pose: maximum likelihood with the points' uncertainty, or
    # without it COLMAP's own (Cauchy loss of scale 1 px on the squared residual, unit weights)
    if C is not None and weigh_points:
        pose = refine_with_point_uncertainty(camera, start, kp, X, C, point_noise_px)
    else:
        pose = refine_with_point_uncertainty(camera, start, kp, X, np.zeros((len(X), 3, 3)), 1.0, cauchy_sigma=1.0)
    pose = pose if pose is not None else start
    res = camera.project(pose.transform(X)) - kp
    # a-posteriori variance of unit weight times COLMAP's covariance for 1-pixel noise
    sigma2 = float(np.nansum(res**2) / max(2 * len(X) - 6, 1))
    # a pose resting on one point is known only as well as without it
    jacobians = pose_jacobians(camera, pose, X)
    cov, _ = _covariance_without_dominant_point(_pose_information(camera, pose, kp, X, jacobians[0], res))
    if cov is not None:
        cov = cov * sigma2
        if C is not None:
            from_points = map_point_pose_covariance(camera, pose, X, C, jacobians)
            cov = cov + from_points if from_points is not None else cov
    if cov is not None:
        cov = cov * covariance_scale
        if not np.all(np.isfinite(cov)):
            cov = None
    return PnPResult(pose, inliers, cov, float(np.sqrt(np.nanmean(np.sum(res**2, axis=1)))))


def robust_pose_covariance(camera: Camera, cam_from_world: Pose, keypoints: np.ndarray,
                           points3D: np.ndarray) -> np.ndarray | None:
    """The covariance COLMAP's pose refinement reports, for 1-pixel noise: ``(sum_i w_i J_i^T
    J_i)^-1`` with the Cauchy loss's weights ``w_i = 1 / (1 + |r_i|^2)`` (scale 1 px), ``J_i``
    the (2, 6) derivative of point i's projection over ``[dtheta, dt]`` (rotation vector
    left-multiplied, translation added; :func:`~global_loc.geometry.covariance.pose_jacobians`),
    ``r_i`` its residual, pixels. Equal, to rounding, to pycolmap's
    ``estimate_and_refine_absolute_pose(..., return_covariance=True)`` at the same pose (its
    half-angle quaternion tangent converted).

    Args:
        keypoints: (N, 2) float pixels (OpenCV convention); points3D: (N, 3) float metres.
    Returns:
        (6, 6) float64, or None when singular or not finite.
    """
    info = _pose_information(camera, cam_from_world, keypoints, points3D)
    return None if info is None else _inverse(info[2])


def _pose_information(camera: Camera, cam_from_world: Pose, keypoints, points3D, J=None, r=None):
    """``(J (N, 2, 6), w (N,), H (6, 6))`` of :func:`robust_pose_covariance` over the finite
    points, or None with fewer than 3; ``J`` (the pose Jacobians) and ``r`` (the residuals,
    pixels) where already computed at this pose."""
    X = np.asarray(points3D, np.float64).reshape(-1, 3)
    if J is None:
        J, _ = pose_jacobians(camera, cam_from_world, X)
    if r is None:
        r = camera.project(cam_from_world.transform(X)) - np.asarray(keypoints, np.float64).reshape(-1, 2)
    ok = np.all(np.isfinite(r), axis=1) & np.all(np.isfinite(J), axis=(1, 2))
    if ok.sum() < 3:
        return None
    J, r = J[ok], r[ok]
    w = 1.0 / (1.0 + np.sum(r**2, axis=1))
    return J, w, (J * w[:, None, None]).reshape(-1, 6).T @ J.reshape(-1, 6)


def _inverse(H: np.ndarray) -> np.ndarray | None:
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None
    return cov if np.all(np.isfinite(cov)) else None


#: a pose "rests on one point" when one inlier's leverage (its share of the pose's six degrees
#: of freedom, ``trace(w_i J_i H^-1 J_i^T)``; they sum to 6) exceeds this: the point alone
#: fixes a whole degree of freedom, so an outlier there would not show in any residual
MAX_LEVERAGE = 1.0


def leave_one_out_covariance(camera: Camera, cam_from_world: Pose, keypoints: np.ndarray,
                             points3D: np.ndarray, max_leverage: float = MAX_LEVERAGE) -> np.ndarray | None:
    """The covariance of :func:`robust_pose_covariance` (1-pixel noise) without the inlier of
    largest leverage, when that leverage exceeds ``max_leverage``; None when no point does.

    A wrong match that alone fixes a degree of freedom of the pose fits it perfectly: its
    residual is small whatever its error, RANSAC keeps it, and the covariance, which trusts it,
    is small too. Seen on the twin-rooms world: 15 inliers on a wall 10 m away and one wrong
    match at 1.3 m (60 px off at the true pose, leverage 2.0): a pose 0.38 m off with a
    covariance that put the truth 57 standard deviations away. The leverage is the diagonal of
    least squares' hat matrix (Hoaglin and Welsch, "The hat matrix in regression and ANOVA",
    1978); the covariance without that point is what the pose is known to be if it is wrong.
    """
    cov, dropped = _covariance_without_dominant_point(
        _pose_information(camera, cam_from_world, keypoints, points3D), max_leverage)
    return cov if dropped else None


def _covariance_without_dominant_point(info, max_leverage: float = MAX_LEVERAGE):
    """``(H^-1, False)`` of :func:`_pose_information`'s ``info``, or, when one point's
    leverage exceeds ``max_leverage``, ``(the inverse without that point, True)``; the
    covariance is None when singular or ``info`` is None."""
    if info is None:
        return None, False
    J, w, H = info
    cov = _inverse(H)
    if cov is None:
        return None, False
    J2 = J.reshape(-1, 6)
    leverage = w * np.sum((J2 @ cov) * J2, axis=1).reshape(-1, 2).sum(axis=1)
    k = int(np.argmax(leverage))
    if leverage[k] <= max_leverage:
        return cov, False
    return _inverse(H - w[k] * J[k].T @ J[k]), True


def _estimate_with_focal_length(keypoints, points3D, camera: Camera, est, covariance_scale: float):
    """Pose and focal length (COLMAP's registration of an image of unknown focal length):
    pycolmap's RANSAC with focal sampling, then its refinement of both."""
    ref = pycolmap.AbsolutePoseRefinementOptions()
    est.estimate_focal_length = ref.refine_focal_length = True
    colmap_camera = pycolmap.Camera(model=camera.model, width=camera.width, height=camera.height,
                                    params=camera.params.copy())  # pycolmap refines it in place
    ret = pycolmap.estimate_and_refine_absolute_pose(
        camera.to_colmap_pixels(keypoints), points3D, colmap_camera, est, ref, return_covariance=True)
    if ret is None:
        return None
    camera = Camera.from_pycolmap(colmap_camera)
    pose = Pose.from_pycolmap(ret["cam_from_world"])
    inliers = np.asarray(ret["inlier_mask"], bool)
    res = camera.project(pose.transform(points3D[inliers])) - keypoints[inliers]
    cov = colmap_pose_covariance(ret.get("covariance"), res, covariance_scale)
    return PnPResult(pose, inliers, cov, float(np.sqrt(np.nanmean(np.sum(res**2, axis=1)))), camera)


def colmap_pose_covariance(covariance, residuals: np.ndarray, covariance_scale: float = 1.0) -> np.ndarray | None:
    """A pose covariance pycolmap reports (for 1-pixel noise, over its quaternion manifold's
    tangent, whose rotation part is half the rotation angle; a focal-length block after the pose
    is dropped) in this module's convention: over ``[dtheta, dt]`` with rotation vectors, scaled
    by the a-posteriori variance of unit weight of the inliers' ``residuals`` ((N, 2) pixels)
    and by ``covariance_scale``. None when pycolmap gave none or it is not finite."""
    if covariance is None:
        return None
    S = np.diag([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    sigma2 = float(np.nansum(residuals**2) / max(2 * len(residuals) - 6, 1))
    cov = S @ np.asarray(covariance, np.float64)[:6, :6] @ S * sigma2 * covariance_scale
    return cov if np.all(np.isfinite(cov)) else None


#: the weighted refinement stops at a step this many standard deviations long (Mahalanobis)
CONVERGED_STEP = 0.1


def refine_with_point_uncertainty(
    camera: Camera,
    cam_from_world: Pose,
    keypoints: np.ndarray,
    points3D: np.ndarray,
    point_covariances: np.ndarray,
    noise_px: float,
    cauchy_sigma: float = 1.5,
    iterations: int = 10,
) -> Pose | None:
    """Maximum-likelihood pose with uncertain map points: robust, weighted Gauss-Newton.

    PnP's least squares weigh every correspondence alike, as if its 3D point were exact. A point
    with covariance ``cov_i`` moves its projection with covariance ``A_i cov_i A_i^T`` (``A_i``:
    the projection's derivative), so the residual ``r_i`` has covariance
    ``S_i = noise^2 I + A_i cov_i A_i^T``: near points whose depth the map knows poorly count
    less, far well-triangulated ones more. Each residual is weighted by ``S_i^-1`` and by a
    Cauchy weight on its Mahalanobis norm ``m_i`` (``1 / (1 + m_i^2 / cauchy_sigma^2)``, a
    robust loss as in COLMAP's pose refinement, here in units of each residual's own standard
    deviation); the errors-in-variables model of the "uncertain 3D points" PnP literature
    (e.g. Vakhitov et al., "Uncertainty-Aware Camera Pose Estimation from Points and Lines",
    CVPR 2021), solved by iteratively reweighted Gauss-Newton from the PnP-RANSAC pose.

    Args:
        camera: the query camera.
        cam_from_world: the start (PnP-RANSAC's pose).
        keypoints: (N, 2) float pixels of the inliers (OpenCV convention).
        points3D: (N, 3) float their world points, metres.
        point_covariances: (N, 3, 3) the points' covariances, m^2; a point with a non-finite
            one is taken as exact, as PnP takes every point.
        noise_px: the keypoints' standard deviation, pixels.
        cauchy_sigma: scale of the Cauchy loss, in standard deviations.
        iterations: Gauss-Newton iterations at most.
    Returns:
        The refined ``cam_from_world``; None with fewer than 4 correspondences or a singular
        normal matrix.
    """
    X = np.asarray(points3D, np.float64).reshape(-1, 3)
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    C = np.asarray(point_covariances, np.float64).reshape(-1, 3, 3)
    if len(X) < 4:
        return None
    # a point whose covariance the map cannot give (one observation left, e.g. a COLMAP
    # model's point whose other images are not keyframes) counts as PnP counts every point
    C = np.where(np.all(np.isfinite(C), axis=(1, 2))[:, None, None], C, 0.0)
    # the residuals' covariances (N, 2, 2) at the start (the pose moves by far less than would
    # change how a point's uncertainty projects), as their Cholesky factors S = L L^T: the
    # residuals and Jacobians whitened by L^-1 weigh each by S^-1
    _, A = pose_jacobians(camera, cam_from_world, X)
    S = (A @ C) @ A.transpose(0, 2, 1)
    l00 = np.sqrt(S[:, 0, 0] + noise_px**2)
    l10 = S[:, 1, 0] / l00
    l11 = np.sqrt(S[:, 1, 1] + noise_px**2 - l10**2)
    good = np.isfinite(l00) & np.isfinite(l10) & np.isfinite(l11) & (l11 > 0)
    X, kp, l00, l10, l11 = X[good], kp[good], l00[good, None], l10[good, None], l11[good, None]
    c2 = float(cauchy_sigma) ** 2

    def normal_equations(pose):
        J, _ = pose_jacobians(camera, pose, X)
        r = camera.project(pose.transform(X)) - kp
        ok = np.all(np.isfinite(r), axis=1) & np.all(np.isfinite(J), axis=(1, 2))
        J, r = J[ok], r[ok]
        y0 = r[:, :1] / l00[ok]
        y1 = (r[:, 1:] - l10[ok] * y0) / l11[ok]
        J0 = J[:, 0] / l00[ok]
        J1 = (J[:, 1] - l10[ok] * J0) / l11[ok]
        w = 1.0 / (1.0 + (y0**2 + y1**2) / c2)  # (n, 1) Cauchy on m^2 = r^T S^-1 r
        H = J0.T @ (J0 * w) + J1.T @ (J1 * w)
        g = J0.T @ (y0 * w)[:, 0] + J1.T @ (y1 * w)[:, 0]
        return H, g, int(ok.sum())

    pose = cam_from_world
    H, g, used = normal_equations(pose)
    for _ in range(iterations):
        if used < 4:
            return None
        try:
            step = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        pose = Pose(_exp_so3(step[:3]) @ pose.R, pose.t + step[3:])
        if step @ H @ step < CONVERGED_STEP**2:  # the step is a small fraction of a standard deviation
            break
        H, g, used = normal_equations(pose)
    return pose if np.all(np.isfinite(pose.t)) and np.all(np.isfinite(pose.R)) else None


def _exp_so3(w: np.ndarray) -> np.ndarray:
    """The rotation matrix of rotation vector ``w`` (3,) radians (Rodrigues' formula)."""
    theta = float(np.linalg.norm(w))
    K = np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])
    if theta < 1e-8:
        return np.eye(3) + K + 0.5 * (K @ K)
    return np.eye(3) + np.sin(theta) / theta * K + (1.0 - np.cos(theta)) / theta**2 * (K @ K)


def acceptance_problems(pnp: PnPResult, num_matches: int, conf) -> list[str]:
    """Why a PnP pose must not be trusted, by the localization thresholds; empty when it passes.

    Args:
        pnp: the PnP result.
        num_matches: the 2D-3D matches it was solved from.
        conf: a :class:`~global_loc.config.LocalizationConf` (``min_inliers``,
            ``min_inlier_ratio``, ``max_position_std_m``, ``max_rotation_std_deg``).
    Returns:
        One sentence per failed check, e.g. ``"7 inliers < min_inliers 15"``.
    """
    problems = []
    ratio = pnp.num_inliers / max(num_matches, 1)
    if pnp.num_inliers < conf.min_inliers:
        problems.append(f"{pnp.num_inliers} inliers < min_inliers {conf.min_inliers}")
    if ratio < conf.min_inlier_ratio:
        problems.append(f"inlier ratio {ratio:.3f} < min_inlier_ratio {conf.min_inlier_ratio}")
    if pnp.covariance is not None and (conf.max_position_std_m > 0 or conf.max_rotation_std_deg > 0):
        cov_world = world_from_cam_covariance(pnp.cam_from_world, pnp.covariance)[:3, :3]
        pos_std = float(np.sqrt(max(np.linalg.eigvalsh(cov_world).max(), 0.0)))
        rot_std = float(np.degrees(np.sqrt(max(np.linalg.eigvalsh(pnp.covariance[:3, :3]).max(), 0.0))))
        if conf.max_position_std_m > 0 and pos_std > conf.max_position_std_m:
            problems.append(f"position std {pos_std:.3f} m > max_position_std_m {conf.max_position_std_m}")
        if conf.max_rotation_std_deg > 0 and rot_std > conf.max_rotation_std_deg:
            problems.append(f"rotation std {rot_std:.3f} deg > max_rotation_std_deg {conf.max_rotation_std_deg}")
    return problems
