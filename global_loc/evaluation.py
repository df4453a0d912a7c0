"""Accuracy and timing: pose errors, recall at (metres, degrees) thresholds, stage timings, and
whether the reported covariances agree with the errors.

Pose errors follow the visual localization benchmark (Sattler et al., CVPR 2018): the
distance between estimated and true camera centres, and the angle of the relative rotation.
A query that was not localized counts as a failure at every threshold.

Consistency (as in the NEES test of estimation theory, Bar-Shalom, Li and Kirubarajan,
"Estimation with Applications to Tracking and Navigation", 2001, section 5.4): for each
localized query with a covariance, the squared Mahalanobis distance of its 6-DoF error; with a
right covariance and Gaussian errors it follows a chi-square law with 6 degrees of freedom, so
68.3 / 95.4 / 99.7 % of the queries fall inside its matching quantiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import InputError
from .geometry.transforms import Pose, pose_error

DEFAULT_THRESHOLDS: tuple[tuple[float, float], ...] = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


def _first(items: list[str], n: int = 10) -> str:
    """The first ``n`` items joined, and how many more (a long run's every failure would bury
    the report; the log has them all)."""
    return ", ".join(items[:n]) + (f", and {len(items) - n} more (see the localization log)" if len(items) > n else "")


def parse_thresholds(items: Sequence[str]) -> list[tuple[float, float]]:
    """``["0.25,2", "0.5,5"]`` -> ``[(0.25, 2.0), (0.5, 5.0)]`` (metres, degrees).

    Raises:
        InputError: for an item that is not two positive numbers separated by a comma.
    """
    out = []
    for item in items:
        parts = item.split(",")
        try:
            m, d = (float(p) for p in parts)
        except ValueError:
            raise InputError(
                f"threshold '{item}' must be 'metres,degrees', e.g. 0.25,2"
            ) from None
        if m <= 0 or d <= 0:
            raise InputError(f"threshold '{item}' must be positive")
        out.append((m, d))
    return out


#: the probabilities of the 1, 2 and 3 sigma intervals of a Gaussian
SIGMA_LEVELS = (0.6827, 0.9545, 0.9973)


def mahalanobis_distance(estimate: Pose, truth: Pose, covariance: np.ndarray) -> float:
    """Mahalanobis distance of the error of ``estimate`` under its ``covariance``.

    Args:
        estimate, truth: ``cam_from_world`` poses.
        covariance: (6, 6) covariance of ``estimate`` in the convention of
            :attr:`~global_loc.types.LocalizationResult.covariance`: over ``[dtheta, dt]`` with
            ``R_true = exp([dtheta]x) R`` (radians) and ``t_true = t + dt`` (metres).
    Returns:
        ``sqrt(e^T C^-1 e)`` for ``e = [dtheta, dt]``; inf when the covariance is singular.
    """
    from scipy.spatial.transform import Rotation

    dtheta = Rotation.from_matrix(truth.R @ estimate.R.T).as_rotvec()
    e = np.concatenate([dtheta, truth.t - estimate.t])
    try:
        d2 = float(e @ np.linalg.solve(np.asarray(covariance, np.float64), e))
    except np.linalg.LinAlgError:
        return float("inf")
    return float(np.sqrt(max(d2, 0.0)))


def consistency(distances: Sequence[float], dof: int = 6) -> dict:
    """How well Mahalanobis distances agree with their covariances.

    Args:
        distances: Mahalanobis distances of the errors (see :func:`mahalanobis_distance`).
        dof: degrees of freedom of the errors.
    Returns:
        ``{"count", "within": {level: fraction inside the chi-square quantile of that
        probability}, "max_distance", "max_sigmas", "scale_95", "scale_5sigma"}``;
        ``max_sigmas`` is the largest distance as a one-dimensional Gaussian's number of sigmas
        of the same probability; ``scale_95`` the factor on the standard deviations (the square
        root of ``localization.covariance_scale``) that would put 95 % of these errors inside the
        2-sigma (95.45 %) bound, ``scale_5sigma`` the one that would leave none beyond 5 sigma.
    """
    from scipy.special import ndtri_exp
    from scipy.stats import chi2

    d = np.asarray(list(distances), np.float64)
    out = {"count": int(len(d)), "within": {}, "max_distance": float("nan"), "max_sigmas": float("nan"),
           "scale_95": float("nan"), "scale_5sigma": float("nan")}
    if len(d) == 0:
        return out
    out["scale_95"] = float(np.quantile(d, 0.95) / np.sqrt(chi2.ppf(SIGMA_LEVELS[1], dof)))
    out["scale_5sigma"] = float(d.max() / np.sqrt(chi2.isf(2 * 2.866515718791939e-07, dof)))
    for p in SIGMA_LEVELS:
        out["within"][p] = float(np.mean(d**2 <= chi2.ppf(p, dof)))
    out["max_distance"] = float(d.max())
    # the sigmas z of a 1-D Gaussian with the same two-sided tail probability p:
    # Phi(-z) = p / 2, solved in logarithms so that far tails (p below 1e-300) stay finite
    out["max_sigmas"] = float(-ndtri_exp(_chi2_logsf(float(d.max()) ** 2, dof) - np.log(2.0)))
    return out


def _chi2_logsf(x: float, dof: int) -> float:
    """log P(X > x) for X ~ chi-square(dof), finite far into the tail: for even ``dof`` the
    closed form ``exp(-x/2) sum_{i < dof/2} (x/2)^i / i!``, in logarithms."""
    from scipy.special import gammaln, logsumexp
    from scipy.stats import chi2

    if dof % 2 or x <= 0:
        return float(chi2.logsf(x, dof))
    y, i = x / 2.0, np.arange(dof // 2)
    return float(-y + logsumexp(i * np.log(y) - gammaln(i + 1)))


@dataclass
class EvaluationReport:
    """Attributes:
    errors: query name -> ``(position_error_m, rotation_error_deg)``; ``(inf, inf)`` when
        the query was not localized.
    thresholds: ``(metres, degrees)`` pairs.
    recall: fraction of queries within each threshold, same order.
    status: query name -> status for queries that were not localized, where known.
    mahalanobis: query name -> Mahalanobis distance of its error under its reported
        covariance, for the localized queries that have one.
    """

    errors: dict[str, tuple[float, float]]
    thresholds: list[tuple[float, float]]
    recall: list[float]
    status: dict[str, str] = field(default_factory=dict)
    mahalanobis: dict[str, float] = field(default_factory=dict)

    @property
    def num_queries(self) -> int:
        return len(self.errors)

    @property
    def localized(self) -> list[str]:
        return [n for n, (dt, _) in self.errors.items() if np.isfinite(dt)]

    @property
    def failed(self) -> list[str]:
        return [n for n, (dt, _) in self.errors.items() if not np.isfinite(dt)]

    def median_errors(self) -> tuple[float, float]:
        """Median ``(metres, degrees)`` over the localized queries (NaN when none)."""
        e = np.array([self.errors[n] for n in self.localized]).reshape(-1, 2)
        if len(e) == 0:
            return float("nan"), float("nan")
        return float(np.median(e[:, 0])), float(np.median(e[:, 1]))

    def to_dict(self) -> dict:
        dt, dr = self.median_errors()
        return {
            "num_queries": self.num_queries,
            "num_localized": len(self.localized),
            "recall": {f"{m}m,{d}deg": r for (m, d), r in zip(self.thresholds, self.recall)},
            "median_position_error_m": dt,
            "median_rotation_error_deg": dr,
            "failed": {n: self.status.get(n, "not localized") for n in self.failed},
            "errors": {n: list(e) for n, e in self.errors.items()},
            **({"consistency": {**consistency(self.mahalanobis.values()), "mahalanobis": dict(self.mahalanobis)}}
               if self.mahalanobis else {}),
        }

    def format(self) -> str:
        """A short human-readable report."""
        dt, dr = self.median_errors()
        lines = [f"queries: {self.num_queries}, localized: {len(self.localized)}"]
        for (m, d), r in zip(self.thresholds, self.recall):
            lines.append(f"recall @ ({m:g} m, {d:g} deg): {100 * r:.1f} %")
        if self.localized:
            lines.append(f"median error (localized): {dt * 1e3:.3f} mm, {dr:.4f} deg")
        if self.failed:
            lines.append(f"not localized ({len(self.failed)}): " + _first(
                [f"{n} ({self.status.get(n, 'no pose')})" for n in self.failed]))
        worst = max(self.thresholds, default=None)
        if worst is not None:
            off = [n for n in self.localized
                   if self.errors[n][0] > worst[0] or self.errors[n][1] > worst[1]]
            if off:
                lines.append(f"localized beyond ({worst[0]:g} m, {worst[1]:g} deg) ({len(off)}): " + _first(
                    [f"{n} ({self.errors[n][0]:.3f} m, {self.errors[n][1]:.2f} deg)" for n in off]))
        if self.mahalanobis:
            c = consistency(self.mahalanobis.values())
            worst_q = max(self.mahalanobis, key=self.mahalanobis.get)
            lines += [f"covariance consistency ({c['count']} localized queries with a covariance; 6-DoF "
                      "Mahalanobis distance of the error against chi-square(6)):",
                      "| bound | expected | observed |", "|---|---:|---:|"]
            lines += [f"| {k} sigma | {100 * p:.1f} % | {100 * c['within'][p]:.1f} % |"
                      for k, p in enumerate(SIGMA_LEVELS, 1)]
            lines.append(f"largest: {worst_q}, distance {c['max_distance']:.2f} ({c['max_sigmas']:.1f} sigma)")
            lines.append(f"standard deviations x {c['scale_95']:.2f} would put 95 % of these errors inside the "
                         f"2-sigma bound, x {c['scale_5sigma']:.2f} none beyond 5 sigma "
                         "(localization.covariance_scale, and relpose.covariance_scale for localized_relative "
                         "poses, is the square of such a factor)")
        return "\n".join(lines)


def evaluate_poses(
    estimates: dict[str, Pose],
    ground_truth: dict[str, Pose],
    queries: Iterable[str] | None = None,
    thresholds: Sequence[tuple[float, float]] = DEFAULT_THRESHOLDS,
    status: dict[str, str] | None = None,
    covariances: dict[str, np.ndarray] | None = None,
) -> EvaluationReport:
    """Compare estimated ``cam_from_world`` poses with the ground truth.

    Args:
        estimates: query name -> estimated cam_from_world (localized queries only).
        ground_truth: name -> true cam_from_world.
        queries: the queries that were asked (default: the estimated ones); those without an
            estimate count as failures.
        thresholds: ``(metres, degrees)`` pairs.
        status: query name -> status text of the queries that were not localized.
        covariances: query name -> (6, 6) covariance of its estimate (the JSON log's
            ``covariance``), for the consistency report (:func:`consistency`).
    Raises:
        InputError: a query without ground truth.
    """
    queries = list(estimates) if queries is None else list(queries)
    missing = [q for q in queries if q not in ground_truth]
    if missing:
        raise InputError(
            f"{len(missing)} queries have no ground-truth pose: {', '.join(missing[:5])}; "
            "check the --gt file"
        )
    errors = {}
    for q in queries:
        errors[q] = pose_error(estimates[q], ground_truth[q]) if q in estimates else (np.inf, np.inf)
    e = np.array(list(errors.values())).reshape(-1, 2)
    recall = [
        float(np.mean((e[:, 0] <= m) & (e[:, 1] <= d))) if len(e) else 0.0 for m, d in thresholds
    ]
    maha = {q: mahalanobis_distance(estimates[q], ground_truth[q], c)
            for q, c in (covariances or {}).items() if q in estimates and q in ground_truth}
    return EvaluationReport(errors, list(thresholds), recall, dict(status or {}), maha)


def timing_table(timings: Sequence[dict[str, float]], stages: Sequence[str] | None = None) -> dict[str, dict]:
    """Median and 90th percentile of each stage over many queries.

    Args:
        timings: per-query ``stage -> seconds``.
        stages: the stages to report, in order (default: all seen, in first-seen order).
    Returns:
        ``stage -> {"median_ms", "p90_ms", "count"}``.
    """
    if stages is None:
        stages = list(dict.fromkeys(k for t in timings for k in t))
    out = {}
    for s in stages:
        v = np.array([t[s] for t in timings if s in t], np.float64) * 1e3
        out[s] = {
            "median_ms": float(np.median(v)) if len(v) else float("nan"),
            "p90_ms": float(np.percentile(v, 90)) if len(v) else float("nan"),
            "count": int(len(v)),
        }
    return out


def format_timing_table(table: dict[str, dict]) -> str:
    """A markdown table of :func:`timing_table`'s output."""
    lines = ["| stage | median (ms) | p90 (ms) |", "|---|---:|---:|"]
    for s, v in table.items():
        lines.append(f"| {s} | {v['median_ms']:.1f} | {v['p90_ms']:.1f} |")
    return "\n".join(lines)


