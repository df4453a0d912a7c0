"""The localizer node: a lifecycle node around :class:`~global_loc.ros.frame_handler.FrameHandler`.

Lifecycle (ros2/demos ``lifecycle_py``): the map and the models load in ``on_configure``;
``on_activate`` starts the worker. With ``autostart`` the node takes both transitions itself
at start (the launch file's default), otherwise ``ros2 lifecycle set /localizer configure``.
Camera frames (``image`` + ``camera_info``, approximate time sync, QoS from ``image_qos``; for a
camera rig, parameter ``cameras``, the images and camera_infos of all its cameras within
``rig_sync_slop``, one rig frame, :class:`~global_loc.ros.rig_handler.RigFrameHandler`) go
into a drop-oldest queue that a worker thread empties, so that
subscription callbacks never wait for a localization (the pattern of image_pipeline's
``camera_calibration``); a frame older than ``max_frame_age`` when the worker takes it is
dropped, so no stale pose goes out.

Publishes ``~/pose`` (``geometry_msgs/PoseWithCovarianceStamped`` of ``base_frame`` in the map
frame), ``map -> odom`` on tf (REP-105; ``map -> base_link`` when ``odom_frame`` is empty) and
``/diagnostics`` (with a rig, one status per camera besides the node's). ``~/localize`` (``std_srvs/Trigger``) localizes the latest frame at once.
Parameters: :data:`global_loc.ros.params.LOCALIZER_PARAMS`.

``/diagnostics`` is published in every lifecycle state and names each problem: a configuration
that failed (a missing, corrupt or incompatible map; a bad parameter), a camera without
camera_info, an image that cannot be decoded or disagrees with its camera_info, a publisher
whose QoS cannot match, a missing transform, frames stamped far from the node's clock.

This module imports rclpy; everything it calls is importable and tested without ROS.
"""
from __future__ import annotations

import threading
import time
import traceback

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from std_srvs.srv import Trigger
from tf2_ros import Buffer, TransformBroadcaster, TransformListener

from ..config import PipelineConf
from ..errors import GlobalLocError
from ..localizer import Localizer, conf_for_map
from ..rig_localizer import check_image_size
from ..map.storage import read_map
from ..types import LocalizationResult, Status
from . import conversions as conv
from .diagnostics import Diagnostics, StreamMonitor, clock_problem, diagnostic_level
from .frame_handler import FrameConfig, FrameHandler, Publication
from .node_utils import (declare, problem_log, read_params, spin, steady_timer, subscribe_camera, subscribe_rig,
                         tf_lookup)
from .params import LOCALIZER_PARAMS, preset_settings
from .rig_handler import RigFrameHandler
from .worker import DropOldestWorker


class LocalizerNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs):
        super().__init__("localizer", **kwargs)
        self.params: dict = {}
        self.handler: FrameHandler | None = None
        self.diagnostics = Diagnostics(log=problem_log(self))
        self.monitors: list[StreamMonitor] = []
        self._worker: DropOldestWorker | None = None
        self._busy = threading.Lock()  # the worker and ~/localize share the localizer
        self._last_time = 0.0
        self._use_sim_time = False  # read at configuration
        self._subs: list = []
        self._state = "unconfigured"
        period = 1.0
        try:
            declare(self, LOCALIZER_PARAMS)
            period = float(self.get_parameter("diagnostics_period").value)
        except Exception as e:  # e.g. a parameter file value of the wrong type
            self._report_configure_failure(e)
        # /diagnostics works in every state, so that a failed configuration is visible
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if self.has_parameter("autostart") and self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)
        self._diag_timer = steady_timer(self, period, self._publish_diagnostics)

    # --- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            p = self.params = read_params(self, LOCALIZER_PARAMS)
            self._use_sim_time = bool(self.get_parameter("use_sim_time").value)
            map_index = read_map(p["map_path"])
            localizer = Localizer(map_index, self._conf(map_index, p))
        except Exception as e:  # rclpy would swallow it: say why, stay unconfigured
            self._report_configure_failure(e)
            return TransitionCallbackReturn.FAILURE
        self.diagnostics.clear_problem("configure")
        frames = FrameConfig(map_frame=p["map_frame"] or map_index.frame_id, odom_frame=p["odom_frame"],
                             base_frame=p["base_frame"], camera_frame=p["camera_frame"],
                             publish_tf=p["publish_tf"])
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)
        lookup = tf_lookup(self.tf_buffer, p["tf_timeout"])
        report = lambda m: self._problem("qos", "ERROR", m)  # noqa: E731
        if p["cameras"]:
            self.handler = RigFrameHandler(localizer, frames, lookup, p["cameras"], self.diagnostics)
            self._subs, self._sync, self.monitors = subscribe_rig(self, p, self._on_frame, report)
        else:
            self.handler = FrameHandler(localizer, frames, lookup, self.diagnostics)
            self._subs, self._sync, monitor = subscribe_camera(self, p, self._on_frame, report)
            self.monitors = [monitor]
        self.pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.tf_broadcaster = TransformBroadcaster(self)
        self._worker = DropOldestWorker(self._work, p["queue_size"])
        self._service = self.create_service(Trigger, "~/localize", self._on_localize,
                                            callback_group=MutuallyExclusiveCallbackGroup())
        self._state = "inactive"
        c = localizer.conf
        topics = ", ".join(f"{m.image_topic}, {m.info_topic}" for m in self.monitors)
        rig = f"a rig of {len(self.monitors)} cameras (rig_sync_slop {p['rig_sync_slop']:g} s), " if p["cameras"] else ""
        self.get_logger().info(f"configured: {map_index.summary()}; {rig}camera topics {topics} "
                               f"({p['image_qos']}); preset '{c.name}': "
                               f"min_inliers {c.localization.min_inliers}, min_inlier_ratio "
                               f"{c.localization.min_inlier_ratio:g}, num_retrieved {c.localization.num_retrieved}, "
                               f"tracking {str(c.tracking.enabled).lower()}, refine {c.refinement.method}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._worker.start()
        self._state = "active"
        self.get_logger().info("active: localizing camera frames")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        self._worker = DropOldestWorker(self._work, self.params["queue_size"])
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        for s in self._subs:
            self.destroy_subscription(s.sub)
        self._subs = []
        self.destroy_service(self._service)
        self.destroy_lifecycle_publisher(self.pose_pub)
        self.handler = None
        self.monitors = []
        self.diagnostics = Diagnostics(log=problem_log(self))
        self._state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def _autostart(self) -> None:
        """Configure, then activate, from the executor (once)."""
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # --- helpers -------------------------------------------------------------------------------
    def _conf(self, map_index, p) -> PipelineConf:
        """The preset (or the map's), ``preset_overrides``, then only the parameters that were set."""
        return conf_for_map(map_index, p["preset"] or None, p["preset_overrides"], p["models_dir"] or None,
                            settings=preset_settings(LOCALIZER_PARAMS, p))

    def _report_configure_failure(self, e: Exception) -> None:
        if isinstance(e, GlobalLocError):
            reason = str(e)
        else:  # not a user error: keep the traceback for the bug report
            reason = f"{type(e).__name__}: {e}"
            self.get_logger().error(traceback.format_exc())
        if not self.diagnostics.set_problem("configure", "ERROR", f"cannot configure: {reason}"):
            self.get_logger().error(f"cannot configure: {reason}")  # again: each attempt says why

    def _problem(self, key: str, level: str, message: str) -> None:
        self.diagnostics.set_problem(key, level, message)

    def _stop_worker(self) -> None:
        """Stop the worker after the frame in hand (before the node goes, so that frame's
        publications still find their publishers)."""
        if self._worker is not None:
            self._worker.stop(timeout=30.0)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- data flow -------------------------------------------------------------------------------
    def _on_frame(self, *msgs) -> None:
        """Synchroniser callback (image, camera_info; per camera of a rig): only queues
        (drop-oldest) and returns."""
        self.diagnostics.clear_problem("qos")
        self._worker.put(msgs)

    def _work(self, frame) -> None:
        rate = self.params["rate_hz"]
        if rate > 0 and time.monotonic() - self._last_time < 1.0 / rate:
            self.diagnostics.count("dropped_rate_limit")
            return
        age = (self._now_ns() - conv.stamp_to_ns(frame[0].header.stamp)) * 1e-9
        max_age = self.params["max_frame_age"]
        clock = clock_problem(age, max_age, self._use_sim_time)
        if clock is not None:
            self._problem("clock", "WARN", clock)
        else:
            self.diagnostics.clear_problem("clock")
        if age > max_age:
            self.diagnostics.count("dropped_stale")
            return
        self._last_time = time.monotonic()
        try:
            self._process(*frame)
        except Exception as e:  # a bug: keep localizing the next frames, but say so
            if self.diagnostics.set_problem("internal", "ERROR", f"internal error, please report: "
                                            f"{type(e).__name__}: {e}"):
                self.get_logger().error(traceback.format_exc())

    def _process(self, *msgs) -> Publication | None:
        with self._busy:
            if isinstance(self.handler, RigFrameHandler):
                return self._process_rig(msgs)
            return self._process_locked(*msgs)

    def _input_error(self, stamp_ns: int, e: GlobalLocError, what: str = "frame") -> str:
        message = f"{what} at {stamp_ns * 1e-9:.3f} s not processed: {e}"
        self.diagnostics.count("input_errors")
        self._problem("input", "ERROR", message)
        return message

    def _process_locked(self, image_msg, info_msg) -> Publication | None:
        t = time.perf_counter()
        stamp_ns = conv.stamp_to_ns(image_msg.header.stamp)
        try:
            image = conv.image_from_msg(image_msg)
            camera = conv.camera_from_camera_info(info_msg)
            pub = self.handler.handle(image, camera, stamp_ns, image_msg.header.frame_id,
                                      time.perf_counter() - t)
        except GlobalLocError as e:
            message = self._input_error(stamp_ns, e)
            self.diagnostics.update(Publication(stamp_ns, LocalizationResult(status=Status.FAILED, reason=message)))
            return None
        self.diagnostics.clear_problem("input")
        return self._send(pub, stamp_ns)

    def _process_rig(self, msgs) -> Publication | None:
        """A rig frame: per camera its image and camera_info; a camera whose image or
        camera_info cannot be used sits the frame out (the problem says which)."""
        t = time.perf_counter()
        stamp_ns = conv.stamp_to_ns(msgs[0].header.stamp)
        images, cameras, frames, bad = [], [], [], False
        for name, image_msg, info_msg in zip(self.params["cameras"], msgs[0::2], msgs[1::2]):
            image = camera = None
            try:
                camera = conv.camera_from_camera_info(info_msg)
                image = conv.image_from_msg(image_msg)
                check_image_size(image, camera)
            except GlobalLocError as e:
                image, bad = None, True
                self._input_error(stamp_ns, e, f"camera {name}: image")
            images.append(image)
            cameras.append(camera)
            frames.append(image_msg.header.frame_id)
        if all(i is None for i in images):
            self.diagnostics.update(Publication(stamp_ns, LocalizationResult(
                status=Status.FAILED, reason="no image of the rig frame could be used")))
            return None
        if not bad:
            self.diagnostics.clear_problem("input")
        fill = next(c for c, i in zip(cameras, images) if i is not None)
        cameras = [c if c is not None else fill for c in cameras]  # placeholders for cameras that sit out
        try:
            pub = self.handler.handle_rig(images, cameras, stamp_ns, frames, time.perf_counter() - t)
        except GlobalLocError as e:
            message = self._input_error(stamp_ns, e, "rig frame")
            self.diagnostics.update(Publication(stamp_ns, LocalizationResult(status=Status.FAILED, reason=message)))
            return None
        return self._send(pub, stamp_ns)

    def _send(self, pub: Publication, stamp_ns: int) -> Publication:
        """Publish a frame's pose and transform."""
        if pub.pose is not None:
            self.pose_pub.publish(conv.make_pose_with_covariance_stamped(
                conv.rclpy_types, pub.map_frame, stamp_ns, pub.pose, pub.covariance))
        if pub.transform is not None:
            parent, child, pose = pub.transform
            stamp = stamp_ns + int(self.params["transform_tolerance"] * 1e9)
            self.tf_broadcaster.sendTransform(conv.make_transform_stamped(conv.rclpy_types, parent, child, stamp, pose))
        return pub  # pub.note, if any, is a problem in the diagnostics: logged when it starts and ends

    def _on_localize(self, request, response):
        latest = self._worker.latest if self._worker is not None else None
        if latest is None or self.handler is None:
            response.success, response.message = False, "no camera frame received yet"
            return response
        pub = self._process(*latest)
        if pub is None:
            response.success, response.message = False, f"the latest frame could not be processed: " \
                                                         f"{self.diagnostics.last_reason}"
        elif pub.pose is None:
            response.success, response.message = False, f"not localized: {pub.note or pub.result.reason}"
        else:
            q, t = pub.pose.q_wxyz, pub.pose.t
            response.success = True
            response.message = (f"{pub.pose_frame} in {pub.map_frame}: t=[{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}] "
                                f"q_wxyz=[{q[0]:.4f}, {q[1]:.4f}, {q[2]:.4f}, {q[3]:.4f}], "
                                f"{pub.result.num_inliers} inliers")
        return response

    def _publish_diagnostics(self) -> None:
        more = []
        for k, monitor in enumerate(self.monitors):
            key = "camera" if k == 0 else f"camera{k}"
            problem = monitor.problem()
            if problem:
                self._problem(key, "ERROR", problem)
            else:
                self.diagnostics.clear_problem(key)
            if isinstance(self.handler, RigFrameHandler):
                health = self.handler.cameras[k]
                level, text = ("ERROR", problem) if problem else (health.problem() or ("OK", "contributing"))
                more.append((f"{self.get_name()}: camera {health.name}", level, text,
                             {**health.values(), **{f"received_{c}": v for c, v in monitor.counts.items()}}))
        level, message = diagnostic_level(self.diagnostics)
        if self._state == "unconfigured" and level != "ERROR":
            level, message = "STALE", "unconfigured: configure the node (the launch file does, with autostart)"
        values = {"state": self._state, **self.diagnostics.summary()}
        if self._worker is not None:
            values["dropped_queue"] = self._worker.dropped
        if len(self.monitors) == 1:
            values.update({f"received_{k}": v for k, v in self.monitors[0].counts.items()})
        msg = conv.make_diagnostic_array(conv.rclpy_types, self._now_ns(), f"{self.get_name()}: localization",
                                         "global_loc", level, message, values, more)
        self.diag_pub.publish(msg)


def main(args=None) -> None:
    spin(LocalizerNode, "_stop_worker", args)
