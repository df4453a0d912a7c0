"""The map indexer node: builds a map while the robot drives.

Subscribes to ``image`` + ``camera_info`` (approximate time sync, QoS from ``image_qos``) and
tf. Two worker threads (:class:`~global_loc.ros.worker.DropOldestWorker`,
:class:`~global_loc.map.incremental.IncrementalIndexer`): the first looks up each frame's camera
pose in the map frame at its stamp and selects keyframes by travelled distance and rotation
(cheap, so it keeps up with the camera); the second extracts the features of the selected
keyframes from a queue of ``keyframe_queue_size``, so that a slow computer delays keyframes
rather than losing them. The map is written on
``~/save_map`` (``std_srvs/Trigger``; served by a helper node on a thread of its own, since a
build takes seconds), every ``autosave_every`` keyframes, and at shutdown; once the saved map
holds ``incremental_save_after`` keyframes, a save adds only the keyframes since the last one:
SIGINT or SIGTERM, however often repeated, let the last save finish (see
:func:`~global_loc.ros.node_utils.spin`), so stopping the node loses nothing already indexed.
``/diagnostics`` says how many keyframes are indexed and what keeps frames from being indexed
(no pose in tf, no camera_info, undecodable images). Parameters:
:data:`global_loc.ros.params.MAP_INDEXER_PARAMS`.
"""
from __future__ import annotations

import threading
import traceback

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_srvs.srv import Trigger
from tf2_ros import Buffer, TransformListener

from ..config import resolve_conf
from ..errors import GlobalLocError
from ..map.incremental import IncrementalIndexer, Offer
from . import conversions as conv
from .diagnostics import Diagnostics, problem_level
from .node_utils import declare, read_params, problem_log, spin, steady_timer, subscribe_camera, tf_lookup
from .params import MAP_INDEXER_PARAMS, STREAM_KEYFRAME_DEFAULTS, preset_settings
from .worker import DropOldestWorker


