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
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

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


#: ``log(level, message)``: where :class:`Diagnostics` says that a problem started (level
#: ``WARN`` or ``ERROR``) or ended (``INFO``).
ProblemLog = Callable[[str, str], None]

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def problem_kind(message: str) -> str:
    """``message`` with its numbers masked: two reports of one condition whose figures differ
    (an age, a stamp, a count) are of one kind, and only a new kind is logged again."""
    return _NUMBER.sub("#", message)


class Diagnostics:
    """Rolling statistics of a localizer, and its current problems, for ``/diagnostics``.

    A problem is logged (through ``log``) once when it starts and once when it ends, with how
    often it was reported meanwhile, however many frames report it: ``/diagnostics`` carries it
    in between, with its latest message. A report of the same key whose message differs only in
    its numbers is the same problem; another level or another wording is a new one.

    Thread-safe: the worker thread updates it while a timer publishes it.

    Args:
        window: frames kept for rates, latencies and inlier counts.
        log: ``log(level, message)`` for the start (``WARN``/``ERROR``) and the end (``INFO``)
            of each problem; None logs nothing.
    """

    def __init__(self, window: int = 100, log: ProblemLog | None = None):
        self.log = log
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
                if pub.result.ambiguity:  # places that look alike, settled by the pose prior
                    self.counters["ambiguous_chosen_by_prior"] += 1
            else:
                self.failures_in_a_row += 1
                self.last_reason = pub.note or pub.result.reason
                if pub.result.ambiguity:  # places that look alike: refused, and counted
                    self.counters["ambiguous"] += 1
            self._recent.append((time.monotonic(), ok, pub.result.num_inliers, dict(pub.result.timings)))

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter (e.g. frames dropped), reported in :meth:`summary`."""
        with self._lock:
            self.counters[name] += n

    def set_problem(self, key: str, level: str, message: str) -> bool:
        """Report a problem under ``key`` (one per key; the latest message replaces the old).

        Returns:
            True when the problem is new, or of another level or kind (:func:`problem_kind`)
            than the one under ``key`` before: then it was logged.

        Raises:
            ValueError: ``level`` is neither ``WARN`` nor ``ERROR``.
        """
        if level not in ("WARN", "ERROR"):
            raise ValueError(f"a problem is WARN or ERROR, not {level}")
        with self._lock:
            old = self.problems.get(key)
            if old is not None and old.level == level and problem_kind(old.message) == problem_kind(message):
                old.count += 1
                old.message = message
                return False
            self.problems[key] = Problem(level, message, time.monotonic())
        if self.log is not None:
            self.log(level, message)
        return True

    def clear_problem(self, key: str) -> Problem | None:
        """Forget the problem under ``key``, logging its end (``INFO``: how often it was
        reported and for how long).

        Returns:
            The problem there was, or None.
        """
        with self._lock:
            old = self.problems.pop(key, None)
        if old is not None and self.log is not None:
            took = time.monotonic() - old.since
            self.log("INFO", f"resolved: {old.message} (reported {old.count} time(s) over {took:.1f} s)")
        return old

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


#: what the log and ``/diagnostics`` say when camera frames are stamped long before the node's
#: clock: the usual cause is a bag played into a node that runs on the wall clock.
SIM_TIME_HINT = "pass use_sim_time:=true when playing a bag"


def clock_problem(age_s: float, max_age_s: float, use_sim_time: bool) -> str | None:
    """The problem, as one sentence, when camera frames and the node's clock disagree by more
    than a slow computer explains (10 ``max_age_s`` + 1 s), or None.

    Args:
        age_s: the node's clock minus the image stamp, seconds (negative: the stamp is ahead).
        max_age_s: the node's ``max_frame_age``.
        use_sim_time: the node's ``use_sim_time`` parameter.
    """
    bound = 10 * max_age_s + 1.0
    if age_s > bound:
        if use_sim_time:
            return (f"camera frames are stamped {age_s:.1f} s before the node's /clock, so they are "
                    "dropped: is /clock published by the same player as the images?")
        return (f"camera frames are stamped {age_s:.1f} s before the node clock (wall time), so they are "
                f"dropped: {SIM_TIME_HINT} (it publishes /clock); a live camera's clock is off otherwise")
    if age_s < -bound:
        if use_sim_time:
            return (f"camera frames are stamped {-age_s:.1f} s after the node's /clock: with use_sim_time, "
                    "is /clock published? (global-loc replay publishes it unless --no-clock)")
        return (f"camera frames are stamped {-age_s:.1f} s after the node clock: the camera's clock is "
                "ahead of this computer's (synchronise them, e.g. with chrony or PTP)")
    return None


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
        pair_hint: what to do when images and camera_info arrive but never pair (the default
            names ``sync_slop``; a rig's cameras name ``rig_sync_slop`` and the other cameras).
    """

    def __init__(self, image_topic: str, info_topic: str, timeout: float = 3.0, clock=time.monotonic,
                 pair_hint: str = "never with stamps within sync_slop: stamp both with the exposure time, or "
                                  "raise sync_slop"):
        self.image_topic, self.info_topic = image_topic, info_topic
        self.pair_hint = pair_hint
        self.timeout = timeout
        self.clock = clock
        self.counts = collections.Counter()
        self._last: dict[str, float] = {}
        self._first: dict[str, float] = {}

    def saw(self, what: str) -> None:
        """Record one ``image``, ``info`` or ``pair``."""
        now = self.clock()
        self.counts[what] += 1
        self._last[what] = now
        self._first.setdefault(what, now)

    def _recent(self, what: str, now: float) -> bool:
        return what in self._last and now - self._last[what] <= self.timeout

    def _missing(self, what: str, since: float, now: float) -> bool:
        """``what`` has not come for ``timeout`` seconds, counted from ``since`` at the earliest
        (a stream that just started: its other topic may still be matching)."""
        last = self._last.get(what, since)
        return now - max(last, since) > self.timeout

    def problem(self) -> str | None:
        """What is missing now, as one sentence, or None when the stream is whole (or when
        nothing arrives at all: a robot whose camera is off is not an error).

        A topic counts as missing only after ``timeout`` seconds of images without it, counted
        from the first image: a publisher whose camera_info subscription is matched a moment
        after its image subscription is not reported.
        """
        now = self.clock()
        if not self._recent("image", now):
            return None
        first_image = self._first["image"]
        if self._missing("info", first_image, now):
            return (f"images arrive on {self.image_topic} but no camera_info on {self.info_topic} "
                    f"(none for {self.timeout:g} s): publish the camera calibration there, or remap "
                    "camera_info to the topic that carries it")
        if "info" in self._first and self._missing("pair", max(first_image, self._first["info"]), now):
            return (f"images on {self.image_topic} and camera_info on {self.info_topic} arrive, but "
                    f"{self.pair_hint}")
        return None