def trajectory_errors(
    estimates: Sequence[tuple[float, Pose]],
    ground_truth: Sequence[tuple[float, Pose]],
    stamps: Iterable[float] | None = None,
    max_dt: float = 1e-3,
) -> dict[str, tuple[float, float]]:
    """Errors of a TUM-style trajectory (``world_from_cam`` poses by stamp).

    Args:
        estimates, ground_truth: ``(stamp seconds, world_from_cam)`` pairs.
        stamps: the frames that were asked (default: the ground truth's); a frame without an
            estimate within ``max_dt`` gets ``(inf, inf)``.
        max_dt: association tolerance, seconds.
    Returns:
        ``"%.9f" % stamp -> (position_error_m, rotation_error_deg)``.
    Raises:
        InputError: an asked frame without ground truth within ``max_dt``.
    """
    gt_t = np.array([t for t, _ in ground_truth])
    order = np.argsort(gt_t)
    gt_t = gt_t[order]
    gt_p = [ground_truth[i][1] for i in order]
    est = sorted(estimates, key=lambda e: e[0])
    est_t = np.array([t for t, _ in est])

    def nearest(ts, t):
        if len(ts) == 0:
            return None
        i = int(np.clip(np.searchsorted(ts, t), 1, len(ts) - 1)) if len(ts) > 1 else 0
        j = i - 1 if i > 0 and abs(ts[i - 1] - t) <= abs(ts[i] - t) else i
        return j if abs(ts[j] - t) <= max_dt else None

    out = {}
    for t in (gt_t if stamps is None else stamps):
        g = nearest(gt_t, t)
        if g is None:
            raise InputError(f"no ground-truth pose within {max_dt} s of the frame at {t:.9f}")
        e = nearest(est_t, t)
        key = f"{t:.9f}"
        if e is None:
            out[key] = (np.inf, np.inf)
        else:
            out[key] = pose_error(est[e][1].inverse(), gt_p[g].inverse())
    return out


