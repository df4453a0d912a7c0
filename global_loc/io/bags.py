"""ROS 1 and ROS 2 bags (sqlite3 and MCAP) through the ``rosbags`` library; no ROS needed.

Reading: :func:`inspect_bag` lists what a bag holds; :class:`BagReader` gives decoded camera
frames with their cameras and poses, taken from ``/tf`` + ``/tf_static`` or from an odometry
or pose topic composed with the static camera extrinsics. Writing: :class:`BagWriter` makes
ROS 2 (sqlite3 or MCAP) or ROS 1 bags from messages built with
:mod:`global_loc.ros.conversions`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import GlobalLocError, InputError
from ..geometry.camera import Camera
from ..geometry.tf_tree import TransformBuffer, TransformError
from ..geometry.transforms import Pose
from ..ros import conversions as conv

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POSE_TYPES = (
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseStamped",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
)


def bag_format(path: str | os.PathLike) -> str:
    """``"ros1"``, ``"ros2-sqlite3"`` or ``"ros2-mcap"`` for an existing bag.

    Raises:
        InputError: a missing path or one that is not a bag.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"bag {path} does not exist")
    if path.is_file() and path.suffix == ".bag":
        return "ros1"
    if path.is_dir() and (path / "metadata.yaml").exists():
        if list(path.glob("*.mcap")):
            return "ros2-mcap"
        return "ros2-sqlite3"
    if path.is_file() and path.suffix in (".db3", ".mcap"):
        raise InputError(f"{path} is one file of a ROS 2 bag; pass its folder {path.parent}")
    raise InputError(
        f"{path} is not a bag: expected a ROS 1 .bag file or a ROS 2 bag folder with metadata.yaml"
    )


def open_bag(path: Path):
    """An open ``rosbags.highlevel.AnyReader`` over one bag (ROS 1 or ROS 2, any storage).

    Raises:
        InputError: a missing path, one that is not a bag, or a bag rosbags cannot read.
    """
    from rosbags.highlevel import AnyReader

    bag_format(path)
    reader = AnyReader([path])
    try:
        reader.open()
    except Exception as e:  # rosbags raises its own reader errors
        raise InputError(f"cannot read bag {path}: {e}") from None
    return reader


def _header_stamp(msg, fallback_ns: int) -> int:
    header = getattr(msg, "header", None)
    if header is not None:
        ns = conv.stamp_to_ns(header.stamp)
        if ns > 0:
            return ns
    return fallback_ns


# --------------------------------------------------------------------------------------------
@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int
    frames: list[str] = field(default_factory=list)


@dataclass
class BagInfo:
    """What :func:`inspect_bag` finds: format, time span, topics, and the tf tree."""

    path: Path
    format: str
    start: float
    end: float
    topics: list[TopicInfo]
    tf_edges: list[tuple[str, str, bool, int]]

    @property
    def duration(self) -> float:
        return self.end - self.start

    def format_text(self) -> str:
        lines = [
            f"bag:      {self.path} ({self.format})",
            f"time:     {self.start:.3f} .. {self.end:.3f} s ({self.duration:.3f} s)",
            f"messages: {sum(t.count for t in self.topics)} on {len(self.topics)} topics",
            "",
        ]
        w = max([len(t.name) for t in self.topics] + [5])
        v = max([len(t.msgtype) for t in self.topics] + [4])
        lines.append(f"{'topic':<{w}}  {'type':<{v}}  {'count':>6}  frames")
        for t in self.topics:
            lines.append(f"{t.name:<{w}}  {t.msgtype:<{v}}  {t.count:>6}  {', '.join(t.frames) or '-'}")
        if self.tf_edges:
            lines += ["", "tf tree (parent -> child):"]
            for parent, child, static, n in self.tf_edges:
                lines.append(f"  {parent} -> {child} ({'static' if static else f'{n} samples'})")
        else:
            lines += ["", "tf tree: none (no /tf or /tf_static)"]
        return "\n".join(lines)


