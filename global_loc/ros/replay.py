"""Play a ROS 1 or ROS 2 bag (sqlite3, MCAP) onto a live ROS 2 graph: ``global-loc replay``.

For machines where ``ros2 bag`` is absent, or the bag is ROS 1. The bag is read with
``rosbags``; messages are published at their recorded pace (times ``rate``), with
``rosgraph_msgs/Clock`` on ``/clock`` so that nodes started with ``use_sim_time`` follow the
bag's time. ROS 2 messages are published as recorded (their CDR bytes, nothing decoded); ROS 1
messages are decoded with the bag's own definitions and rebuilt as the ROS 2 messages
(:func:`to_rclpy`). ``/tf_static`` is latched (transient local) and
accumulates every static transform seen, as ``tf2_ros.StaticTransformBroadcaster`` does. With
``loops`` > 1 the run repeats, every header stamp shifted by the run's length per lap, so that
time only moves forward (tf buffers and synchronisers need that).

This module imports rclpy.
"""
from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from ..errors import InputError
from ..io.bags import open_bag

logger = logging.getLogger(__name__)

STATIC_TF = "/tf_static"
CLOCK_TOPIC = "/clock"


def lap_period_ns(start_ns: int, end_ns: int) -> int:
    """The stamp shift between two laps of a bag spanning ``[start_ns, end_ns]``: its length
    and a 0.1 s pause."""
    return end_ns - start_ns + 100_000_000


def message_class(msgtype: str):
    """The rclpy class of a message type named as rosbags does (``sensor_msgs/msg/Image``).

    Raises:
        InputError: no Python package of that message type is installed.
    """
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        raise InputError(f"no ROS 2 message package provides {msgtype} here: install it (e.g. "
                         f"pip install ros-{pkg.replace('_', '-')}, or apt install ros-$ROS_DISTRO-"
                         f"{pkg.replace('_', '-')}), or leave its topic out with --topics") from None


def shift_stamps(msg, offset_ns: int):
    """Add ``offset_ns`` to every ``builtin_interfaces/Time`` inside an rclpy message (header
    stamps, the stamps of each transform of a ``TFMessage``, ...), in place; returns ``msg``."""
    for name, typ in msg.get_fields_and_field_types().items():
        if "/" not in typ:  # a primitive or a sequence of primitives
            continue
        value = getattr(msg, name)
        element = typ.removeprefix("sequence<").split(",")[0].rstrip(">").split("[")[0]
        items = value if (typ.startswith("sequence<") or typ.endswith("]")) else [value]
        for item in items:
            if element == "builtin_interfaces/Time":
                ns = item.sec * 1_000_000_000 + item.nanosec + offset_ns
                item.sec, item.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            else:
                shift_stamps(item, offset_ns)
    return msg


def to_rclpy(obj, cls):
    """The rclpy message ``cls`` with the values of ``obj``, a message decoded by rosbags from
    a ROS 1 bag: fields matched by name, case-insensitively (ROS 1 ``K`` is ROS 2 ``k``); ROS 1
    only fields (``Header.seq``) dropped."""
    msg = cls()
    values = {k.lower(): v for k, v in vars(obj).items()} if hasattr(obj, "__dict__") else \
        {f.lower(): getattr(obj, f) for f in obj.__dataclass_fields__}
    for name, typ in cls.get_fields_and_field_types().items():
        if name.lower() not in values:
            continue
        value = values[name.lower()]
        if "/" not in typ:
            if isinstance(value, np.ndarray) and typ.startswith("sequence<uint8"):
                value = value.tobytes()
            setattr(msg, name, value)
            continue
        current = getattr(msg, name)
        if typ.startswith("sequence<") or typ.endswith("]"):
            element = type(current[0]) if len(current) else _element_class(typ)
            setattr(msg, name, [to_rclpy(v, element) for v in value])
        else:
            setattr(msg, name, to_rclpy(value, type(current)))
    return msg


def _element_class(typ: str):
    """The rclpy class of the elements of ``sequence<pkg/Msg>`` or ``pkg/Msg[N]``."""
    name = typ.removeprefix("sequence<").split(",")[0].rstrip(">").split("[")[0]
    pkg, msg = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), msg)


