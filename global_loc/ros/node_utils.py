"""rclpy helpers shared by the nodes (this module imports rclpy)."""
from __future__ import annotations

import signal
import threading

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.exceptions import ParameterUninitializedException
from rclpy.logging import get_logger
from rclpy.parameter import Parameter
from message_filters import ApproximateTimeSynchronizer, Subscriber
from rclpy.clock import Clock, ClockType
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_ros import Buffer, TransformException

from ..errors import GlobalLocError
from ..geometry.tf_tree import TransformError
from ..geometry.transforms import Pose
from . import conversions as conv
from .diagnostics import StreamMonitor
from .params import ParamSpec, validate

try:  # rclpy >= Iron
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks


_PARAMETER_TYPES = {"bool": Parameter.Type.BOOL, "int": Parameter.Type.INTEGER, "float": Parameter.Type.DOUBLE,
                    "str": Parameter.Type.STRING, "list[str]": Parameter.Type.STRING_ARRAY}


def declare(node, specs: list[ParamSpec]) -> None:
    """Declare ``specs`` with descriptors (description, range, choices, read-only).

    A value given in a parameter file or on the command line replaces the default. An empty
    list in YAML (``preset_overrides: []``) has no type in ROS 2 and leaves the parameter
    *uninitialized*; :func:`read_params` reads that as the default. A parameter that sets a
    preset value (:attr:`~global_loc.ros.params.ParamSpec.preset_key`) is declared with its
    type only: unset unless given (``ros2 param get`` says "Parameter not set"), and then the
    preset decides.

    Raises:
        rclpy.exceptions.InvalidParameterTypeException: a given value of another type than
            the specification's (the message names the parameter).
    """
    for s in specs:
        if node.has_parameter(s.name):
            continue
        d = ParameterDescriptor(description=s.description, read_only=s.read_only)
        if s.range is not None and s.type == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]), to_value=float(s.range[1]))]
        if s.range is not None and s.type == "int":
            d.integer_range = [IntegerRange(from_value=int(s.range[0]), to_value=int(s.range[1]), step=1)]
        if s.choices:
            d.additional_constraints = "one of: " + ", ".join(s.choices)
        if s.preset_key is not None:  # no default of its own: unset unless given, then the preset decides
            default = _PARAMETER_TYPES[s.type]
        elif s.type == "list[str]" and not s.default:
            # an empty default list has no element type: declare the type, the value stays unset
            default = Parameter.Type.STRING_ARRAY
        else:
            default = s.default
        node.declare_parameter(s.name, default, d)


def read_params(node, specs: list[ParamSpec]) -> dict:
    """The values of the declared ``specs``, validated (:func:`~global_loc.ros.params.validate`).

    Raises:
        ConfigError: a value out of range, not among the choices, or a required one left empty.
    """
    values = {}
    for s in specs:
        try:
            v = node.get_parameter(s.name).value
        except ParameterUninitializedException:
            v = None
        values[s.name] = s.default if v is None else v
    return validate(specs, values)


def image_qos(name: str) -> QoSProfile:
    """The subscription QoS of camera topics: ``reliable`` (the default of most camera drivers
    and of ``image_transport``; needed for large images over Fast DDS's default transports) or
    ``sensor_data`` (best effort, depth 5: matches any publisher)."""
    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(depth=10)  # reliable, volatile, keep last: a 1 s stall at 10 Hz loses nothing


def qos_event_callbacks(report) -> SubscriptionEventCallbacks:
    """Event callbacks that call ``report(message)`` when a publisher's QoS cannot match."""

    def incompatible(event):
        report(f"a publisher's QoS is incompatible with this subscription (policy id "
               f"{event.last_policy_kind}, {event.total_count} publisher(s)): a best-effort camera "
               "needs image_qos 'sensor_data'")

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)