def inspect_bag(path: str | os.PathLike, frames_sample: int = 50) -> BagInfo:
    """Topics with types, message counts and ``header.frame_id`` values, the time span and
    the tf tree of a bag.

    Args:
        frames_sample: messages per topic deserialised to collect frame ids.
    """
    path = Path(path)
    fmt = bag_format(path)
    reader = open_bag(path)
    try:
        topics = {}
        seen: dict[str, int] = {}
        tf = TransformBuffer()
        for c in reader.connections:
            t = topics.setdefault(c.topic, TopicInfo(c.topic, c.msgtype, 0))
            t.count += c.msgcount
        for c, ns, raw in reader.messages():
            if c.msgtype == TF_TYPE:
                _add_tf(tf, reader.deserialize(raw, c.msgtype), c.topic.endswith("tf_static"))
                continue
            n = seen.get(c.topic, 0)
            if n >= frames_sample:
                continue
            seen[c.topic] = n + 1
            msg = reader.deserialize(raw, c.msgtype)
            header = getattr(msg, "header", None)
            fr = getattr(header, "frame_id", None)
            t = topics[c.topic]
            if fr and fr not in t.frames:
                t.frames.append(fr)
            child = getattr(msg, "child_frame_id", None)
            if child and f"child: {child}" not in t.frames:
                t.frames.append(f"child: {child}")
        return BagInfo(path, fmt, reader.start_time * 1e-9, reader.end_time * 1e-9,
                       sorted(topics.values(), key=lambda t: t.name), tf.edges())
    finally:
        reader.close()


def _add_tf(tf: TransformBuffer, msg, static: bool) -> None:
    for ts in msg.transforms:
        try:
            tf.add(ts.header.frame_id, ts.child_frame_id, conv.stamp_to_sec(ts.header.stamp),
                   conv.transform_from_msg(ts.transform), static=static)
        except TransformError as e:
            logger.warning("ignoring a transform: %s", e)


def _pose_msg_pose(msg) -> Pose:
    pose = msg.pose
    if hasattr(pose, "pose"):  # Odometry, PoseWithCovarianceStamped
        pose = pose.pose
    return conv.pose_from_msg(pose)


# --------------------------------------------------------------------------------------------
@dataclass
class BagFrame:
    """One camera frame of a bag.

    Attributes:
        name: ``<image topic without slashes>_<stamp ns>``.
        stamp_ns: header stamp (nanoseconds; the bag time where the header has none).
        frame_id: the image's ``header.frame_id``.
        camera: its camera.
        map_from_cam: the camera pose in the map frame, or None where no pose is known.
        reason: why ``map_from_cam`` is None.
    """

    name: str
    stamp_ns: int
    frame_id: str
    camera: Camera
    map_from_cam: Pose | None
    reason: str
    _raw: bytes
    _msgtype: str
    _reader: object

    @property
    def stamp(self) -> float:
        return self.stamp_ns * 1e-9

    def image(self) -> np.ndarray:
        """Decode the image: (H, W) grey or (H, W, 3) RGB uint8.

        Raises:
            ImageReadError: a corrupt message or an unknown encoding.
            InputError: an image whose size differs from its camera (a wrong camera, not a
                bad frame).
        """
        msg = self._reader.deserialize(self._raw, self._msgtype)
        img = conv.image_from_msg(msg)
        h, w = img.shape[:2]
        if (w, h) != (self.camera.width, self.camera.height):
            raise InputError(
                f"image {self.name} is {w}x{h} but its camera is {self.camera.width}x"
                f"{self.camera.height}; check the camera_info topic or --cameras"
            )
        return img


