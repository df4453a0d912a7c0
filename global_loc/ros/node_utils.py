"""rclpy helpers shared by the nodes (this module imports rclpy)."""
from __future__ import annotations

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from tf2_ros import Buffer, TransformException

from ..geometry.tf_tree import TransformError
from ..geometry.transforms import Pose
from . import conversions as conv
from .params import ParamSpec, validate


def declare(node, specs: list[ParamSpec]) -> dict:
    """Declare ``specs`` with descriptors and ranges, then read and validate their values."""
    for s in specs:
        d = ParameterDescriptor(description=s.description, read_only=s.read_only)
        if s.range is not None and s.type == "float":
            d.floating_point_range = [FloatingPointRange(from_value=float(s.range[0]), to_value=float(s.range[1]))]
        if s.range is not None and s.type == "int":
            d.integer_range = [IntegerRange(from_value=int(s.range[0]), to_value=int(s.range[1]), step=1)]
        if s.choices:
            d.additional_constraints = "one of: " + ", ".join(s.choices)
        default = Parameter.Type.STRING_ARRAY if s.type == "list[str]" and not s.default else s.default
        if not node.has_parameter(s.name):
            node.declare_parameter(s.name, default, d)
    values = {}
    for s in specs:
        v = node.get_parameter(s.name).value
        values[s.name] = [] if v is None and s.type == "list[str]" else v
    return validate(specs, values)


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


def spin(node_class, finish: str, args=None) -> None:
    """Run one node on a multi-threaded executor until Ctrl-C or shutdown, then call its
    ``finish`` method (stop workers, write what must be written) and clean up."""
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = node_class()
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        getattr(node, finish)()
        node.destroy_node()
        rclpy.try_shutdown()