def evaluate_trajectory(
    estimates, ground_truth, stamps=None, thresholds=DEFAULT_THRESHOLDS, max_dt: float = 1e-3,
    status: dict[str, str] | None = None, covariances: dict[str, np.ndarray] | None = None,
) -> EvaluationReport:
    """:func:`evaluate_poses` for TUM-style trajectories, frames named by their stamps.

    ``covariances``: ``"%.9f" % stamp`` -> (6, 6) covariance of that frame's ``cam_from_world``
    (the JSON log's ``covariance``), for the consistency report.
    """
    errors = trajectory_errors(estimates, ground_truth, stamps, max_dt)
    e = np.array(list(errors.values())).reshape(-1, 2)
    recall = [float(np.mean((e[:, 0] <= m) & (e[:, 1] <= d))) if len(e) else 0.0 for m, d in thresholds]
    maha = {}
    if covariances:
        est = _by_stamp(estimates)
        gt = _by_stamp(ground_truth)
        for key, c in covariances.items():
            t = float(key)
            pe, pg = est(t, max_dt), gt(t, max_dt)
            if pe is not None and pg is not None and np.isfinite(errors.get(key, (np.inf,))[0]):
                maha[key] = mahalanobis_distance(pe.inverse(), pg.inverse(), c)
    return EvaluationReport(errors, list(thresholds), recall, dict(status or {}), maha)