class BagReader:
    """Camera frames of one image topic of a bag, with cameras and poses.

    Args:
        path: the bag (ROS 1 ``.bag`` file or ROS 2 folder).
        image_topic: a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` topic.
        camera_info_topic: its ``sensor_msgs/CameraInfo`` topic (default: ``camera_info``
            beside the image topic, where it exists).
        camera: the camera to use instead of camera_info.
        map_frame: the frame the poses are wanted in.
        camera_frame: the camera's tf frame (default: the images' ``header.frame_id``).
        pose_topic: a ``nav_msgs/Odometry`` / ``geometry_msgs/PoseStamped`` topic giving the
            pose of a body frame in ``map_frame``; the camera pose is that composed with the
            static transform body -> camera from tf. Default: poses from ``/tf`` alone.
        body_frame: the body frame of ``pose_topic`` (default: the Odometry's
            ``child_frame_id``, else ``base_link``).
        tf_tolerance: seconds a tf lookup may reach outside the samples.

    Raises:
        InputError: a missing topic (the message lists the bag's topics), or no camera
            information (no camera_info and no ``camera``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        image_topic: str,
        camera_info_topic: str | None = None,
        camera: Camera | None = None,
        map_frame: str = "map",
        camera_frame: str | None = None,
        pose_topic: str | None = None,
        body_frame: str | None = None,
        tf_tolerance: float = 0.05,
    ):
        self.path = Path(path)
        self._reader = open_bag(self.path)
        self.map_frame = map_frame
        self.camera_frame = camera_frame
        self.body_frame = body_frame
        by_topic = {c.topic: c for c in self._reader.connections}
        self._topics = {c.topic: c.msgtype for c in self._reader.connections}

        def missing(topic, what):
            listing = "; ".join(f"{t} ({m})" for t, m in sorted(self._topics.items()))
            return InputError(f"the bag has no {what} topic '{topic}'. Its topics: {listing}")

        if image_topic not in by_topic:
            raise missing(image_topic, "image")
        if by_topic[image_topic].msgtype not in IMAGE_TYPES:
            raise InputError(
                f"topic '{image_topic}' carries {by_topic[image_topic].msgtype}, not "
                "sensor_msgs/Image or sensor_msgs/CompressedImage"
            )
        self.image_topic = image_topic
        self._image_conns = [c for c in self._reader.connections if c.topic == image_topic]

        # the camera
        self._camera_infos: list[tuple[int, Camera]] = []
        self._fixed_camera = camera
        if camera is None:
            info_topic = camera_info_topic or self._guess_info_topic(image_topic)
            if info_topic is None or info_topic not in by_topic:
                infos = [t for t, m in self._topics.items() if m == CAMERA_INFO_TYPE]
                hint = (f"its CameraInfo topics are {', '.join(infos)}: pass one with "
                        "--camera-info-topic" if infos else "it has no sensor_msgs/CameraInfo topic")
                raise InputError(
                    f"no camera information for '{image_topic}': "
                    + (f"topic '{camera_info_topic}' is not in the bag; " if camera_info_topic else "")
                    + f"{hint}. Give the camera with --cameras FILE, one line "
                    "'NAME MODEL WIDTH HEIGHT PARAMS...' (COLMAP models, e.g. "
                    f"'{image_topic} OPENCV_FISHEYE 848 800 fx fy cx cy k1 k2 k3 k4')"
                )
            self._read_camera_infos(info_topic)

        # the poses
        self.tf = TransformBuffer(tolerance=tf_tolerance)
        self._pose_series: TransformBuffer | None = None
        tf_conns = [c for c in self._reader.connections if c.msgtype == TF_TYPE]
        pose_conns = []
        if pose_topic is not None:
            if pose_topic not in by_topic:
                raise missing(pose_topic, "pose")
            if by_topic[pose_topic].msgtype not in POSE_TYPES:
                raise InputError(
                    f"topic '{pose_topic}' carries {by_topic[pose_topic].msgtype}; a pose topic must "
                    f"be one of {', '.join(POSE_TYPES)}"
                )
            pose_conns = [c for c in self._reader.connections if c.topic == pose_topic]
            self._pose_series = TransformBuffer(tolerance=tf_tolerance)
        # (an empty connection list would mean "every message" to rosbags)
        for c, ns, raw in self._reader.messages(connections=tf_conns + pose_conns) if tf_conns + pose_conns else ():
            msg = self._reader.deserialize(raw, c.msgtype)
            if c.msgtype == TF_TYPE:
                _add_tf(self.tf, msg, c.topic.endswith("tf_static"))
            else:
                frame = msg.header.frame_id.lstrip("/")
                if frame != map_frame:
                    raise InputError(
                        f"pose topic '{pose_topic}' gives poses in frame '{frame}', not in the map "
                        f"frame '{map_frame}'; pass --map-frame {frame}"
                    )
                if self.body_frame is None:
                    self.body_frame = (getattr(msg, "child_frame_id", "") or "base_link").lstrip("/")
                self._pose_series.add(map_frame, "__body__", _header_stamp(msg, ns) * 1e-9, _pose_msg_pose(msg))

    def _guess_info_topic(self, image_topic: str) -> str | None:
        base = image_topic.rsplit("/", 1)[0]
        if image_topic.endswith("/compressed"):
            base = base.rsplit("/", 1)[0]
        cand = f"{base}/camera_info"
        return cand if self._topics.get(cand) == CAMERA_INFO_TYPE else None

    def _read_camera_infos(self, topic: str) -> None:
        conns = [c for c in self._reader.connections if c.topic == topic]
        if conns[0].msgtype != CAMERA_INFO_TYPE:
            raise InputError(f"topic '{topic}' carries {conns[0].msgtype}, not sensor_msgs/CameraInfo")
        last = None
        for c, ns, raw in self._reader.messages(connections=conns):
            msg = self._reader.deserialize(raw, c.msgtype)
            if last is not None and msg.width == last[1].width and np.array_equal(
                np.asarray(conv.field(msg, "k")), last[2]
            ):
                continue  # unchanged
            cam = conv.camera_from_camera_info(msg)
            last = (ns, msg, np.asarray(conv.field(msg, "k")))
            self._camera_infos.append((_header_stamp(msg, ns), cam))
        if not self._camera_infos:
            raise InputError(f"camera_info topic '{topic}' has no messages; give --cameras")

    def camera_at(self, stamp_ns: int) -> Camera:
        """The camera in force at ``stamp_ns`` (the latest camera_info before it, or the first)."""
        if self._fixed_camera is not None:
            return self._fixed_camera
        stamps = [s for s, _ in self._camera_infos]
        i = max(int(np.searchsorted(stamps, stamp_ns, side="right")) - 1, 0)
        return self._camera_infos[i][1]

    def map_from_camera(self, camera_frame: str, stamp: float) -> Pose:
        """The camera pose in the map frame at ``stamp`` seconds.

        Raises:
            TransformError: where tf (or the pose topic) has no pose for that time.
        """
        if self._pose_series is None:
            return self.tf.lookup(self.map_frame, camera_frame, stamp)
        map_from_body = self._pose_series.lookup(self.map_frame, "__body__", stamp)
        if self.body_frame == camera_frame:
            return map_from_body
        try:
            body_from_cam = self.tf.lookup(self.body_frame, camera_frame, stamp)
        except TransformError as e:
            raise TransformError(
                f"{e}; the pose topic describes '{self.body_frame}', so the camera extrinsics "
                f"{self.body_frame} -> {camera_frame} must be in /tf_static (or pass "
                f"--camera-frame {self.body_frame} if the pose is the camera's own)"
            ) from None
        return map_from_body * body_from_cam

    def lookup(self, target: str, source: str, stamp: float) -> Pose:
        """``target_from_source`` from the bag's tf at ``stamp`` seconds."""
        return self.tf.lookup(target, source, stamp)

    @property
    def num_frames(self) -> int:
        return sum(c.msgcount for c in self._image_conns)

    def frames(self) -> Iterator[BagFrame]:
        """Every frame of the image topic in time order; images are decoded on demand."""
        prefix = self.image_topic.strip("/").replace("/", "_")
        for c, ns, raw in self._reader.messages(connections=self._image_conns):
            msg = self._reader.deserialize(raw, c.msgtype)
            stamp = _header_stamp(msg, ns)
            frame_id = self.camera_frame or msg.header.frame_id.lstrip("/")
            try:
                pose, reason = self.map_from_camera(frame_id, stamp * 1e-9), ""
            except GlobalLocError as e:
                pose, reason = None, str(e)
            yield BagFrame(f"{prefix}_{stamp}", stamp, frame_id, self.camera_at(stamp), pose, reason,
                           raw, c.msgtype, self._reader)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------------------------
