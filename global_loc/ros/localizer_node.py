"""The localizer node: a lifecycle node around :class:`~global_loc.ros.frame_handler.FrameHandler`.

Lifecycle (ros2/demos ``lifecycle_py``): the map and the models load in ``on_configure``;
``on_activate`` starts publishing. Camera frames (``image`` + ``camera_info``, sensor-data QoS,
approximate time sync) go into a drop-oldest queue that a worker thread empties, so that
subscription callbacks never wait for a localization (the pattern of image_pipeline's
``camera_calibration``).

Publishes ``~/pose`` (``geometry_msgs/PoseWithCovarianceStamped`` in the map frame),
``map -> odom`` on tf (REP-105; ``map -> base_link`` when ``odom_frame`` is empty) and
``/diagnostics``. ``~/localize`` (``std_srvs/Trigger``) localizes the latest frame at once.
Parameters: :data:`global_loc.ros.params.LOCALIZER_PARAMS`.

This module imports rclpy; everything it calls is importable and tested without ROS.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from message_filters import ApproximateTimeSynchronizer, Subscriber
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import Node, State, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from tf2_ros import Buffer, TransformBroadcaster, TransformListener

from ..config import PipelineConf
from ..errors import GlobalLocError
from ..localizer import Localizer, conf_for_map
from ..map.storage import read_map
from . import conversions as conv
from .frame_handler import FrameConfig, FrameHandler, diagnostic_level
from .node_utils import declare, spin, tf_lookup
from .params import LOCALIZER_PARAMS
from .worker import DropOldestWorker


class LocalizerNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs):
        super().__init__("localizer", **kwargs)
        self.params: dict = {}
        self.handler: FrameHandler | None = None
        self._worker: DropOldestWorker | None = None
        self._busy = threading.Lock()  # the worker and ~/localize share the localizer
        self._last_time = 0.0
        self._subs = []

    # --- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            p = self.params = declare(self, LOCALIZER_PARAMS)
            map_index = read_map(p["map_path"])
            conf = self._conf(map_index, p)
            localizer = Localizer(map_index, conf)
        except GlobalLocError as e:
            self.get_logger().error(f"cannot configure: {e}")
            return TransitionCallbackReturn.FAILURE
        frames = FrameConfig(map_frame=p["map_frame"] or map_index.frame_id, odom_frame=p["odom_frame"],
                             base_frame=p["base_frame"], camera_frame=p["camera_frame"],
                             publish_tf=p["publish_tf"])
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)
        self.handler = FrameHandler(localizer, frames, tf_lookup(self.tf_buffer, p["tf_timeout"]))
        self.pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self.tf_broadcaster = TransformBroadcaster(self)
        self._worker = DropOldestWorker(self._work, p["queue_size"])
        compressed = p["image_transport"] == "compressed"
        image_sub = Subscriber(self, CompressedImage if compressed else Image,
                               "image/compressed" if compressed else "image", qos_profile=qos_profile_sensor_data)
        info_sub = Subscriber(self, CameraInfo, "camera_info", qos_profile=qos_profile_sensor_data)
        self._subs = [image_sub, info_sub]
        self._sync = ApproximateTimeSynchronizer(self._subs, queue_size=10, slop=p["sync_slop"])
        self._sync.registerCallback(self._on_frame)
        self._service = self.create_service(Trigger, "~/localize", self._on_localize,
                                            callback_group=MutuallyExclusiveCallbackGroup())
        self._diag_timer = self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(f"configured: {map_index.summary()}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        for s in self._subs:
            self.destroy_subscription(s.sub)
        self._subs = []
        self.destroy_service(self._service)
        self.destroy_timer(self._diag_timer)
        self.destroy_lifecycle_publisher(self.pose_pub)
        self.destroy_lifecycle_publisher(self.diag_pub)
        self.handler = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    # --- helpers -------------------------------------------------------------------------------
    def _conf(self, map_index, p) -> PipelineConf:
        conf = conf_for_map(map_index, p["preset"] or None, p["preset_overrides"], p["models_dir"] or None,
                            p["device"])
        conf.localization.min_inliers = p["min_inliers"]
        conf.localization.min_inlier_ratio = p["min_inlier_ratio"]
        conf.localization.num_retrieved = p["num_retrieved"]
        return conf

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=5.0)

    # --- data flow -------------------------------------------------------------------------------
    def _on_frame(self, image_msg, info_msg) -> None:
        """Subscription callback: only queues (drop-oldest) and returns."""
        self._worker.put((image_msg, info_msg))

    def _work(self, frame) -> None:
        rate = self.params["rate_hz"]
        if rate > 0 and time.monotonic() - self._last_time < 1.0 / rate:
            return  # dropped by the rate limit
        self._last_time = time.monotonic()
        self._process(*frame)

    def _process(self, image_msg, info_msg):
        with self._busy:
            return self._process_locked(image_msg, info_msg)

    def _process_locked(self, image_msg, info_msg):
        t = time.perf_counter()
        stamp_ns = conv.stamp_to_ns(image_msg.header.stamp)
        try:
            image = conv.image_from_msg(image_msg)
            camera = conv.camera_from_camera_info(info_msg)
            pub = self.handler.handle(image, camera, stamp_ns, image_msg.header.frame_id,
                                      time.perf_counter() - t)
        except GlobalLocError as e:
            self.get_logger().warning(f"frame at {stamp_ns * 1e-9:.3f} s not processed: {e}",
                                      throttle_duration_sec=5.0)
            return None
        if pub.pose is not None:
            self.pose_pub.publish(conv.make_pose_with_covariance_stamped(
                conv.rclpy_types, pub.map_frame, stamp_ns, pub.pose, pub.covariance))
        if pub.transform is not None:
            parent, child, pose = pub.transform
            stamp = stamp_ns + int(self.params["transform_tolerance"] * 1e9)
            self.tf_broadcaster.sendTransform(conv.make_transform_stamped(conv.rclpy_types, parent, child, stamp, pose))
        if pub.note:
            self.get_logger().warning(pub.note, throttle_duration_sec=5.0)
        return pub

    def _on_localize(self, request, response):
        latest = self._worker.latest if self._worker is not None else None
        if latest is None or self.handler is None:
            response.success, response.message = False, "no camera frame received yet"
            return response
        pub = self._process(*latest)
        if pub is None:
            response.success, response.message = False, "the latest frame could not be processed"
        elif pub.pose is None:
            response.success, response.message = False, f"not localized: {pub.result.reason}"
        else:
            q, t = pub.pose.q_wxyz, pub.pose.t
            response.success = True
            response.message = (f"{pub.pose_frame} in {pub.map_frame}: t=[{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}] "
                                f"q_wxyz=[{q[0]:.4f}, {q[1]:.4f}, {q[2]:.4f}, {q[3]:.4f}], "
                                f"{pub.result.num_inliers} inliers")
        return response

    def _publish_diagnostics(self) -> None:
        if self.handler is None:
            return
        level, message = diagnostic_level(self.handler.diagnostics)
        msg = conv.make_diagnostic_array(conv.rclpy_types, self.get_clock().now().nanoseconds,
                                         f"{self.get_name()}: localization", "global_loc", level, message,
                                         self.handler.diagnostics.summary())
        self.diag_pub.publish(msg)


def main(args=None) -> None:
    spin(LocalizerNode, "_stop_worker", args)
