"""Feature-metric pose refinement: align the query's dense features with the map's.

Sarlin et al., "Back to the Feature: Learning Robust Camera Localization from Pixels to Pose"
(PixLoc), CVPR 2021, and Morlana and Montiel, "Reuse your features: unifying retrieval and
feature-metric alignment" (DRAN), ICRA 2023: starting from the PnP pose, Levenberg-Marquardt
on the 6-DoF pose minimises, level by level from coarse to fine, the robust (Cauchy) sum over
the PnP inliers' 3D points ``X_i`` of ``|| F_q(pi(R X_i + t)) - f_i ||^2``, where ``F_q`` is the
query's feature map of that level sampled bilinearly and ``f_i`` the point's reference feature
stored in the map, plus (unlike PixLoc) a Cauchy term on the same inliers' reprojection errors
``pi(R X_i + t) - u_i``, so that the pose keeps what PnP knew where the features say little.
The refined pose replaces the PnP pose only when it passes the checks of
:meth:`FeatureMetricRefiner.refine` (information in the features, their agreement, cost,
inliers, step size).

Pose update (as the covariance convention of :mod:`global_loc.geometry.covariance`):
``R' = exp([dtheta]x) R``, ``t' = t + dt``, so ``d X_cam / d[dtheta, dt] = [-[R X]x | I]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from .base import FeatureLevel, to_level_pixels

#: Cost of a point that leaves the image (or goes behind the camera), as a multiple of the
#: Cauchy scale: it counts as a residual of 10 scales.
_OUTSIDE_RESIDUAL = 10.0


@dataclass
class RefinementOutcome:
    """What one refinement did.

    Attributes:
        accepted: the refined pose passed the checks and replaces the start.
        reason: why it was not accepted (empty when accepted).
        cam_from_world: the refined pose (the start when nothing was tried).
        start: the start pose (PnP's).
        cost_before, cost_after: the finest level's cost (see :class:`FeatureMetricRefiner`;
            dimensionless) at the start and at the end.
        iterations: LM iterations per level, coarse first.
        num_points: 3D points used (with a reference feature).
        step_rotation_deg, step_translation_m: how far the refined pose is from the start.
        step_sigma: that step's Mahalanobis distance under the start's covariance (NaN without
            one), in standard deviations of a 6-D Gaussian (``sqrt`` of the quadratic form).
        inliers_before, inliers_after: PnP inliers within ``max_error_px`` of their keypoint at
            the start and at the refined pose.
        rmse_before_px, rmse_after_px: their root-mean-square reprojection error.
        agreement: at the refined pose, the median over the points of the cosine similarity
            between the query's finest-level feature and the point's reference (1: identical;
            about 0: unrelated, e.g. a map of another place).
    """

    accepted: bool = False
    reason: str = ""
    cam_from_world: Pose | None = None
    start: Pose | None = None
    cost_before: float = float("nan")
    cost_after: float = float("nan")
    iterations: list[int] = field(default_factory=list)
    num_points: int = 0
    step_rotation_deg: float = 0.0
    step_translation_m: float = 0.0
    step_sigma: float = float("nan")
    inliers_before: int = 0
    inliers_after: int = 0
    rmse_before_px: float = float("nan")
    rmse_after_px: float = float("nan")
    agreement: float = float("nan")

    def to_log(self) -> dict:
        """A JSON-serialisable summary, with the start pose as ``q_wxyz_before``/``t_before``."""
        out = {
            "accepted": bool(self.accepted),
            "reason": self.reason,
            "num_points": int(self.num_points),
            "iterations": [int(i) for i in self.iterations],
            "cost_before": _round(self.cost_before),
            "cost_after": _round(self.cost_after),
            "step_rotation_deg": _round(self.step_rotation_deg),
            "step_translation_m": _round(self.step_translation_m, 7),
            "step_sigma": _round(self.step_sigma),
            "inliers_before": int(self.inliers_before),
            "inliers_after": int(self.inliers_after),
            "rmse_before_px": _round(self.rmse_before_px),
            "rmse_after_px": _round(self.rmse_after_px),
            "agreement": _round(self.agreement, 4),
        }
        if self.start is not None:
            out["q_wxyz_before"] = self.start.q_wxyz.tolist()
            out["t_before"] = self.start.t.tolist()
        return out


def _round(v: float, digits: int = 5):
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


def _apply_update(pose: Pose, delta: np.ndarray) -> Pose:
    R = cv2.Rodrigues(np.asarray(delta[:3], np.float64).reshape(3, 1))[0]
    return Pose(R @ pose.R, pose.t + delta[3:])


@dataclass
class _Terms:
    """Residuals of one pose on one level: features (N, C) and, where keypoints are used,
    reprojections (N, 2); the points' weights (N,); with their Jacobians over ``[dtheta, dt]`` when asked."""

    feat: np.ndarray
    ok: np.ndarray
    weight: np.ndarray
    kp: np.ndarray | None = None
    jac_feat: np.ndarray | None = None
    jac_kp: np.ndarray | None = None