class BagWriter:
    """Writes messages to a new bag.

    Args:
        path: ROS 2: a folder to create; ROS 1: a ``.bag`` file.
        format: ``mcap``, ``sqlite3`` (ROS 2) or ``ros1``.

    Use :attr:`types` with the builders of :mod:`global_loc.ros.conversions`::

        with BagWriter(path, "mcap") as bag:
            bag.write("/tf", "tf2_msgs/msg/TFMessage", stamp_ns, make_tf_message(bag.types, [...]))
    """

    def __init__(self, path: str | os.PathLike, format: str = "mcap"):
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        self.format = format
        if self.path.exists():
            raise InputError(f"{self.path} exists already; choose a new bag path")
        if format == "ros1":
            from rosbags.rosbag1 import Writer
            from rosbags.typesys import get_types_from_msg

            self.typestore = get_typestore(Stores.ROS1_NOETIC)
            if TF_TYPE not in self.typestore.types:  # the noetic store lacks tf2_msgs
                self.typestore.register(get_types_from_msg(
                    "geometry_msgs/TransformStamped[] transforms", TF_TYPE))
            self._writer = Writer(self.path)
            self._serialize = self.typestore.serialize_ros1
        elif format in ("mcap", "sqlite3"):
            from rosbags.rosbag2 import StoragePlugin, Writer

            self.typestore = get_typestore(Stores.ROS2_HUMBLE)
            plugin = StoragePlugin.MCAP if format == "mcap" else StoragePlugin.SQLITE3
            self._writer = Writer(self.path, version=8, storage_plugin=plugin)
            self._serialize = self.typestore.serialize_cdr
        else:
            raise InputError(f"unknown bag format '{format}'; use mcap, sqlite3 or ros1")
        self.types = conv.rosbags_types(self.typestore)
        self._connections: dict[str, object] = {}
        self._writer.open()

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            kwargs = {}
            if self.format == "ros1" and topic == "/tf_static":
                kwargs["latching"] = 1
            conn = self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self.typestore, **kwargs
            )
        self._writer.write(conn, int(stamp_ns), self._serialize(msg, msgtype))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
