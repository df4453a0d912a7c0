"""Place-recognition evaluation: recall@N of the keyframes a query retrieved.

The measure of NetVLAD (Arandjelovic et al., CVPR 2016) and hierarchical localization
(Sarlin et al., CoRL 2018): a query is recalled at N when at least one of its N first
retrieved keyframes is a *positive*, a keyframe that sees the same place. Here a positive is a
keyframe whose camera centre lies within ``max_distance_m`` of the query's true centre and
whose optical axis is within ``max_angle_deg`` of the query's (the distance bound of the
Pittsburgh and Tokyo benchmarks, plus a viewing-direction bound, since a camera turned away
from the same spot sees another place). Queries without any positive in the map cannot be
recalled by any retrieval; they are counted apart, not as failures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..geometry.transforms import Pose

DEFAULT_NS: tuple[int, ...] = (1, 5, 10, 20)


def parse_positive(text: str) -> tuple[float, float]:
    """``"METRES,DEGREES"`` -> ``(max_distance_m, max_angle_deg)``.

    Raises:
        InputError: not two positive numbers.
    """
    try:
        m, d = (float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"positive bound {text!r} must be METRES,DEGREES, e.g. 0.25,15") from None
    if not (m > 0 and d > 0):
        raise InputError(f"positive bound {text!r}: both numbers must be positive")
    return m, d


def positives(query: Pose, keyframes: Sequence[Pose], max_distance_m: float, max_angle_deg: float) -> np.ndarray:
    """Which keyframes see the place of ``query``.

    Args:
        query: the query's true ``cam_from_world``.
        keyframes: the keyframes' ``cam_from_world`` (K of them).
        max_distance_m: largest distance between camera centres, metres.
        max_angle_deg: largest angle between optical axes, degrees.
    Returns:
        (K,) bool.
    """
    if len(keyframes) == 0:
        return np.zeros(0, bool)
    centres = np.array([k.center for k in keyframes]).reshape(-1, 3)
    axes = np.array([k.R[2] for k in keyframes]).reshape(-1, 3)  # optical axis in the world: R^T e_z
    near = np.linalg.norm(centres - query.center, axis=1) <= max_distance_m
    aligned = axes @ query.R[2] >= np.cos(np.radians(max_angle_deg))
    return near & aligned


@dataclass
class RetrievalReport:
    """Attributes:
    ns: the N of recall@N, ascending.
    recall: fraction of the queries with a positive that have one in their N first retrieved,
        per N; None where some query retrieved fewer than N keyframes while the map has more
        (localize with ``--set localization.num_retrieved=N`` to measure it).
    hits: query -> rank (1-based) of its first positive among the retrieved, 0 when none.
    num_positives: query -> number of positives in the map.
    max_distance_m, max_angle_deg: the positive bounds.
    not_retrieved: queries of the ground truth with no retrieval in the log (not global
        queries: tracked frames; or absent), left out.
    """

    ns: list[int]
    recall: list[float | None]
    hits: dict[str, int]
    num_positives: dict[str, int]
    max_distance_m: float
    max_angle_deg: float
    not_retrieved: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> list[str]:
        """Queries with at least one positive: those recall is measured on."""
        return [q for q, n in self.num_positives.items() if n > 0]

    def to_dict(self) -> dict:
        return {
            "positive": {"max_distance_m": self.max_distance_m, "max_angle_deg": self.max_angle_deg},
            "num_queries": len(self.hits),
            "num_with_positives": len(self.evaluated),
            "recall": {f"@{n}": r for n, r in zip(self.ns, self.recall)},
            "first_positive_rank": dict(self.hits),
            "num_positives": dict(self.num_positives),
            "not_retrieved": list(self.not_retrieved),
        }

    def format(self) -> str:
        """A short human-readable report with a markdown table."""
        ev = self.evaluated
        lines = [f"place recognition: {len(self.hits)} queries with a retrieval, {len(ev)} with a positive "
                 f"keyframe (within {self.max_distance_m:g} m and {self.max_angle_deg:g} deg)"]
        if self.not_retrieved:
            lines.append(f"{len(self.not_retrieved)} queries without a retrieval in the log (tracked frames "
                         "or absent) are left out")
        lines += ["| " + " | ".join(f"recall@{n}" for n in self.ns) + " |", "|" + "---:|" * len(self.ns),
                  "| " + " | ".join("-" if r is None else f"{100 * r:.1f} %" for r in self.recall) + " |"]
        missed = [q for q in ev if self.hits[q] == 0]
        if missed:
            lines.append("no positive retrieved: " + ", ".join(missed[:20]) + (" ..." if len(missed) > 20 else ""))
        return "\n".join(lines)


def evaluate_retrieval(
    retrieved: dict[str, Sequence[str]],
    query_poses: dict[str, Pose],
    keyframe_poses: dict[str, Pose],
    max_distance_m: float = 0.25,
    max_angle_deg: float = 15.0,
    ns: Sequence[int] = DEFAULT_NS,
) -> RetrievalReport:
    """recall@N of retrieved keyframes against positives from the true poses.

    Args:
        retrieved: query -> names of the keyframes it retrieved, best first.
        query_poses: query -> true ``cam_from_world``; the queries evaluated are those present
            in both ``retrieved`` and here.
        keyframe_poses: keyframe name -> ``cam_from_world`` (every keyframe of the map).
        max_distance_m, max_angle_deg: the positive bounds (:func:`positives`).
        ns: the N of recall@N.
    Returns:
        A :class:`RetrievalReport`.
    Raises:
        InputError: no query in common, or a retrieved keyframe that ``keyframe_poses`` lacks
            (a log from another map).
    """
    names = list(keyframe_poses)
    poses = [keyframe_poses[n] for n in names]
    queries = [q for q in query_poses if q in retrieved and len(retrieved[q]) > 0]
    if not queries:
        raise InputError("no query of the ground truth has a retrieval in the log: are the log and the "
                         "ground truth of the same queries (names, or stamps for bags)?")
    hits, npos = {}, {}
    shortest = min(len(retrieved[q]) for q in queries)
    for q in queries:
        pos = positives(query_poses[q], poses, max_distance_m, max_angle_deg)
        positive_names = {n for n, p in zip(names, pos) if p}
        unknown = [k for k in retrieved[q] if k not in keyframe_poses]
        if unknown:
            raise InputError(f"query {q} retrieved keyframe {unknown[0]!r}, which the map does not have: "
                             "was the log written against another map?")
        npos[q] = len(positive_names)
        hits[q] = next((i + 1 for i, k in enumerate(retrieved[q]) if k in positive_names), 0)
    ev = [q for q in queries if npos[q] > 0]
    ns = sorted(int(n) for n in ns)
    recall = []
    for n in ns:
        if n > shortest and shortest < len(names):
            recall.append(None)
        else:
            recall.append(float(np.mean([0 < hits[q] <= n for q in ev])) if ev else float("nan"))
    not_retrieved = [q for q in query_poses if q not in queries]
    return RetrievalReport(ns, recall, hits, npos, max_distance_m, max_angle_deg, not_retrieved)


def plot_recall(path, reports: dict[str, RetrievalReport]) -> None:
    """Save recall@N curves (one per labelled report) as a PNG at ``path`` (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, rep in reports.items():
        pts = [(n, r) for n, r in zip(rep.ns, rep.recall) if r is not None]
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=label)
    ax.set_xlabel("N (keyframes retrieved)")
    ax.set_ylabel("recall@N (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