class FeatureMetricRefiner:
    """Levenberg-Marquardt alignment of dense features, coarse to fine.

    The cost of a level is ``mean_i log(1 + |f_i|^2 / c_f^2) + w_k mean_i log(1 + |k_i|^2 / c_k^2)``:
    Cauchy on the feature residuals ``f_i`` and, with ``conf.keypoint_weight`` ``w_k > 0`` and the
    query keypoints given, on the reprojection residuals ``k_i`` of the same inliers (pixels),
    each normalised by its median at the start of the level (``c_f``, ``c_k``). The keypoint
    term keeps what PnP knew: where the features carry little information the pose stays near
    PnP's; where they carry much, they decide.

    Args:
        conf: a :class:`~global_loc.config.RefinementConf`.
    """

    def __init__(self, conf):
        self.conf = conf

    # --- cost ---------------------------------------------------------------------------
    @staticmethod
    def _terms(pose: Pose, level: FeatureLevel, points3D, reference, camera, keypoints, with_jacobian: bool,
               weights=None) -> _Terms:
        rx = points3D @ pose.R.T
        xc = rx + pose.t
        in_front = xc[:, 2] > 1e-9
        pixels = camera.project(xc)
        lp = to_level_pixels(pixels, level.scale)
        if with_jacobian:
            vals, ddx, ddy, ok = level.sample(lp, with_gradient=True)
        else:
            vals, ok = level.sample(lp)
        ok &= in_front
        t = _Terms(vals.astype(np.float64) - reference, ok, np.ones(len(ok)) if weights is None else weights)
        t.feat[~ok] = 0.0
        if keypoints is not None:
            t.kp = np.where(ok[:, None], pixels - keypoints, 0.0)
        if not with_jacobian:
            return t
        j_proj = np.zeros((len(xc), 2, 3))
        if ok.any():
            j_proj[ok] = camera.projection_jacobian(xc[ok], pixels[ok])
        # d pixel / d[dtheta, dt]: a row a of j_proj times -[R X]x is (R X) x a
        j_px = np.concatenate([np.cross(rx[:, None, :], j_proj), j_proj], axis=2)  # (N, 2, 6)
        j_lv = j_px / level.scale
        t.jac_feat = ddx.astype(np.float64)[:, :, None] * j_lv[:, None, 0, :] \
            + ddy.astype(np.float64)[:, :, None] * j_lv[:, None, 1, :]  # (N, C, 6)
        t.jac_feat[~ok] = 0.0
        if keypoints is not None:
            j_px[~ok] = 0.0
            t.jac_kp = j_px
        return t

    def _cost(self, t: _Terms, scale_f: float, scale_k: float) -> float:
        """The level's cost (see the class); a point outside the image or behind the camera
        pays the cost of a residual of 10 scales in each term."""
        if len(t.ok) == 0:
            return float("nan")
        outside = math.log1p(_OUTSIDE_RESIDUAL**2)
        w = t.weight / max(float(t.weight.sum()), 1e-300)
        rho = np.log1p(np.sum(t.feat**2, axis=1) / scale_f**2)
        rho[~t.ok] = outside
        cost = float(w @ rho)
        if t.kp is not None and self.conf.keypoint_weight > 0:
            rho_k = np.log1p(np.sum(t.kp**2, axis=1) / scale_k**2)
            rho_k[~t.ok] = outside
            cost += self.conf.keypoint_weight * float(w @ rho_k)
        return cost

    def _normal_equations(self, t: _Terms, scale_f: float, scale_k: float):
        """Gauss-Newton system of the IRLS weights at ``t``: ``(H (6, 6), g (6,))``."""
        n = max(float(t.weight.sum()), 1e-300)
        w = np.where(t.ok, t.weight / (scale_f**2 + np.sum(t.feat**2, axis=1)), 0.0) / n
        jw = (t.jac_feat * w[:, None, None]).reshape(-1, 6)
        H = jw.T @ t.jac_feat.reshape(-1, 6)
        g = jw.T @ t.feat.reshape(-1)
        if t.kp is not None and self.conf.keypoint_weight > 0:
            wk = np.where(t.ok, t.weight / (scale_k**2 + np.sum(t.kp**2, axis=1)), 0.0) * (self.conf.keypoint_weight / n)
            jkw = (t.jac_kp * wk[:, None, None]).reshape(-1, 6)
            H += jkw.T @ t.jac_kp.reshape(-1, 6)
            g += jkw.T @ t.kp.reshape(-1)
        return H, g

    # --- one level ----------------------------------------------------------------------
    def _optimize_level(self, pose, level, points3D, reference, camera, keypoints, weights, scale_f, scale_k):
        c = self.conf
        t = self._terms(pose, level, points3D, reference, camera, keypoints, True, weights)
        cost = self._cost(t, scale_f, scale_k)
        lam = c.damping
        iters = 0
        for _ in range(c.max_iterations):
            H, g = self._normal_equations(t, scale_f, scale_k)
            improved = False
            while lam <= 1e8:
                try:
                    delta = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
                except np.linalg.LinAlgError:
                    lam *= 10
                    continue
                cand = _apply_update(pose, delta)
                cost_c = self._cost(self._terms(cand, level, points3D, reference, camera, keypoints, False, weights),
                                    scale_f, scale_k)
                if cost_c < cost:
                    improved = True
                    break
                lam *= 10
            iters += 1
            if not improved:
                break
            pose = cand
            rel = (cost - cost_c) / max(cost, 1e-30)
            cost = cost_c
            lam = max(lam / 10, 1e-10)
            t = self._terms(pose, level, points3D, reference, camera, keypoints, True, weights)
            if rel < c.min_relative_decrease:
                break
        return pose, iters

    # --- the whole refinement -------------------------------------------------------------
    def refine(
        self,
        levels: list[FeatureLevel],
        camera: Camera,
        start: Pose,
        points3D: np.ndarray,
        reference: np.ndarray,
        keypoints: np.ndarray | None = None,
        covariance: np.ndarray | None = None,
        max_error_px: float = 8.0,
        point_weights: np.ndarray | None = None,
    ) -> RefinementOutcome:
        """Refine ``start`` by aligning the query's feature pyramid with the points' references.

        Checks, in order (the refined pose replaces ``start`` only when all pass):
        enough points with references inside the image (``min_points``); features that
        determine the pose (a non-singular Gauss-Newton matrix at the finest level); after the
        optimisation, features that agree (``min_agreement``), a finest-level cost no higher
        than at the start, a step within ``max_step_sigma`` of ``covariance``, and with
        ``keypoints`` the PnP inliers kept (``min_inlier_fraction``, ``max_rmse_increase_px``).

        Args:
            levels: the query's pyramid (:meth:`DenseFeatures.extract`), coarse first.
            camera: the query camera.
            start: the PnP pose, ``cam_from_world``.
            points3D: (N, 3) float64 world points (the PnP inliers), metres.
            reference: (N, sum of channels) reference features of those points, levels
                concatenated coarse first (NaN rows: no reference; those points are left out).
            keypoints: (N, 2) their query keypoints, pixels: the keypoint term of the cost
                (``keypoint_weight``) and the inlier check.
            covariance: (6, 6) covariance of ``start`` over ``[dtheta, dt]``: the step check.
            max_error_px: a point is an inlier within this reprojection error.
            point_weights: (N,) float weights of the points in both terms of the cost, e.g.
                the share of their residuals' variance that is not the map point's own
                uncertainty (:meth:`~global_loc.localizer.Localizer` passes
                ``noise^2 / (noise^2 + tr(A cov A^T) / 2)``); None: all 1.
        Returns:
            A :class:`RefinementOutcome`; ``cam_from_world`` is the refined pose only when
            ``accepted``, else the start.
        Raises:
            ValueError: arrays whose shapes disagree.
        """
        c = self.conf
        points3D = np.asarray(points3D, np.float64).reshape(-1, 3)
        reference = np.asarray(reference, np.float64)
        widths = [lv.channels for lv in levels]
        if reference.shape != (len(points3D), sum(widths)):
            raise ValueError(
                f"reference features must be (N={len(points3D)}, {sum(widths)}), got {reference.shape}"
            )
        out = RefinementOutcome(cam_from_world=start, start=start)
        have = np.all(np.isfinite(reference), axis=1)
        if keypoints is not None:
            keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
            if keypoints.shape != (len(points3D), 2):
                raise ValueError(f"keypoints must be (N={len(points3D)}, 2), got {keypoints.shape}")
            out.inliers_before, out.rmse_before_px = _inlier_stats(camera, start, points3D, keypoints, max_error_px)
        if have.sum() > c.max_points:  # keep the spread: every k-th point
            keep = np.zeros(len(points3D), bool)
            keep[np.flatnonzero(have)[:: int(np.ceil(have.sum() / c.max_points))]] = True
            have &= keep
        out.num_points = int(have.sum())
        if out.num_points < c.min_points:
            out.reason = f"{out.num_points} points with reference features < min_points {c.min_points}"
            return out
        pts = points3D[have]
        kps = keypoints[have] if keypoints is not None and c.keypoint_weight > 0 else None
        wts = None if point_weights is None else np.asarray(point_weights, np.float64).reshape(-1)[have]
        refs = np.split(reference[have], np.cumsum(widths)[:-1], axis=1)

        # the finest level decides: its cost scales, the information check, the final cost
        fine, fine_ref = levels[-1], refs[-1]
        t = self._terms(start, fine, pts, fine_ref, camera, kps, True, wts)
        if t.ok.sum() < c.min_points:
            out.reason = f"{int(t.ok.sum())} points project inside the query's features < min_points {c.min_points}"
            return out
        problem = _information_problem(t.jac_feat[t.ok])
        if problem:
            out.reason = problem
            return out

        def scales(terms):
            sf = max(float(np.median(np.linalg.norm(terms.feat[terms.ok], axis=1))), c.min_robust_scale)
            sk = 1.0 if terms.kp is None else max(
                float(np.median(np.linalg.norm(terms.kp[terms.ok], axis=1))), c.min_keypoint_scale_px)
            return sf, sk

        fine_scales = scales(t)
        out.cost_before = self._cost(t, *fine_scales)
        pose = start
        for lv, ref in zip(levels, refs):
            t0 = self._terms(pose, lv, pts, ref, camera, kps, False)
            if t0.ok.sum() < c.min_points:
                out.iterations.append(0)
                continue
            pose, iters = self._optimize_level(pose, lv, pts, ref, camera, kps, wts,
                                               *(fine_scales if lv is fine else scales(t0)))
            out.iterations.append(iters)
        t = self._terms(pose, fine, pts, fine_ref, camera, kps, False, wts)
        out.cost_after = self._cost(t, *fine_scales)
        out.agreement = _agreement(t.feat[t.ok] + fine_ref[t.ok], fine_ref[t.ok])
        step = np.concatenate([
            cv2.Rodrigues(pose.R @ start.R.T)[0].ravel(), pose.t - start.t])
        out.step_rotation_deg = float(np.degrees(np.linalg.norm(step[:3])))
        out.step_translation_m = float(np.linalg.norm(step[3:]))
        if covariance is not None and np.all(np.isfinite(covariance)):
            try:
                out.step_sigma = float(np.sqrt(max(step @ np.linalg.solve(covariance, step), 0.0)))
            except np.linalg.LinAlgError:
                pass
        if keypoints is not None:
            out.inliers_after, out.rmse_after_px = _inlier_stats(camera, pose, points3D, keypoints, max_error_px)

        problems = []
        if not out.agreement >= c.min_agreement:
            problems.append(f"the features agree too little at the refined pose (median cosine "
                            f"{out.agreement:.2f} < min_agreement {c.min_agreement})")
        if not out.cost_after <= out.cost_before:
            problems.append(f"cost rose from {out.cost_before:.4g} to {out.cost_after:.4g}")
        if c.max_step_sigma > 0 and math.isfinite(out.step_sigma) and out.step_sigma > c.max_step_sigma:
            problems.append(f"step of {out.step_sigma:.1f} sigma > max_step_sigma {c.max_step_sigma}")
        if keypoints is not None:
            if out.inliers_after < c.min_inlier_fraction * out.inliers_before:
                problems.append(
                    f"{out.inliers_after} of {out.inliers_before} inliers left "
                    f"< min_inlier_fraction {c.min_inlier_fraction}")
            if out.rmse_after_px > out.rmse_before_px + c.max_rmse_increase_px:
                problems.append(
                    f"inlier reprojection RMSE rose from {out.rmse_before_px:.2f} to {out.rmse_after_px:.2f} px "
                    f"(> max_rmse_increase_px {c.max_rmse_increase_px})")
        if problems:
            out.reason = "; ".join(problems)
            return out
        out.accepted = True
        out.cam_from_world = pose
        return out