class MapIndexerNode(Node):
    """See the module docstring.

    Raises:
        GlobalLocError: a parameter out of range, an unknown preset or missing weights (the
            node does not start; :func:`main` logs the reason).
    """

    def __init__(self, **kwargs):
        super().__init__("map_indexer", **kwargs)
        declare(self, MAP_INDEXER_PARAMS)
        p = self.params = read_params(self, MAP_INDEXER_PARAMS)
        # the preset, keyframe selection for a stream where it selects none, preset_overrides,
        # then only the parameters that were set
        conf = resolve_conf(p["preset"] or None, p["preset_overrides"],
                            {**preset_settings(MAP_INDEXER_PARAMS, p), "models_dir": p["models_dir"] or None},
                            defaults=STREAM_KEYFRAME_DEFAULTS)
        self.indexer = IncrementalIndexer(conf, p["map_path"], p["map_frame"], p["autosave_every"],
                                          source={"type": "ros2", "node": self.get_fully_qualified_name()},
                                          incremental_after=p["incremental_save_after"])
        self.diagnostics = Diagnostics(log=problem_log(self))
        self._save_lock = threading.Lock()
        self.tf_buffer = Buffer()
        self.tf_listener = TransformListener(self.tf_buffer, self)
        self.lookup = tf_lookup(self.tf_buffer, p["tf_timeout"])
        self._subs, self._sync, self.monitor = subscribe_camera(
            self, p, self._on_frame, lambda m: self._problem("qos", "ERROR", m))
        self._worker = DropOldestWorker(self._select, p["queue_size"], name="global_loc_keyframe_selection")
        self._extractor = DropOldestWorker(self._extract, p["keyframe_queue_size"], name="global_loc_extraction")
        self._worker.start()
        self._extractor.start()
        # ~/save_map builds the whole map (seconds): it is served by a node of its own, which spin()
        # runs on another thread, so that images and tf keep flowing meanwhile
        self.side_nodes = [Node(f"{self.get_name()}_save_map", namespace=self.get_namespace(),
                                use_global_arguments=False, context=self.context)]
        self.side_nodes[0].create_service(Trigger, self.get_fully_qualified_name().rstrip("/") + "/save_map",
                                          self._on_save)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        steady_timer(self, 1.0, self._publish_diagnostics)
        self.get_logger().info(f"indexing {self.monitor.image_topic} into {p['map_path']} "
                               f"(poses: {p['map_frame']} -> camera from tf; preset '{conf.name}', a keyframe "
                               f"every {conf.mapping.keyframe_min_distance_m:g} m or "
                               f"{conf.mapping.keyframe_min_rotation_deg:g} deg)")

    def _problem(self, key: str, level: str, message: str) -> None:
        self.diagnostics.set_problem(key, level, message)

    def _on_frame(self, image_msg, info_msg) -> None:
        self.diagnostics.clear_problem("qos")
        self._worker.put((image_msg, info_msg))

    def _select(self, frame_msgs) -> None:
        """First worker: pose lookup and keyframe selection; keyframes go to the extractor."""
        image_msg, info_msg = frame_msgs
        stamp_ns = conv.stamp_to_ns(image_msg.header.stamp)
        frame = self.params["camera_frame"] or image_msg.header.frame_id
        try:
            camera = conv.camera_from_camera_info(info_msg)
        except GlobalLocError as e:
            self.diagnostics.count("input_errors")
            self._problem("input", "ERROR", f"frame at {stamp_ns * 1e-9:.3f} s not indexed: {e}")
            return
        try:
            map_from_cam, reason = self.lookup(self.params["map_frame"], frame, stamp_ns * 1e-9), ""
        except GlobalLocError as e:
            map_from_cam, reason = None, str(e)
        name = f"{frame}_{stamp_ns}"
        offer = self.indexer.select(name, map_from_cam, reason)
        if offer == Offer.NO_POSE:
            self._problem("tf", "WARN", f"frames without a pose: {reason}")
            return
        self.diagnostics.clear_problem("tf")
        if offer == Offer.ADDED:
            before = self._extractor.dropped
            self._extractor.put((name, stamp_ns * 1e-9, camera, map_from_cam, image_msg))
            if self._extractor.dropped > before:
                self._problem("extraction", "WARN", f"feature extraction falls behind: {self._extractor.dropped} "
                              "keyframes dropped; raise keyframe_min_distance or keyframe_queue_size, or "
                              "drive slower")

    def _extract(self, keyframe) -> None:
        """Second worker: features of one selected keyframe (autosaves when due)."""
        name, stamp, camera, map_from_cam, image_msg = keyframe
        try:
            offer = self.indexer.add(name, stamp, camera, map_from_cam, lambda: conv.image_from_msg(image_msg))
        except GlobalLocError as e:
            self.diagnostics.count("input_errors")
            self._problem("input", "ERROR", f"frame at {stamp:.3f} s not indexed: {e}")
            return
        except Exception as e:  # a bug: go on with the next keyframes, but say so
            self.get_logger().error(traceback.format_exc())
            self._problem("internal", "ERROR", f"internal error, please report: {type(e).__name__}: {e}")
            return
        if offer == Offer.BAD_IMAGE:
            self._problem("input", "ERROR", f"frame at {stamp:.3f} s not indexed: "
                          f"{self.indexer.builder.skipped.get(name, 'undecodable image')}")
            return
        self.diagnostics.clear_problem("input")
        n = self.indexer.num_keyframes
        if n % 10 == 0:
            self.get_logger().info(f"{n} keyframes indexed")

    def _save(self, why: str) -> str:
        with self._save_lock:
            m = self.indexer.save()
        message = f"wrote {self.params['map_path']} ({why}): {m.summary()}"
        self.get_logger().info(message)
        return message

    def _on_save(self, request, response):
        try:
            response.success, response.message = True, self._save("on request")
        except GlobalLocError as e:
            response.success, response.message = False, str(e)
        return response

    def _publish_diagnostics(self) -> None:
        problem = self.monitor.problem()
        if problem:
            self._problem("camera", "ERROR", problem)
        else:
            self.diagnostics.clear_problem("camera")
        n = self.indexer.num_keyframes
        level, message = problem_level(self.diagnostics) or (
            ("OK", f"{n} keyframes indexed") if self.monitor.counts["pair"] else
            ("STALE", "no camera frame received yet"))
        values = {"keyframes": n, **self.indexer.counts, "dropped_frames": self._worker.dropped,
                  "keyframes_waiting": self._extractor.pending, "dropped_keyframes": self._extractor.dropped,
                  **{f"received_{k}": v for k, v in self.monitor.counts.items()}}
        self.diag_pub.publish(conv.make_diagnostic_array(
            conv.rclpy_types, self.get_clock().now().nanoseconds, f"{self.get_name()}: map indexing",
            "global_loc", level, message, values))

    def shutdown(self) -> None:
        """Stop selecting, extract the keyframes still waiting, and write what was indexed."""
        self._worker.stop(timeout=30.0)
        if self._extractor.pending:
            self.get_logger().info(f"extracting the {self._extractor.pending} keyframes still waiting")
        self._extractor.stop(timeout=600.0, drain=True)
        if self.indexer.num_keyframes:
            try:
                self._save(f"at shutdown, {self.indexer.num_keyframes} keyframes")
            except GlobalLocError as e:  # e.g. no 3D point yet: say why, exit cleanly
                self.get_logger().error(f"{self.params['map_path']} not written: {e}")
        else:
            self.get_logger().warning(f"nothing indexed, {self.params['map_path']} not written")


def main(args=None) -> None:
    spin(MapIndexerNode, "shutdown", args)
