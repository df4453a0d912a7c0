"""The map indexer node: builds a map while the robot drives.

Subscribes to ``image`` + ``camera_info`` (approximate time sync) and tf; each frame's camera
pose in the map frame is looked up at its stamp, keyframes are selected by travelled distance
and rotation, and their features extracted by a worker thread fed by a drop-oldest queue
(:class:`~global_loc.ros.worker.DropOldestWorker`,
:class:`~global_loc.map.incremental.IncrementalIndexer`). The map is written on
``~/save_map`` (``std_srvs/Trigger``), every ``autosave_every`` keyframes, and at shutdown, so
stopping the node loses nothing already indexed. Parameters:
:data:`global_loc.ros.params.MAP_INDEXER_PARAMS`.
"""
from __future__ import annotations

from message_filters import ApproximateTimeSynchronizer, Subscriber
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger
from tf2_ros import Buffer, TransformListener

from ..config import load_preset
from ..errors import GlobalLocError
from ..map.incremental import IncrementalIndexer
from . import conversions as conv
from .node_utils import declare, spin, tf_lookup
from .params import MAP_INDEXER_PARAMS
from .worker import DropOldestWorker


class MapIndexerNode(Node):
    """See the module docstring."""

    def __init__(self, **kwargs):
        super().__init__("map_indexer", **kwargs)
        p = self.params = declare(self, MAP_INDEXER_PARAMS)
        conf = load_preset(p["preset"] or None, p["preset_overrides"])
        conf.device = p["device"]
        conf.models_dir = p["models_dir"]
        conf.mapping.keyframe_min_distance_m = p["keyframe_min_distance"]
        conf.mapping.keyframe_min_rotation_deg = p["keyframe_min_rotation"]
        self.indexer = IncrementalIndexer(conf, p["map_path"], p["map_frame"], p["autosave_every"],
                                          source={"type": "ros2", "node": self.get_fully_qualified_name()})
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)
        self.lookup = tf_lookup(self.tf_buffer, p["tf_timeout"])
        compressed = p["image_transport"] == "compressed"
        subs = [Subscriber(self, CompressedImage if compressed else Image,
                           "image/compressed" if compressed else "image", qos_profile=qos_profile_sensor_data),
                Subscriber(self, CameraInfo, "camera_info", qos_profile=qos_profile_sensor_data)]
        self._sync = ApproximateTimeSynchronizer(subs, queue_size=10, slop=p["sync_slop"])
        self._worker = DropOldestWorker(self._work, p["queue_size"], name="global_loc_indexer")
        self._sync.registerCallback(lambda image, info: self._worker.put((image, info)))
        self._worker.start()
        self.create_service(Trigger, "~/save_map", self._on_save, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(f"indexing into {p['map_path']}")

    def _work(self, frame_msgs) -> None:
        image_msg, info_msg = frame_msgs
        stamp_ns = conv.stamp_to_ns(image_msg.header.stamp)
        frame = self.params["camera_frame"] or image_msg.header.frame_id
        try:
            camera = conv.camera_from_camera_info(info_msg)
            try:
                map_from_cam, reason = self.lookup(self.params["map_frame"], frame, stamp_ns * 1e-9), ""
            except GlobalLocError as e:
                map_from_cam, reason = None, str(e)
            self.indexer.offer(f"{frame}_{stamp_ns}", stamp_ns * 1e-9, camera, map_from_cam,
                               lambda: conv.image_from_msg(image_msg), reason)
        except GlobalLocError as e:
            self.get_logger().warning(f"frame not indexed: {e}", throttle_duration_sec=5.0)

    def _on_save(self, request, response):
        try:
            m = self.indexer.save()
            response.success, response.message = True, f"wrote {self.params['map_path']}: {m.summary()}"
        except GlobalLocError as e:
            response.success, response.message = False, str(e)
        return response

    def shutdown(self) -> None:
        """Stop the worker and write what was indexed."""
        self._worker.stop(timeout=10.0)
        if self.indexer.num_keyframes:
            self.indexer.save()
            self.get_logger().info(f"wrote {self.params['map_path']} at shutdown")


def main(args=None) -> None:
    spin(MapIndexerNode, "shutdown", args)
