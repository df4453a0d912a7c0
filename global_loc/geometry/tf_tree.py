"""A transform tree over time, as tf2's ``BufferCore``, without ROS.

Each edge ``parent -> child`` holds ``parent_from_child`` either once (static, valid at every
time, like ``/tf_static``) or as a time series (like ``/tf``) that is interpolated between
samples: spherical for the rotation, linear for the translation. A lookup walks the tree
through the common ancestor, as tf2 does, so ``map -> odom -> base_link -> camera_optical``
chains work.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..errors import GlobalLocError
from .transforms import Pose


class TransformError(GlobalLocError, LookupError):
    """A transform that the tree cannot give: unknown frames, no path, or a time outside the
    samples."""


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    poses: list[Pose] = field(default_factory=list)
    _sorted: bool = True

    def add(self, stamp: float, pose: Pose) -> None:
        if self.stamps and stamp < self.stamps[-1]:
            self._sorted = False
        self.stamps.append(float(stamp))
        self.poses.append(pose)

    def sort(self) -> None:
        if not self._sorted:
            order = np.argsort(self.stamps, kind="stable")
            self.stamps = [self.stamps[i] for i in order]
            self.poses = [self.poses[i] for i in order]
            self._sorted = True

    def at(self, stamp: float, tolerance: float, child: str) -> Pose:
        if self.static:
            return self.poses[-1]
        self.sort()
        s = self.stamps
        i = bisect.bisect_left(s, stamp)
        if i < len(s) and s[i] == stamp:
            return self.poses[i]
        if 0 < i < len(s):
            a = (stamp - s[i - 1]) / (s[i] - s[i - 1])
            return self.poses[i - 1].interpolate(self.poses[i], a)
        nearest = 0 if i == 0 else len(s) - 1
        if abs(s[nearest] - stamp) <= tolerance:
            return self.poses[nearest]
        raise TransformError(
            f"no transform {self.parent} -> {child} at t={stamp:.9f}: its samples span "
            f"[{s[0]:.9f}, {s[-1]:.9f}] (tolerance {tolerance} s)"
        )


class TransformBuffer:
    """Transforms between named frames over time.

    Args:
        tolerance: how far (seconds) a lookup may reach outside a dynamic edge's samples, using
            the nearest one.
    """

    def __init__(self, tolerance: float = 0.0):
        self.tolerance = float(tolerance)
        self._edges: dict[str, _Edge] = {}  # child -> edge from its parent

    def add(self, parent: str, child: str, stamp: float, parent_from_child: Pose, static: bool = False) -> None:
        """Record ``parent_from_child`` at ``stamp`` (seconds; ignored for static edges).

        Raises:
            TransformError: when ``child`` already has another parent (tf forbids it) or when
                an edge changes between static and dynamic.
        """
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if parent == child:
            raise TransformError(f"a transform from frame '{parent}' to itself")
        edge = self._edges.get(child)
        if edge is None:
            edge = self._edges[child] = _Edge(parent, static)
        elif edge.parent != parent:
            raise TransformError(
                f"frame '{child}' has two parents, '{edge.parent}' and '{parent}'; a tf tree "
                "allows one"
            )
        elif edge.static != static:
            raise TransformError(f"transform {parent} -> {child} is published both static and dynamic")
        if static:
            edge.stamps, edge.poses = [float(stamp)], [parent_from_child]
        else:
            edge.add(stamp, parent_from_child)

    @property
    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def edges(self) -> list[tuple[str, str, bool, int]]:
        """``(parent, child, static, number of samples)`` of every edge."""
        return [(e.parent, c, e.static, len(e.stamps)) for c, e in sorted(self._edges.items())]

    def _chain(self, frame: str) -> list[str]:
        out = [frame]
        while out[-1] in self._edges:
            out.append(self._edges[out[-1]].parent)
            if len(out) > len(self._edges) + 1:
                raise TransformError(f"the tf tree has a cycle through '{frame}'")
        return out

    def _root_from(self, chain: list[str], stamp: float) -> Pose:
        pose = Pose.identity()
        for child in chain[:-1]:
            edge = self._edges[child]
            pose = edge.at(stamp, self.tolerance, child) * pose
        return pose

    def lookup(self, target: str, source: str, stamp: float) -> Pose:
        """``target_from_source`` at ``stamp`` (seconds).

        Raises:
            TransformError: unknown frame, frames in different trees, or a time that an edge
                on the path does not cover.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return Pose.identity()
        for f in (target, source):
            if f not in self.frames:
                known = ", ".join(sorted(self.frames)) or "none"
                raise TransformError(f"frame '{f}' does not exist in the tf tree (frames: {known})")
        ct, cs = self._chain(target), self._chain(source)
        common = next((f for f in cs if f in ct), None)
        if common is None:
            raise TransformError(
                f"frames '{target}' and '{source}' are not connected: their roots are "
                f"'{ct[-1]}' and '{cs[-1]}'"
            )
        ct = ct[: ct.index(common) + 1]
        cs = cs[: cs.index(common) + 1]
        common_from_source = self._root_from(cs, stamp)
        common_from_target = self._root_from(ct, stamp)
        return common_from_target.inverse() * common_from_source

    def can_transform(self, target: str, source: str, stamp: float) -> bool:
        try:
            self.lookup(target, source, stamp)
            return True
        except TransformError:
            return False