def _agreement(query: np.ndarray, reference: np.ndarray) -> float:
    """Median cosine similarity of the rows of two (N, C) arrays (NaN when N is 0)."""
    if len(query) == 0:
        return float("nan")
    num = np.sum(query * reference, axis=1)
    den = np.linalg.norm(query, axis=1) * np.linalg.norm(reference, axis=1)
    return float(np.median(num / np.maximum(den, 1e-12)))


def _inlier_stats(camera: Camera, pose: Pose, points3D, keypoints, max_error_px: float) -> tuple[int, float]:
    err = np.linalg.norm(camera.project(pose.transform(points3D)) - keypoints, axis=1)
    err = np.where(np.isfinite(err), err, np.inf)
    inl = err <= max_error_px
    rmse = float(np.sqrt(np.mean(err[inl] ** 2))) if inl.any() else float("inf")
    return int(inl.sum()), rmse


def _information_problem(jac: np.ndarray) -> str:
    """Why the features cannot determine the pose (empty when they can): no feature gradient
    at the points, or a Gauss-Newton matrix that is singular in some direction."""
    flat = jac.reshape(-1, 6)
    H = flat.T @ flat
    d = np.diag(H)
    if not np.all(np.isfinite(H)) or d.max(initial=0.0) <= 1e-12:
        return "the query's features carry no information at the points (a flat image?)"
    dn = np.sqrt(np.maximum(d, 1e-300))
    eig = np.linalg.eigvalsh(H / np.outer(dn, dn))
    if eig[0] < 1e-8 * eig[-1] or np.any(d <= 1e-12 * d.max()):
        return "the query's features leave the pose undetermined (too little texture at the points)"
    return ""