def _by_stamp(poses: Sequence[tuple[float, Pose]]):
    """``f(t, max_dt)``: the pose stamped nearest ``t``, or None beyond ``max_dt``."""
    items = sorted(poses, key=lambda e: e[0])
    ts = np.array([t for t, _ in items])

    def f(t: float, max_dt: float):
        if len(ts) == 0:
            return None
        i = int(np.argmin(np.abs(ts - t)))
        return items[i][1] if abs(ts[i] - t) <= max_dt else None

    return f


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files, no screen).

    Raises:
        InputError: when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plotting needs matplotlib: pip install -e '.[plot]'") from None
    return plt


def _plot_errors(ax, x: np.ndarray, dt: np.ndarray, report: EvaluationReport, xlabel: str, floor: float,
                 ms: int) -> None:
    """Position errors over ``x`` on a log axis (not localized: red crosses at ``floor``), the
    first threshold as a line, the recall in the title."""
    ok = np.isfinite(dt)
    ax.semilogy(x[ok], np.maximum(dt[ok], floor), ".", color="tab:blue", ms=ms, label="position error")
    if (~ok).any():
        ax.plot(x[~ok], np.full((~ok).sum(), floor), "x", color="tab:red", label="not localized")
    for m, _ in report.thresholds[:1]:
        ax.axhline(m, color="0.5", ls="--", lw=1, label=f"{m:g} m")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("error (m)")
    ax.legend(loc="best")
    r = ", ".join(f"{100 * r:.1f}% @ ({m:g} m, {d:g}°)" for (m, d), r in zip(report.thresholds, report.recall))
    ax.set_title(f"recall {r}", fontsize=9)