def subscribe_camera(node, params: dict, on_pair, report):
    """The camera inputs of a node: ``image`` (or ``image/compressed``) and ``camera_info``
    with the QoS of ``params["image_qos"]``, an approximate time synchroniser
    (``params["sync_slop"]``) that calls ``on_pair(image_msg, info_msg)``, and a
    :class:`~global_loc.ros.diagnostics.StreamMonitor` that counts images, camera_infos and
    pairs (``on_pair`` is counted before it is called). A publisher whose QoS cannot match is
    reported with ``report(message)``.

    Returns:
        ``(subscribers, synchroniser, monitor)``; keep them referenced.
    """
    compressed = params["image_transport"] == "compressed"
    qos = image_qos(params["image_qos"])
    events = qos_event_callbacks(report)
    subs = [Subscriber(node, CompressedImage if compressed else Image, "image/compressed" if compressed else "image",
                       qos_profile=qos, event_callbacks=events),
            Subscriber(node, CameraInfo, "camera_info", qos_profile=qos, event_callbacks=events)]
    monitor = StreamMonitor(subs[0].sub.topic_name, subs[1].sub.topic_name)
    made: list = []  # the synchroniser, made after these callbacks so that they run before its own

    subs[0].registerCallback(lambda m: _saw(node, made, monitor, "image", m))
    subs[1].registerCallback(lambda m: _saw(node, made, monitor, "info", m))
    sync = ApproximateTimeSynchronizer(subs, queue_size=10, slop=params["sync_slop"])
    made.append(sync)

    def pair(image_msg, info_msg):
        monitor.saw("pair")
        on_pair(image_msg, info_msg)

    sync.registerCallback(pair)
    return subs, sync, monitor


def subscribe_rig(node, params: dict, on_frame, report):
    """The camera inputs of a rig: per namespace ``ns`` of ``params["cameras"]``,
    ``<ns>/image_raw`` (or ``<ns>/image_raw/compressed``) and ``<ns>/camera_info``, all in one
    approximate time synchroniser (``params["rig_sync_slop"]``: every camera's image and
    camera_info within it) that calls ``on_frame(image_1, info_1, image_2, info_2, ...)``, and
    one :class:`~global_loc.ros.diagnostics.StreamMonitor` per camera (``pair``: a rig frame
    that holds it).

    Returns:
        ``(subscribers, synchroniser, monitors)``; keep them referenced.
    """
    compressed = params["image_transport"] == "compressed"
    qos = image_qos(params["image_qos"])
    events = qos_event_callbacks(report)
    subs, monitors = [], []
    made: list = []
    names = params["cameras"]
    for ns in names:
        base = ns.rstrip("/")
        image = Subscriber(node, CompressedImage if compressed else Image,
                           f"{base}/image_raw/compressed" if compressed else f"{base}/image_raw",
                           qos_profile=qos, event_callbacks=events)
        info = Subscriber(node, CameraInfo, f"{base}/camera_info", qos_profile=qos, event_callbacks=events)
        others = ", ".join(n for n in names if n != ns)
        monitor = StreamMonitor(image.sub.topic_name, info.sub.topic_name, pair_hint=(
            f"no rig frame forms: the images of {others} do not arrive within rig_sync_slop "
            f"({params['rig_sync_slop']:g} s) of these (are all cameras publishing? triggered together?)"))
        for sub, what in ((image, "image"), (info, "info")):
            sub.registerCallback(lambda m, mon=monitor, w=what: _saw(node, made, mon, w, m))
        subs += [image, info]
        monitors.append(monitor)
    sync = ApproximateTimeSynchronizer(subs, queue_size=10, slop=params["rig_sync_slop"])
    made.append(sync)

    def frame(*msgs):
        for m in monitors:
            m.saw("pair")
        on_frame(*msgs)

    sync.registerCallback(frame)
    return subs, sync, monitors


def _saw(node, made: list, monitor, what: str, msg) -> None:
    """Count a message; drop the synchroniser's newer ones when the camera's clock went back."""
    monitor.saw(what)
    dropped = forget_newer(made[0], conv.stamp_to_ns(msg.header.stamp))
    if dropped:
        topic = monitor.image_topic if what == "image" else monitor.info_topic
        node.get_logger().warning(
            f"camera stamps went back by more than {STAMP_JUMP_BACK_S:g} s on {topic} (a driver restart or a "
            f"clock reset): the {dropped} newer message(s) waiting for their pair were dropped")


#: a camera message stamped this much before the newest one waiting in the synchroniser means
#: the camera's clock went back, seconds
STAMP_JUMP_BACK_S = 1.0


def forget_newer(sync, stamp_ns: int) -> int:
    """Drop from an ``ApproximateTimeSynchronizer``'s queues the messages stamped more than
    :data:`STAMP_JUMP_BACK_S` after ``stamp_ns``; returns how many.

    message_filters keeps the newest ``queue_size`` stamps of each topic and drops the oldest,
    so after a camera's clock goes back (a driver restart, a clock reset) every new message is
    the oldest and is dropped at once: no pair would ever be made again. Called for each message
    before the synchroniser sees it.
    """
    limit = stamp_ns + int(STAMP_JUMP_BACK_S * 1e9)
    dropped = 0
    with sync.lock:
        for queue in sync.queues:
            for t in [t for t in queue if t > limit]:
                del queue[t]
                dropped += 1
    return dropped