@dataclass
class ReplayStats:
    """What a replay published: messages per topic, laps, bag seconds and wall seconds."""

    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    laps: int = 0
    bag_seconds: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False

    def format(self) -> str:
        lines = [f"published {sum(self.published.values())} messages in {self.wall_seconds:.1f} s "
                 f"({self.bag_seconds:.1f} s of bag time, {self.laps} lap(s))"
                 + (", interrupted" if self.interrupted else "")]
        lines += [f"  {t}: {n}" for t, n in sorted(self.published.items())]
        lines += [f"  {t}: skipped ({why})" for t, why in sorted(self.skipped_topics.items())]
        return "\n".join(lines)


class BagPlayer:
    """Publishes a bag's messages on a live graph.

    Args:
        node: the rclpy node that owns the publishers.
        bag: ROS 1 ``.bag`` file or ROS 2 bag folder.
        topics: topics to play (default: all whose message package is installed).
        rate: playback speed factor (2.0: twice as fast).
        loops: laps of the bag (0: until stopped).
        clock: publish ``/clock``.
        clock_hz: ``/clock`` messages per wall second (each one a callback in every node
            with ``use_sim_time``: rclpy nodes pay for a high rate).
        qos: ``reliable`` or ``sensor_data`` (best effort) for every topic but ``/tf_static``.

    Raises:
        InputError: a missing or unreadable bag, or a ``topics`` entry the bag lacks.
    """

    def __init__(self, node: Node, bag: str | Path, topics: list[str] | None = None, rate: float = 1.0,
                 loops: int = 1, clock: bool = True, clock_hz: float = 25.0, qos: str = "reliable"):
        if rate <= 0:
            raise InputError(f"--rate must be positive, got {rate}")
        self.node, self.rate, self.loops, self.clock_hz = node, rate, loops, clock_hz
        self.reader = open_bag(Path(bag))
        self.stats = ReplayStats()
        conns = list(self.reader.connections)
        known = {c.topic for c in conns}
        missing = [t for t in topics or [] if t not in known]
        if missing:
            raise InputError(f"the bag has no topic {', '.join(missing)}; its topics: {', '.join(sorted(known))}")
        qos_data = qos_profile_sensor_data if qos == "sensor_data" else QoSProfile(depth=10)
        qos_static = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                reliability=ReliabilityPolicy.RELIABLE)
        self._pubs, self._classes, self._conns = {}, {}, []
        for c in conns:
            if topics and c.topic not in topics:
                continue
            if c.topic in self._pubs:
                self._conns.append(c)
                continue
            try:
                cls = message_class(c.msgtype)
            except InputError as e:
                self.stats.skipped_topics[c.topic] = str(e)
                continue
            self._classes[c.topic] = cls
            self._pubs[c.topic] = node.create_publisher(cls, c.topic, qos_static if c.topic == STATIC_TF else qos_data)
            self._conns.append(c)
        if not self._conns:
            raise InputError(f"nothing to play in {bag}: " + "; ".join(self.stats.skipped_topics.values()))
        self._clock_pub = node.create_publisher(Clock, CLOCK_TOPIC, QoSProfile(depth=1)) if clock else None
        self._static: dict[tuple[str, str], object] = {}
        self.start_ns, self.end_ns = self.reader.start_time, self.reader.end_time
        self.period_ns = lap_period_ns(self.start_ns, self.end_ns)

    def wait_for_subscribers(self, topics: list[str], timeout: float) -> list[str]:
        """Wait until each of ``topics`` has a subscriber; ``TOPIC:N`` asks for N of them.
        Returns those still short of subscribers after ``timeout`` seconds."""
        wanted = {t.rsplit(":", 1)[0]: int(t.rsplit(":", 1)[1]) if ":" in t else 1 for t in topics}
        deadline = time.monotonic() + timeout
        while True:
            short = [f"{t} ({self._pubs[t].get_subscription_count() if t in self._pubs else 'not in the bag'} "
                     f"of {n})" for t, n in wanted.items()
                     if t not in self._pubs or self._pubs[t].get_subscription_count() < n]
            if not short or time.monotonic() > deadline:
                return short
            time.sleep(0.05)

    def _cdr(self, conn, raw: bytes) -> bytes:
        if self.reader.is2:
            return bytes(raw)
        # ROS 1: decode with the bag's own definitions, rebuild as the ROS 2 message
        msg = to_rclpy(self.reader.deserialize(raw, conn.msgtype), self._classes[conn.topic])
        return serialize_message(msg)

    def _publish_clock(self, ns: int) -> None:
        if self._clock_pub is not None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            self._clock_pub.publish(msg)

    def play(self, stop: threading.Event | None = None) -> ReplayStats:
        """Publish until the last lap ends or ``stop`` is set; returns the statistics."""
        stop = stop or threading.Event()
        wall0 = time.monotonic()
        lap = 0
        last_clock, tick = 0.0, 1.0 / self.clock_hz
        while not stop.is_set() and (self.loops == 0 or lap < self.loops):
            offset = lap * self.period_ns
            for conn, ns, raw in self.reader.messages(connections=self._conns):
                due = wall0 + (ns + offset - self.start_ns) * 1e-9 / self.rate
                while not stop.is_set():  # sleep until the message is due, ticking /clock
                    now = time.monotonic()
                    if now - last_clock >= tick:
                        self._publish_clock(self.start_ns + int((now - wall0) * self.rate * 1e9))
                        last_clock = now
                    if now >= due:
                        break
                    time.sleep(max(min(due - now, last_clock + tick - now), 0.0))
                if stop.is_set():
                    break
                self._publish(conn, self._cdr(conn, raw), offset)
                self.stats.bag_seconds = (ns + offset - self.start_ns) * 1e-9
            lap += 1
            self.stats.laps = lap
        self.stats.wall_seconds = time.monotonic() - wall0
        self.stats.interrupted = stop.is_set()
        return self.stats

    def _publish(self, conn, cdr: bytes, offset: int) -> None:
        topic = conn.topic
        if topic == STATIC_TF:  # latched: one message with every static transform so far
            msg = deserialize_message(cdr, self._classes[topic])
            for ts in msg.transforms:
                self._static[(ts.header.frame_id, ts.child_frame_id)] = ts
            msg.transforms = list(self._static.values())
            self._pubs[topic].publish(msg)
        elif offset:
            self._pubs[topic].publish(serialize_message(
                shift_stamps(deserialize_message(cdr, self._classes[topic]), offset)))
        else:
            self._pubs[topic].publish(cdr)
        self.stats.published[topic] = self.stats.published.get(topic, 0) + 1

    def close(self) -> None:
        self.reader.close()