def plot_trajectories(path, ground_truth, estimates, report: EvaluationReport | None = None,
                      title: str = "") -> None:
    """Save a PNG: the ground-truth and estimated camera positions seen from above (x-y), and
    the position error over time.

    Raises:
        InputError: when matplotlib is not installed (``pip install matplotlib``).
    """
    plt = _pyplot()
    g = np.array([p.t for _, p in sorted(ground_truth, key=lambda e: e[0])]).reshape(-1, 3)
    e = np.array([p.t for _, p in sorted(estimates, key=lambda e: e[0])]).reshape(-1, 3)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.4, 1]})
    ax = axes[0]
    ax.plot(g[:, 0], g[:, 1], "-", color="0.3", lw=1.5, label="ground truth")
    if len(e):
        ax.plot(e[:, 0], e[:, 1], ".", color="tab:orange", ms=4, label="localized")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="best")
    ax.set_title(title or "camera trajectory, top view")
    ax = axes[1]
    if report is not None and report.errors:
        t = np.array([float(k) for k in report.errors])
        _plot_errors(ax, t - t.min(), np.array([v[0] for v in report.errors.values()]), report, "time (s)", 1e-4, 4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_queries(path, ground_truth: dict[str, Pose], estimates: dict[str, Pose], report: EvaluationReport,
                 title: str = "") -> None:
    """Save a PNG for image-folder results: the true and estimated camera centres on the two
    world axes along which the true ones spread most (each estimate joined to its truth), and each query's position error, in name
    order (not localized: a red cross).

    Args:
        ground_truth, estimates: name -> cam_from_world.

    Raises:
        InputError: when matplotlib is not installed.
    """
    plt = _pyplot()
    names = sorted(report.errors)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1.4, 1]})
    ax = axes[0]
    g = np.array([ground_truth[n].inverse().t for n in names]).reshape(-1, 3)
    i, j = sorted(np.argsort(-g.var(axis=0))[:2]) if len(g) > 1 else (0, 1)  # the two axes of most spread
    ax.plot(g[:, i], g[:, j], "o", color="0.3", ms=4, label="ground truth")
    loc = [n for n in names if n in estimates]
    if loc:
        e = np.array([estimates[n].inverse().t for n in loc])
        t = np.array([ground_truth[n].inverse().t for n in loc])
        for a, b in zip(t, e):
            ax.plot([a[i], b[i]], [a[j], b[j]], "-", color="tab:orange", lw=0.8)
        ax.plot(e[:, i], e[:, j], ".", color="tab:orange", ms=5, label="localized")
    ax.set_aspect("equal")
    ax.set_xlabel("xyz"[i])
    ax.set_ylabel("xyz"[j])
    ax.legend(loc="best")
    ax.set_title(title or "camera centres")
    ax = axes[1]
    _plot_errors(ax, np.arange(len(names)), np.array([report.errors[n][0] for n in names], np.float64), report,
                 "query (name order)", 1e-5, 5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class Alignment:
    """A similarity transform that takes estimated poses into the ground truth's frame.

    Attributes:
        scale: ground-truth units per estimate unit.
        tgt_from_src: the ``pycolmap.Sim3d`` (ground truth from estimate).
        names: the queries it was fitted on.
        residuals_m: (N,) distance of each aligned camera centre to the true one, in the
            ground truth's units (metres), in ``names`` order.
    """

    scale: float
    tgt_from_src: object
    names: list[str]
    residuals_m: np.ndarray

    def apply(self, cam_from_world: Pose) -> Pose:
        """An estimate's ``cam_from_world`` in the ground truth's frame."""
        return Pose.from_pycolmap(self.tgt_from_src.transform_camera_world(cam_from_world.to_pycolmap()))

    def format(self) -> str:
        r = self.residuals_m
        return (f"aligned by a similarity over {len(self.names)} localized queries (scale {self.scale:.6g}): "
                f"camera centre residuals median {np.median(r):.4g}, max {r.max():.4g} (ground-truth units)")


def align_similarity(estimates: dict[str, Pose], ground_truth: dict[str, Pose]) -> Alignment:
    """The similarity transform (Umeyama's least squares, pycolmap's ``estimate_sim3d``) that
    best takes the estimated camera centres onto the true ones, over every query both have: for
    maps from structure from motion, whose frame and scale are COLMAP's.

    Raises:
        InputError: fewer than 3 queries in common, or centres that determine no transform.
    """
    import pycolmap

    names = [n for n in estimates if n in ground_truth]
    if len(names) < 3:
        raise InputError(f"a similarity alignment needs at least 3 localized queries with ground truth, got "
                         f"{len(names)}")
    src = np.array([estimates[n].inverse().t for n in names])
    tgt = np.array([ground_truth[n].inverse().t for n in names])
    sim = pycolmap.estimate_sim3d(src, tgt)
    if sim is None:
        raise InputError("the localized camera centres determine no similarity transform (collinear?)")
    aligned = np.array([sim.transform_camera_world(estimates[n].to_pycolmap()).inverse().translation for n in names])
    return Alignment(float(sim.scale), sim, names, np.linalg.norm(aligned - tgt, axis=1))