def problem_log(node):
    """A :data:`~global_loc.ros.diagnostics.ProblemLog` over ``node``'s logger: the start of a
    problem logged as ERROR or WARN, its end as INFO.

    Each severity has a call site of its own: rclpy keeps one logging context per call site and
    raises ``ValueError: Logger severity cannot be changed between calls`` when one site logs at
    two severities (which killed the node when a WARN came before an ERROR, or the reverse).
    """

    def log(level: str, message: str) -> None:
        logger = node.get_logger()
        if level == "ERROR":
            logger.error(message)
        elif level == "WARN":
            logger.warning(message)
        else:
            logger.info(message)

    return log


def steady_timer(node, period: float, callback):
    """A timer on the steady clock: it ticks with ``use_sim_time`` even when no ``/clock``
    comes (a bag that ended), so ``/diagnostics`` still says how things are."""
    return node.create_timer(period, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def tf_lookup(buffer: Buffer, timeout: float):
    """A :data:`~global_loc.ros.frame_handler.Lookup` over a tf2 buffer."""

    def lookup(target: str, source: str, stamp: float) -> Pose:
        try:
            ts = buffer.lookup_transform(target, source, rclpy.time.Time(nanoseconds=int(stamp * 1e9)),
                                         timeout=Duration(seconds=timeout))
        except TransformException as e:
            raise TransformError(str(e)) from None
        return conv.transform_from_msg(ts.transform)

    return lookup


def _spin_until(node, stop: threading.Event, executor=None) -> None:
    """Spin ``node`` (on ``executor``, or a single-threaded one of its own) until ``stop``."""
    from rclpy.executors import SingleThreadedExecutor

    if executor is None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
    while not stop.is_set() and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)


def spin(node_class, finish: str, args=None) -> None:
    """Run one node on a single-threaded executor until SIGINT or SIGTERM, then call its
    ``finish`` method (stop workers, write what must be written), destroy it and return.

    The nodes' callbacks only queue frames, store transforms and publish, so one thread
    serves them; the heavy work runs on the nodes' own worker threads. A node may list
    ``side_nodes`` (e.g. one serving a slow service): each is spun on a thread of its own. (rclpy's
    multi-threaded executor measured slower here: its bookkeeping per callback kept a core
    busy at a few hundred messages per second, and tf fell a second behind.)

    Ctrl-C in a terminal signals the whole process group: the node gets SIGINT from the
    terminal and again from ``ros2 launch``, which escalates to SIGTERM after its
    ``sigterm_timeout``. The first signal asks the node to stop; every later one is logged and
    otherwise ignored, so ``finish`` always runs to its end (a map indexer's last save is not
    cut short) and the process exits with status 0.

    Raises:
        SystemExit: status 1 when the node cannot start (a
            :class:`~global_loc.errors.GlobalLocError`, logged in one line).
    """
    try:  # rclpy >= Kilted: the callbacks are dispatched from C++, a fraction of the cost
        from rclpy.experimental import EventsExecutor as executor_class
    except ImportError:
        from rclpy.executors import SingleThreadedExecutor as executor_class
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    node_ref: list = []  # the node's logger, once there is a node

    def on_signal(signum, frame):
        again = stop.is_set()
        stop.set()  # first: a second signal may run this handler before the log call returns
        name = signal.Signals(signum).name
        try:
            node_ref[0].info(f"{name} again: still finishing, please wait" if again else f"{name}: finishing")
        except Exception:  # no logger yet, or logging already shut down
            pass

    def install():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, on_signal)

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    install()
    try:
        try:
            node = node_class()
        except GlobalLocError as e:  # a user's mistake: one line, no traceback
            get_logger(node_class.__name__).fatal(f"cannot start: {e}")
            raise SystemExit(1) from None
        node_ref.append(node.get_logger())
        executor = executor_class()
        executor.add_node(node)
        side = [threading.Thread(target=_spin_until, args=(n, stop), daemon=True, name=f"spin_{n.get_name()}")
                for n in getattr(node, "side_nodes", ())]
        for t in side:
            t.start()
        try:
            _spin_until(node, stop, executor)
        finally:
            getattr(node, finish)()
            stop.set()
            for t in side:
                t.join(5.0)
            executor.shutdown(timeout_sec=1.0)
            for n in getattr(node, "side_nodes", ()):
                n.destroy_node()
            node.destroy_node()
    finally:
        try:
            rclpy.try_shutdown(uninstall_handlers=False)
        except TypeError:  # Humble has no uninstall_handlers
            rclpy.try_shutdown()
        # The work is done. Python's finalization would put back the default handlers (a late
        # SIGINT, e.g. the one launch forwards, would then kill the process with -2), unless
        # the signals are ignored.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
