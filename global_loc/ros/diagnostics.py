"""What a node says on ``/diagnostics``, without ROS.

:class:`Diagnostics` keeps rolling statistics of the frames a localizer handled and the
*problems* it knows of now (a map that did not load, a camera without camera_info, an image
that cannot be decoded, a missing transform). :func:`diagnostic_level` turns both into the
level and message of one ``diagnostic_msgs/DiagnosticStatus``: a problem always names itself
there, so an operator reads *why* the robot has no pose, not only that it has none.

:class:`StreamMonitor` watches the camera topics of a node (images, camera_info, synchronised
pairs) and says when one of them is missing.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

import numpy as np

#: diagnostic levels, in increasing severity (``diagnostic_msgs/DiagnosticStatus``)
LEVELS = ("OK", "WARN", "ERROR", "STALE")
_SEVERITY = {"OK": 0, "STALE": 1, "WARN": 2, "ERROR": 3}


@dataclass
class Problem:
    """A condition that keeps a node from doing its job.

    Attributes:
        level: ``WARN`` or ``ERROR``.
        message: one sentence that says what is wrong and what to do.
        since: ``time.monotonic()`` when it was first reported.
        count: how many times it was reported since.
    """

    level: str
    message: str
    since: float
    count: int = 1


class Diagnostics:
    """Rolling statistics of a localizer, and its current problems, for ``/diagnostics``.

    Thread-safe: the worker thread updates it while a timer publishes it.

    Args:
        window: frames kept for rates, latencies and inlier counts.
    """

    def __init__(self, window: int = 100):
        self._recent: collections.deque = collections.deque(maxlen=window)
        self._lock = threading.Lock()
        self.total = 0
        self.localized = 0
        self.failures_in_a_row = 0
        self.last_reason = ""
        self.counters: collections.Counter = collections.Counter()
        self.problems: dict[str, Problem] = {}

    def update(self, pub) -> None:
        """Count one handled frame (a :class:`~global_loc.ros.frame_handler.Publication`):
        published when it is localized and has a pose in the frame the node publishes."""
        ok = pub.localized and pub.pose is not None
        with self._lock:
            self.total += 1
            if ok:
                self.localized += 1
                self.failures_in_a_row = 0
                self.counters[f"localized_{pub.result.mode}"] += 1
            else:
                self.failures_in_a_row += 1
                self.last_reason = pub.note or pub.result.reason
            self._recent.append((time.monotonic(), ok, pub.result.num_inliers, dict(pub.result.timings)))

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter (e.g. frames dropped), reported in :meth:`summary`."""
        with self._lock:
            self.counters[name] += n

    def set_problem(self, key: str, level: str, message: str) -> bool:
        """Report a problem under ``key`` (one per key; a new message replaces the old).

        Returns:
            True when the problem is new or its message changed (worth a log line).
        """
        if level not in ("WARN", "ERROR"):
            raise ValueError(f"a problem is WARN or ERROR, not {level}")
        with self._lock:
            old = self.problems.get(key)
            if old is not None and old.message == message and old.level == level:
                old.count += 1
                return False
            self.problems[key] = Problem(level, message, time.monotonic())
            return True

    def clear_problem(self, key: str) -> bool:
        """Forget the problem under ``key``; True when there was one."""
        with self._lock:
            return self.problems.pop(key, None) is not None

    def summary(self) -> dict[str, float | int | str]:
        """Key figures: frames, success ratio, rate (Hz), median latency per stage (ms),
        median inliers of the localized frames, failures in a row, the counters."""
        with self._lock:
            recent = list(self._recent)
            out: dict[str, float | int | str] = {
                "frames": self.total,
                "localized": self.localized,
                "failures_in_a_row": self.failures_in_a_row,
                "last_failure": self.last_reason,
                **dict(self.counters),
            }
        if recent:
            times = [r[0] for r in recent]
            span = times[-1] - times[0]
            out["rate_hz"] = round((len(times) - 1) / span, 3) if span > 0 else 0.0
            out["success_ratio"] = round(float(np.mean([r[1] for r in recent])), 3)
            inl = [r[2] for r in recent if r[1]]
            out["median_inliers"] = float(np.median(inl)) if inl else 0.0
            stages = {k for r in recent for k in r[3]}
            for s in sorted(stages):
                out[f"latency_{s}_ms"] = round(float(np.median([r[3].get(s, 0.0) for r in recent])) * 1e3, 2)
        return out


def problem_level(diag: Diagnostics) -> tuple[str, str] | None:
    """``(level, message)`` of the current problems (the most severe sets the level, every one
    is named), or None when there is none."""
    with diag._lock:
        problems = sorted(diag.problems.values(), key=lambda p: -_SEVERITY[p.level])
    if not problems:
        return None
    return problems[0].level, "; ".join(p.message for p in problems)


def diagnostic_level(diag: Diagnostics, max_failures_in_a_row: int = 10) -> tuple[str, str]:
    """``(level, message)`` of a localizer for ``/diagnostics``: its problems first
    (:func:`problem_level`); without one, STALE before the first frame, WARN after
    ``max_failures_in_a_row`` frames without a pose, OK while localizing.
    """
    problems = problem_level(diag)
    if problems is not None:
        return problems
    if diag.total == 0:
        return "STALE", "no camera frame received yet"
    if diag.failures_in_a_row >= max_failures_in_a_row:
        return "WARN", f"not localized for {diag.failures_in_a_row} frames: {diag.last_reason}"
    return "OK", f"localized {diag.localized} of {diag.total} frames"


class StreamMonitor:
    """Watches the inputs of a camera node: images, camera_info, and the pairs a time
    synchroniser makes of them, and says which one is missing.

    Args:
        image_topic, info_topic: the resolved topic names, for the messages.
        timeout: seconds without a message before it counts as missing.
        clock: a function returning seconds (``time.monotonic`` by default).
    """

    def __init__(self, image_topic: str, info_topic: str, timeout: float = 3.0, clock=time.monotonic):
        self.image_topic, self.info_topic = image_topic, info_topic
        self.timeout = timeout
        self.clock = clock
        self.counts = collections.Counter()
        self._last: dict[str, float] = {}
        self._start = clock()

    def saw(self, what: str) -> None:
        """Record one ``image``, ``info`` or ``pair``."""
        self.counts[what] += 1
        self._last[what] = self.clock()

    def _recent(self, what: str, now: float) -> bool:
        return what in self._last and now - self._last[what] <= self.timeout

    def problem(self) -> str | None:
        """What is missing now, as one sentence, or None when the stream is whole (or when
        nothing arrives at all: a robot whose camera is off is not an error)."""
        now = self.clock()
        if not self._recent("image", now):
            return None
        if not self._recent("info", now):
            return (f"images arrive on {self.image_topic} but no camera_info on {self.info_topic} "
                    f"(none for {self.timeout:g} s): publish the camera calibration there, or remap "
                    "camera_info to the topic that carries it")
        if not self._recent("pair", now) and now - self._start > self.timeout:
            return (f"images on {self.image_topic} and camera_info on {self.info_topic} arrive, but "
                    "never with stamps within sync_slop: stamp both with the exposure time, or raise "
                    "sync_slop")
        return None
