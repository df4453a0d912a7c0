"""Watch a launched localizer on a live graph and measure it: what the end-to-end tests, the
stream benchmark and ``make demo-live`` record and evaluate.

:class:`Recorder` is a node that listens to what a robot's other nodes would see: the camera
images (only their stamps, read from the raw bytes), the localizer's ``~/pose``, ``/tf``
(``map -> odom`` and the odometry) and ``/diagnostics``, each with the wall time it arrived.
:func:`evaluate_live` turns a recording into recall against ground truth, the accuracy of
``map -> odom`` composed with the odometry, and latency from an image's arrival to its pose's.

This module imports rclpy.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from ..geometry.tf_tree import TransformBuffer, TransformError
from ..geometry.transforms import Pose, pose_error
from . import conversions as conv

LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def level_name(level) -> str:
    """``OK``/``WARN``/``ERROR``/``STALE`` of a ``DiagnosticStatus.level`` (a byte in rclpy)."""
    value = level[0] if isinstance(level, (bytes, bytearray)) else int(level)
    return LEVEL_NAMES.get(value, str(value))


def cdr_header_stamp_ns(raw: bytes) -> int:
    """The ``header.stamp`` of a serialised (CDR) message whose first field is a
    ``std_msgs/Header`` (``sensor_msgs/Image``, ``CameraInfo``, ...), in nanoseconds."""
    little = raw[1] == 1  # encapsulation: 0x0001 CDR little-endian, 0x0000 big-endian
    sec, nanosec = struct.unpack("<iI" if little else ">iI", raw[4:12])
    return sec * 1_000_000_000 + nanosec


@dataclass
class Recording:
    """What a :class:`Recorder` saw; times are ``time.monotonic()`` at arrival.

    Attributes:
        images: image stamp (ns) -> arrival.
        poses: ``(stamp ns, arrival, map_from_base, covariance (6, 6))`` per ``~/pose``.
        tf: every ``/tf`` transform, ``(parent, child, stamp ns, parent_from_child)``.
        diagnostics: ``(arrival, status name, level name, message, values)`` per status.
    """

    images: dict[int, float] = field(default_factory=dict)
    poses: list[tuple[int, float, Pose, np.ndarray]] = field(default_factory=list)
    tf: list[tuple[str, str, int, Pose]] = field(default_factory=list)
    diagnostics: list[tuple[float, str, str, str, dict]] = field(default_factory=list)


class Recorder(Node):
    """Listens to a localizer's inputs and outputs (see the module docstring).

    Args:
        pose_topic: the localizer's ``~/pose`` (``/localizer/pose`` for the launch file's node).
        image_topic: the camera images, subscribed raw (never decoded).
        use_sim_time: follow ``/clock`` (only the node's own clock; arrival times are wall
            clock).
    """

    def __init__(self, pose_topic: str = "/localizer/pose", image_topic: str = "/camera/image_raw",
                 use_sim_time: bool = False):
        super().__init__("global_loc_recorder",
                         parameter_overrides=[Parameter("use_sim_time", value=use_sim_time)])
        self.recording = Recording()
        self._lock = threading.Lock()
        qos = QoSProfile(depth=50)
        self.create_subscription(Image, image_topic, self._on_image, qos, raw=True)
        self.create_subscription(PoseWithCovarianceStamped, pose_topic, self._on_pose, qos)
        self.create_subscription(TFMessage, "/tf", self._on_tf, QoSProfile(depth=200))
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)

    def _on_image(self, raw: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self.recording.images[cdr_header_stamp_ns(raw)] = now

    def _on_pose(self, msg) -> None:
        now = time.monotonic()
        pose = conv.pose_from_msg(msg.pose.pose)
        cov = np.asarray(msg.pose.covariance, np.float64).reshape(6, 6)
        with self._lock:
            self.recording.poses.append((conv.stamp_to_ns(msg.header.stamp), now, pose, cov))

    def _on_tf(self, msg) -> None:
        items = [(ts.header.frame_id, ts.child_frame_id, conv.stamp_to_ns(ts.header.stamp),
                  conv.transform_from_msg(ts.transform)) for ts in msg.transforms]
        with self._lock:
            self.recording.tf.extend(items)

    def _on_diagnostics(self, msg) -> None:
        now = time.monotonic()
        items = [(now, s.name, level_name(s.level), s.message, {kv.key: kv.value for kv in s.values})
                 for s in msg.status]
        with self._lock:
            self.recording.diagnostics.extend(items)

    def snapshot(self) -> Recording:
        """A copy of what was recorded so far."""
        with self._lock:
            r = self.recording
            return Recording(dict(r.images), list(r.poses), list(r.tf), list(r.diagnostics))

    def last_status(self, name_prefix: str) -> tuple[str, str, dict] | None:
        """``(level, message, values)`` of the newest status whose name starts with
        ``name_prefix``, or None."""
        with self._lock:
            for _, name, level, message, values in reversed(self.recording.diagnostics):
                if name.startswith(name_prefix):
                    return level, message, values
        return None


class Spinner:
    """Spins nodes on a thread of their own until :meth:`stop` (a context manager too)."""

    def __init__(self, *nodes: Node):
        self.executor = SingleThreadedExecutor()
        for n in nodes:
            self.executor.add_node(n)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="global_loc_spinner")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and rclpy.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.executor.shutdown(timeout_sec=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@dataclass
class LiveReport:
    """What :func:`evaluate_live` measured.

    Attributes:
        frames: images that arrived; poses: poses that arrived.
        recall: fraction of *all* frames with a pose within each threshold.
        pose_errors: (N, 2) translation (m) and rotation (deg) errors of the poses.
        map_odom_recall: fraction of all frames whose ``map -> odom`` composed with the
            odometry at the image stamp gives the base within each threshold.
        latency: (N,) seconds from an image's arrival to its (first) pose's.
        thresholds: ``(metres, degrees)`` pairs.
    """

    frames: int
    poses: int
    recall: list[float]
    pose_errors: np.ndarray
    map_odom_transforms: int
    map_odom_recall: list[float]
    latency: np.ndarray
    thresholds: list[tuple[float, float]]

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latency, q) * 1e3) if len(self.latency) else float("nan")

    def format(self) -> str:
        med = np.median(self.pose_errors, axis=0) if len(self.pose_errors) else (np.nan, np.nan)
        lines = [f"frames published {self.frames}, poses received {self.poses} "
                 f"({100 * self.poses / max(self.frames, 1):.1f} %)"]
        for (m, d), r, r2 in zip(self.thresholds, self.recall, self.map_odom_recall):
            lines.append(f"  within ({m:g} m, {d:g} deg): poses {100 * r:.1f} % of frames; "
                         f"map -> odom + odometry {100 * r2:.1f} %")
        lines.append(f"  median error {1e3 * med[0]:.1f} mm / {med[1]:.3f} deg")
        lines.append(f"  latency, image arrival -> pose arrival: p50 {self.percentile_ms(50):.0f} ms, "
                     f"p90 {self.percentile_ms(90):.0f} ms, max {self.percentile_ms(100):.0f} ms")
        return "\n".join(lines)


def evaluate_live(rec: Recording, ground_truth_base: list[tuple[float, Pose]],
                  thresholds=((0.25, 2.0), (0.5, 5.0)), map_frame: str = "map", odom_frame: str = "odom",
                  base_frame: str = "base_link", transform_tolerance: float = 0.1,
                  lap_period_ns: int | None = None, start_ns: int | None = None) -> LiveReport:
    """Evaluate a recording against the ground-truth base trajectory (TUM entries:
    ``(stamp seconds, map_from_base)``).

    Args:
        transform_tolerance: the localizer's parameter: its ``map -> odom`` is stamped this
            much after the image.
        lap_period_ns, start_ns: for a looped replay (``global-loc replay --loops``): stamps
            are folded back into the first lap before the ground truth is looked up.
    """
    def fold(ns: int) -> int:
        if lap_period_ns is None:
            return ns
        return start_ns + (ns - start_ns) % lap_period_ns

    est = [(fold(s) * 1e-9, p) for s, _, p, _ in rec.poses]
    frames = len(rec.images)
    # every pose against the ground truth at its image stamp
    gt = {round(t * 1e6): p for t, p in ground_truth_base}
    errors, lat = [], []
    first_pose: set[int] = set()
    for (s, arrival, p, _), (t, _) in zip(rec.poses, est):
        g = gt.get(round(t * 1e6))
        if g is not None:
            errors.append(pose_error(p.inverse(), g.inverse()))
        if s in rec.images and s not in first_pose:  # (~/localize may publish a frame's pose again)
            lat.append(arrival - rec.images[s])
            first_pose.add(s)
    errors = np.array(errors, np.float64).reshape(-1, 2)
    recall = [float(np.sum((errors[:, 0] <= m) & (errors[:, 1] <= d)) / max(frames, 1)) for m, d in thresholds]
    # map -> odom composed with the odometry, at the image stamp
    odom = TransformBuffer()
    m2o = []
    for parent, child, s, pose in rec.tf:
        if (parent, child) == (odom_frame, base_frame):
            odom.add(parent, child, s * 1e-9, pose)
        elif (parent, child) == (map_frame, odom_frame):
            m2o.append((s - int(transform_tolerance * 1e9), pose))
    ok = np.zeros(len(thresholds))
    for s, map_from_odom in m2o:
        g = gt.get(round(fold(s) * 1e-3))
        try:
            map_from_base = map_from_odom * odom.lookup(odom_frame, base_frame, s * 1e-9)
        except TransformError:
            continue
        if g is None:
            continue
        dt, dr = pose_error(map_from_base.inverse(), g.inverse())
        ok += [(dt <= m) and (dr <= d) for m, d in thresholds]
    return LiveReport(frames, len(rec.poses), recall, errors, len(m2o),
                      [float(k / max(frames, 1)) for k in ok], np.array(lat), list(thresholds))


# --- one live run, end to end ------------------------------------------------------------------------
@dataclass
class ResourceSamples:
    """CPU (percent of one core) and resident memory (MiB) of a process over time (s)."""

    times: list[float] = field(default_factory=list)
    cpu_percent: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    def summary(self, settle_s: float = 30.0) -> dict:
        """Median CPU; RSS after ``settle_s`` (start), at the end, its largest value, its
        slope over the run's second half (MiB per minute, a least-squares line), and its value
        at the start of each minute."""
        t, rss = np.array(self.times), np.array(self.rss_mib)
        if len(t) < 4:
            return {}
        start = rss[np.searchsorted(t, t[0] + settle_s)] if t[-1] - t[0] > settle_s else rss[0]
        half = t >= t[0] + (t[-1] - t[0]) / 2
        slope = float(np.polyfit(t[half] / 60.0, rss[half], 1)[0]) if half.sum() > 2 else float("nan")
        minutes = np.arange(0.0, t[-1] - t[0] + 1e-9, 60.0) + t[0]
        return {"cpu_percent_median": float(np.median(self.cpu_percent)), "rss_start_mib": float(start),
                "rss_end_mib": float(rss[-1]), "rss_max_mib": float(rss.max()),
                "rss_slope_mib_per_min": slope, "duration_s": float(t[-1] - t[0]),
                "rss_each_minute_mib": [round(float(rss[min(np.searchsorted(t, m), len(t) - 1)]), 1)
                                        for m in minutes]}


def _sample(pid: int, out: ResourceSamples, stop: threading.Event, period: float = 2.0) -> None:
    import psutil

    proc = psutil.Process(pid)
    proc.cpu_percent()
    t0 = time.monotonic()
    while not stop.wait(period):
        try:
            cpu, rss = proc.cpu_percent(), proc.memory_info().rss / 2**20
        except psutil.Error:
            return
        out.times.append(time.monotonic() - t0)
        out.cpu_percent.append(cpu)
        out.rss_mib.append(rss)


def run_live(map_path, bag, ground_truth_base, workspace, rate: float = 1.0, duration_s: float | None = None,
             image_topic: str = "/camera/image_raw", thresholds=((0.25, 2.0), (0.5, 5.0)), echo: bool = False,
             log=print, launch_args: dict | None = None) -> tuple[LiveReport, dict, Recording]:
    """The localizer as a robot runs it: build the package with colcon in ``workspace``,
    ``ros2 launch global_loc localize.launch.py map:=MAP use_sim_time:=true``, play ``bag``
    into it with ``global-loc replay`` (looping until ``duration_s`` when given, else once),
    record what comes out, Ctrl-C, and evaluate against ``ground_truth_base`` (TUM entries
    ``(stamp s, map_from_base)``). ``launch_args`` adds launch arguments (e.g.
    ``{"params_file": ...}``).

    Returns:
        ``(report, resources, recording)``: the :class:`LiveReport`, the localizer process's
        CPU and RSS (:meth:`ResourceSamples.summary`) with ``exit_status`` and ``clean_exit``,
        and the raw recording. rclpy must be initialised.
    Raises:
        WorkspaceError: the build failed or the node did not start.
    """
    import psutil

    from ..io.bags import open_bag
    from .replay import lap_period_ns
    from .workspace import LaunchedProcess, colcon_build, ros2_launch, ros_env

    env = ros_env(colcon_build(workspace), int(os.environ.get("ROS_DOMAIN_ID", "0")))
    reader = open_bag(Path(bag))
    start_ns, end_ns = reader.start_time, reader.end_time
    reader.close()
    recorder = Recorder(image_topic=image_topic, use_sim_time=True)
    samples, stop_sampling = ResourceSamples(), threading.Event()
    with Spinner(recorder):
        launch = ros2_launch(env, "localize.launch.py",
                             {"map": str(map_path), "use_sim_time": "true", **(launch_args or {})}, echo=echo)
        with launch:
            launch.wait_for(r"active: localizing", 120)
            node = next(p for p in psutil.Process(launch.proc.pid).children(recursive=True)
                        if "localizer_node" in " ".join(p.cmdline()))
            sampler = threading.Thread(target=_sample, args=(node.pid, samples, stop_sampling), daemon=True)
            sampler.start()
            args = [str(Path(sys.executable).parent / "global-loc"), "replay", "--bag", str(bag), "--rate", str(rate),
                    "--wait-for", f"{image_topic}:2", image_topic.rsplit("/", 1)[0] + "/camera_info",
                    "--loops", "0" if duration_s else "1"]
            log(f"replaying {bag} at rate {rate:g}" + (f" for {duration_s:.0f} s" if duration_s else ""))
            player = LaunchedProcess(args, env=env)
            if duration_s:
                time.sleep(duration_s)
                player.stop(30)
            else:
                player.wait(3600)
            time.sleep(1.5)  # the last frame's pose
            stop_sampling.set()
            rc = launch.stop(60)
    recording = recorder.snapshot()
    recorder.destroy_node()
    resources = {**samples.summary(), "exit_status": rc,
                 "clean_exit": rc == 0 and "process has finished cleanly" in launch.output
                 and "process has died" not in launch.output}
    report = evaluate_live(recording, ground_truth_base, thresholds,
                           lap_period_ns=lap_period_ns(start_ns, end_ns) if duration_s else None, start_ns=start_ns)
    return report, resources, recording


def main(argv: list[str] | None = None) -> int:
    """``python -m global_loc.ros.live``: :func:`run_live` from the command line (``make
    demo-live``): recall, latency, the localizer's CPU and memory, and a trajectory plot."""
    from ..errors import GlobalLocError
    from ..evaluation import evaluate_trajectory, plot_trajectories
    from ..io.text import read_tum

    p = argparse.ArgumentParser(prog="python -m global_loc.ros.live", description=main.__doc__)
    p.add_argument("--map", type=Path, required=True, help="map file")
    p.add_argument("--bag", type=Path, required=True, help="the recording to play into the localizer")
    p.add_argument("--gt", type=Path, required=True, help="ground truth of base_link in the map frame (TUM)")
    p.add_argument("--workspace", type=Path, required=True, help="colcon workspace to build the package in")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate (default 1)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="loop the bag for S seconds")
    p.add_argument("--plot", type=Path, default=None, help="trajectory plot (PNG)")
    p.add_argument("--echo", action="store_true", help="print the launch output")
    p.add_argument("--camera", default=None, help="the launch file's camera argument (default /camera); several "
                   "namespaces, comma-separated, for a camera rig (e.g. /camera,/back_camera)")
    args = p.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    try:
        gt = read_tum(args.gt)
        report, resources, rec = run_live(args.map, args.bag, gt, args.workspace, args.rate, args.duration,
                                          echo=args.echo,
                                          launch_args={"camera": args.camera} if args.camera else None)
    except GlobalLocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    print(report.format())
    if resources.get("duration_s"):
        print(f"  localizer process: CPU {resources['cpu_percent_median']:.0f} % of a core (median), RSS "
              f"{resources['rss_start_mib']:.0f} -> {resources['rss_end_mib']:.0f} MiB")
    last = next((v for _, _, _, _, v in reversed(rec.diagnostics) if "frames" in v and "localized" in v), None)
    if last is not None:  # the node's own count, as /diagnostics last said it
        keys = ("frames", "localized", "ambiguous", "ambiguous_chosen_by_prior", "track_rejected")
        print("  /diagnostics (last): " + ", ".join(f"{k} {last[k]}" for k in keys if k in last))
    cameras = {}
    for _, name, level, message, values in rec.diagnostics:
        if ": camera " in name:
            cameras[name] = (level, message, values)
    for name, (level, message, values) in cameras.items():  # a rig: each camera's last status
        print(f"  {name}: {level} {message}; " + ", ".join(f"{k} {v}" for k, v in values.items()))
    print(f"  Ctrl-C: {'clean exit' if resources['clean_exit'] else 'NOT CLEAN, exit status %s' % resources['exit_status']}")
    if args.plot is not None and not args.duration:
        est = [(s * 1e-9, p) for s, _, p, _ in rec.poses]
        stamps = sorted(t * 1e-9 for t in rec.images)
        plot_trajectories(args.plot, gt, est, evaluate_trajectory(est, gt, stamps, report.thresholds),
                          title="localize.launch.py: base_link, top view")
        print(f"plot: {args.plot}")
    return 0 if resources["clean_exit"] else 1


if __name__ == "__main__":
    sys.exit(main())
