"""Accuracy and timing: pose errors, recall at (metres, degrees) thresholds, stage timings.

Pose errors follow the visual localization benchmark (Sattler et al., CVPR 2018): the
distance between estimated and true camera centres, and the angle of the relative rotation.
A query that was not localized counts as a failure at every threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from .errors import InputError
from .geometry.transforms import Pose, pose_error

DEFAULT_THRESHOLDS: tuple[tuple[float, float], ...] = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))


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


@dataclass
class EvaluationReport:
    """Attributes:
    errors: query name -> ``(position_error_m, rotation_error_deg)``; ``(inf, inf)`` when
        the query was not localized.
    thresholds: ``(metres, degrees)`` pairs.
    recall: fraction of queries within each threshold, same order.
    status: query name -> status for queries that were not localized, where known.
    """

    errors: dict[str, tuple[float, float]]
    thresholds: list[tuple[float, float]]
    recall: list[float]
    status: dict[str, str] = field(default_factory=dict)

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
            lines.append("not localized: " + ", ".join(
                f"{n} ({self.status.get(n, 'no pose')})" for n in self.failed
            ))
        worst = max(self.thresholds, default=None)
        if worst is not None:
            off = [n for n in self.localized
                   if self.errors[n][0] > worst[0] or self.errors[n][1] > worst[1]]
            if off:
                lines.append(f"localized beyond ({worst[0]:g} m, {worst[1]:g} deg): " + ", ".join(
                    f"{n} ({self.errors[n][0]:.3f} m, {self.errors[n][1]:.2f} deg)" for n in off))
        return "\n".join(lines)


def evaluate_poses(
    estimates: dict[str, Pose],
    ground_truth: dict[str, Pose],
    queries: Iterable[str] | None = None,
    thresholds: Sequence[tuple[float, float]] = DEFAULT_THRESHOLDS,
    status: dict[str, str] | None = None,
) -> EvaluationReport:
    """Compare estimated ``cam_from_world`` poses with the ground truth.

    Args:
        estimates: query name -> estimated cam_from_world (localized queries only).
        ground_truth: name -> true cam_from_world.
        queries: the queries that were asked (default: the estimated ones); those without an
            estimate count as failures.
        thresholds: ``(metres, degrees)`` pairs.
        status: query name -> status text of the queries that were not localized.
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
    return EvaluationReport(errors, list(thresholds), recall, dict(status or {}))


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