def replay(bag: str | Path, topics: list[str] | None = None, rate: float = 1.0, loops: int = 1,
           clock: bool = True, qos: str = "reliable", wait_for: list[str] | None = None,
           wait_timeout: float = 30.0, progress: bool = True) -> ReplayStats:
    """``global-loc replay``: play ``bag`` in a node of its own until it ends or SIGINT.

    Args:
        wait_for: topics that must have a subscriber before playing starts (e.g. the image
            topic of a localizer that is still loading its map); ``TOPIC:N`` waits for N.
    Raises:
        InputError: see :class:`BagPlayer`.
    """
    stop = threading.Event()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = Node("global_loc_replay")
    player = None
    try:
        player = BagPlayer(node, bag, topics, rate, loops, clock, qos=qos)
        for t, why in player.stats.skipped_topics.items():
            logger.warning("skipping %s: %s", t, why)
        if wait_for:
            alone = player.wait_for_subscribers(wait_for, wait_timeout)
            if alone:
                logger.warning("too few subscribers on %s after %.0f s; playing anyway", ", ".join(alone),
                               wait_timeout)
        else:
            time.sleep(0.5)  # let discovery match the subscribers that are already there
        if progress:
            logger.info("playing %s (%.1f s at rate %g%s)", bag, (player.end_ns - player.start_ns) * 1e-9, rate,
                        ", looping" if loops == 0 else f", {loops} lap(s)" if loops > 1 else "")
        stats = player.play(stop)
        time.sleep(0.2)  # let the last messages leave before the participant goes
        return stats
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        rclpy.try_shutdown()
        signal.signal(signal.SIGINT, previous)
