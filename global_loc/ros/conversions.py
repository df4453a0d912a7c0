"""Conversions between ROS messages and global_loc types, without importing ROS.

Readers accept any object with the message's field names: rclpy messages, the message classes
of the ``rosbags`` library (ROS 2 and ROS 1 stores, whose field names differ in case, e.g.
``CameraInfo.k`` and ``.K``), or a ``SimpleNamespace``. Builders take a *type factory*
``types(name) -> class`` (``"geometry_msgs/msg/Pose"`` -> the class), so the same code makes
rclpy messages in a node and rosbags messages in a bag.

Conventions: ROS poses and transforms are ``parent_from_child`` with quaternions ``x y z w``;
``sensor_msgs/CameraInfo`` uses OpenCV's pixel convention, global_loc's camera parameters
COLMAP's (see :mod:`global_loc.geometry.camera`); the offset is applied here and only here.
"""
from __future__ import annotations

import dataclasses
import importlib
from types import SimpleNamespace
from typing import Callable

import cv2
import numpy as np

from ..errors import CameraModelError, ImageReadError, InputError
from ..geometry.camera import COLMAP_PIXEL_OFFSET, Camera
from ..geometry.transforms import Pose, quat_to_wxyz, quat_to_xyzw

TypeFactory = Callable[[str], type]


# --- field access ------------------------------------------------------------------------------
def field(msg, name: str, default=None):
    """``msg.name``, also under the other case (ROS 1 ``K`` vs ROS 2 ``k``)."""
    for n in (name, name.upper(), name.lower()):
        if hasattr(msg, n):
            return getattr(msg, n)
    if default is not None:
        return default
    raise InputError(f"message {type(msg).__name__} has no field '{name}'")


def stamp_to_sec(stamp) -> float:
    """Seconds (float) from a ``builtin_interfaces/Time`` (``sec``/``nanosec``, or ROS 1
    ``secs``/``nsecs``)."""
    if hasattr(stamp, "sec"):
        return float(stamp.sec) + float(stamp.nanosec) * 1e-9
    return float(stamp.secs) + float(stamp.nsecs) * 1e-9


def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds from a ``builtin_interfaces/Time``."""
    if hasattr(stamp, "sec"):
        return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return int(stamp.secs) * 1_000_000_000 + int(stamp.nsecs)


def pose_from_msg(msg) -> Pose:
    """``parent_from_child`` from a ``geometry_msgs/Pose`` (position, orientation)."""
    p, q = msg.position, msg.orientation
    return Pose.from_qt(quat_to_wxyz([q.x, q.y, q.z, q.w]), [p.x, p.y, p.z])


def transform_from_msg(msg) -> Pose:
    """``parent_from_child`` from a ``geometry_msgs/Transform`` (translation, rotation)."""
    t, q = msg.translation, msg.rotation
    return Pose.from_qt(quat_to_wxyz([q.x, q.y, q.z, q.w]), [t.x, t.y, t.z])


# --- cameras -----------------------------------------------------------------------------------
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


def camera_from_camera_info(msg) -> Camera:
    """The camera of the images that go with a ``sensor_msgs/CameraInfo``.

    ``plumb_bob`` maps to PINHOLE / OPENCV / FULL_OPENCV (by which coefficients are non-zero),
    ``rational_polynomial`` to FULL_OPENCV, ``equidistant`` to OPENCV_FISHEYE. Binning and a
    region of interest are applied, so the camera fits the published images.

    Raises:
        CameraModelError: an unknown distortion model or a wrong number of coefficients.
        InputError: an uncalibrated camera (all-zero K).
    """
    K = np.asarray(field(msg, "k"), np.float64).reshape(3, 3)
    d = np.asarray(field(msg, "d", []), np.float64).reshape(-1)
    model = str(field(msg, "distortion_model", "")).strip()
    width, height = int(msg.width), int(msg.height)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(
            "camera_info has no calibration (its K is zero); calibrate the camera or give the "
            "camera with --cameras"
        )
    fx, fy = K[0, 0], K[1, 1]
    cx, cy = K[0, 2] + COLMAP_PIXEL_OFFSET, K[1, 2] + COLMAP_PIXEL_OFFSET
    nz = np.abs(d) > 0
    if model in ("plumb_bob", "") and d.size in (0, 4, 5):
        d5 = np.zeros(5)
        d5[: d.size] = d
        if not nz.any():
            cam_model, params = "PINHOLE", [fx, fy, cx, cy]
        elif d5[4] == 0:
            cam_model, params = "OPENCV", [fx, fy, cx, cy, *d5[:4]]
        else:
            cam_model, params = "FULL_OPENCV", [fx, fy, cx, cy, *d5[:4], d5[4], 0, 0, 0]
    elif model == "rational_polynomial" and d.size in (8, 12, 14):
        cam_model, params = "FULL_OPENCV", [fx, fy, cx, cy, *d[:8]]
        if d.size > 8 and np.any(d[8:] != 0):
            raise CameraModelError(
                "rational_polynomial with thin-prism or tilt coefficients (d[8:]) is not supported"
            )
    elif model == "equidistant" and d.size == 4:
        cam_model, params = "OPENCV_FISHEYE", [fx, fy, cx, cy, *d]
    elif model in DISTORTION_MODELS:
        raise CameraModelError(f"camera_info distortion model '{model}' with {d.size} coefficients")
    else:
        raise CameraModelError(
            f"unknown camera_info distortion model '{model}'; supported: {', '.join(DISTORTION_MODELS)}"
        )
    cam = Camera(cam_model, width, height, params)
    # binning and ROI: the published image is a crop of the calibrated one, then subsampled
    roi = getattr(msg, "roi", None)
    bx = max(int(getattr(msg, "binning_x", 0) or 0), 1)
    by = max(int(getattr(msg, "binning_y", 0) or 0), 1)
    x0 = y0 = 0
    if roi is not None and int(roi.width) > 0 and int(roi.height) > 0:
        x0, y0, width, height = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if (x0, y0, bx, by) != (0, 0, 1, 1) or (width, height) != (cam.width, cam.height):
        p = cam.params.copy()  # fx fy cx cy first for every model made above
        p[0], p[1] = p[0] / bx, p[1] / by
        p[2], p[3] = (p[2] - x0) / bx, (p[3] - y0) / by
        cam = Camera(cam_model, width // bx, height // by, p)
    return cam


def camera_info_fields(camera: Camera) -> dict:
    """The fields of a ``sensor_msgs/CameraInfo`` for ``camera`` (ROS 2 names)."""
    p = camera.params
    m = camera.model
    if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy = p[1], p[2]
        extra = list(p[3:])
    else:
        fx, fy, cx, cy = p[:4]
        extra = list(p[4:])
    if m in ("SIMPLE_PINHOLE", "PINHOLE"):
        model, d = "plumb_bob", [0.0] * 5
    elif m == "SIMPLE_RADIAL":
        model, d = "plumb_bob", [extra[0], 0.0, 0.0, 0.0, 0.0]
    elif m == "RADIAL":
        model, d = "plumb_bob", [extra[0], extra[1], 0.0, 0.0, 0.0]
    elif m == "OPENCV":
        model, d = "plumb_bob", extra + [0.0]
    elif m == "FULL_OPENCV":
        model, d = "rational_polynomial", extra
    elif m == "OPENCV_FISHEYE":
        model, d = "equidistant", extra
    else:  # pragma: no cover - Camera rejects other models
        raise CameraModelError(f"no CameraInfo form for {m}")
    cx, cy = cx - COLMAP_PIXEL_OFFSET, cy - COLMAP_PIXEL_OFFSET
    K = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    P = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return {
        "height": camera.height,
        "width": camera.width,
        "distortion_model": model,
        "d": np.array(d, np.float64),
        "k": np.array(K, np.float64),
        "r": np.eye(3).reshape(-1),
        "p": np.array(P, np.float64),
        "binning_x": 0,
        "binning_y": 0,
    }


# --- images ------------------------------------------------------------------------------------
_MONO = ("mono8", "mono16", "8UC1", "16UC1")


def image_from_msg(msg) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``.

    Raw images: every common encoding (mono8, mono16, rgb8, bgr8, rgba8, bgra8, bayer_*,
    yuv422, ...) through ``rosbags.image``, with row padding (``step``) removed. Compressed
    images: JPEG or PNG, grey or colour, told apart by the decoded channel count.

    Returns:
        (H, W) uint8 grey for mono sources, else (H, W, 3) uint8 RGB.
    Raises:
        ImageReadError: an unknown encoding, short data, or undecodable compressed bytes.
    """
    if hasattr(msg, "format"):
        return _decode_compressed(msg)
    from rosbags.image import ImageError, image_to_cvimage

    encoding = str(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if h <= 0 or w <= 0:
        raise ImageReadError(f"image message has size {w}x{h}")
    if data.size < step * h:
        raise ImageReadError(
            f"image message holds {data.size} bytes, but step {step} x height {h} needs {step * h}"
        )
    try:
        from rosbags.image.image import to_cvtype

        bits, _, _, channels = to_cvtype(encoding)
    except ImageError:
        raise ImageReadError(
            f"unknown image encoding '{encoding}'; supported: mono8, mono16, rgb8, bgr8, rgba8, "
            "bgra8, bayer_rggb8/bggr8/gbrg8/grbg8 (and 16-bit), yuv422, nv12, nv21"
        ) from None
    row = w * channels * bits // 8
    if step < row:
        raise ImageReadError(f"image message step {step} is smaller than a row ({row} bytes) of {encoding}")
    if step != row:
        data = data[: step * h].reshape(h, step)[:, :row].reshape(-1)
        msg = SimpleNamespace(encoding=encoding, height=h, width=w, step=row,
                              is_bigendian=msg.is_bigendian, data=data)
    target = "mono8" if encoding in _MONO else "rgb8"
    try:
        img = image_to_cvimage(msg, target)
    except (ImageError, TypeError, ValueError) as e:
        raise ImageReadError(f"image message with encoding '{encoding}' cannot be converted: {e}") from None
    return np.ascontiguousarray(img, dtype=np.uint8)


def _decode_compressed(msg) -> np.ndarray:
    fmt = str(msg.format)
    img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(
            f"compressed image (format '{fmt}', {len(msg.data)} bytes) cannot be decoded: "
            "the data are corrupt or not JPEG/PNG"
        )
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[:, :, 0]
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(f"compressed image with {img.shape[2]} channels")


# --- building messages ---------------------------------------------------------------------------
def rclpy_types(name: str) -> type:
    """Type factory for rclpy: ``"geometry_msgs/msg/Pose"`` -> ``geometry_msgs.msg.Pose``."""
    pkg, sub, cls = name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), cls)


def rosbags_types(typestore) -> TypeFactory:
    """Type factory over a ``rosbags`` typestore."""
    return lambda name: typestore.types[name]


def _field_names(cls) -> list[str]:
    """The fields a message needs values for (constants such as ``OK`` excluded)."""
    if dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("__")
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return list(cls.get_fields_and_field_types())


def new(types: TypeFactory, msgtype: str, /, **values):
    """Construct message ``msgtype`` from ``values``, matching field names case-insensitively
    (ROS 1 ``K`` and ROS 2 ``k``) and filling a ROS 1 header's ``seq`` with 0."""
    cls = types(msgtype)
    names = _field_names(cls)
    lower = {k.lower(): v for k, v in values.items()}
    kwargs = {}
    for n in names:
        if n.lower() in lower:
            kwargs[n] = lower[n.lower()]
        elif n == "seq":
            kwargs[n] = 0
    missing = [n for n in names if n not in kwargs]
    if missing and dataclasses.is_dataclass(cls):
        raise InputError(f"building {msgtype}: no value for field(s) {', '.join(missing)}")
    return cls(**kwargs)


def make_time(types: TypeFactory, t: float | int):
    """``builtin_interfaces/Time`` from seconds (float) or nanoseconds (int)."""
    ns = t if isinstance(t, (int, np.integer)) else int(round(float(t) * 1e9))
    return new(types, "builtin_interfaces/msg/Time", sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def make_header(types: TypeFactory, frame_id: str, stamp: float | int):
    return new(types, "std_msgs/msg/Header", stamp=make_time(types, stamp), frame_id=frame_id)


def make_pose(types: TypeFactory, pose: Pose):
    """``geometry_msgs/Pose`` of ``parent_from_child``."""
    q = quat_to_xyzw(pose.q_wxyz)
    return new(
        types, "geometry_msgs/msg/Pose",
        position=new(types, "geometry_msgs/msg/Point", x=float(pose.t[0]), y=float(pose.t[1]), z=float(pose.t[2])),
        orientation=new(types, "geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )


def make_transform_stamped(types: TypeFactory, parent: str, child: str, stamp, parent_from_child: Pose):
    q = quat_to_xyzw(parent_from_child.q_wxyz)
    t = parent_from_child.t
    tr = new(
        types, "geometry_msgs/msg/Transform",
        translation=new(types, "geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=new(types, "geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )
    return new(types, "geometry_msgs/msg/TransformStamped", header=make_header(types, parent, stamp),
               child_frame_id=child, transform=tr)


def make_tf_message(types: TypeFactory, transforms: list):
    return new(types, "tf2_msgs/msg/TFMessage", transforms=list(transforms))


def make_pose_with_covariance_stamped(types: TypeFactory, frame_id: str, stamp, pose: Pose,
                                      covariance: np.ndarray):
    """``geometry_msgs/PoseWithCovarianceStamped`` of ``frame_id``-from-child; ``covariance``
    (6, 6) in ROS form (see :mod:`global_loc.geometry.covariance`), row-major in the message."""
    cov = np.asarray(covariance, np.float64).reshape(36)
    pwc = new(types, "geometry_msgs/msg/PoseWithCovariance", pose=make_pose(types, pose), covariance=cov)
    return new(types, "geometry_msgs/msg/PoseWithCovarianceStamped", header=make_header(types, frame_id, stamp), pose=pwc)


def make_pose_stamped(types: TypeFactory, frame_id: str, stamp, pose: Pose):
    return new(types, "geometry_msgs/msg/PoseStamped", header=make_header(types, frame_id, stamp),
               pose=make_pose(types, pose))


def make_odometry(types: TypeFactory, frame_id: str, child: str, stamp, pose: Pose):
    """``nav_msgs/Odometry`` with a pose (zero covariance) and zero twist."""
    zero3 = lambda: new(types, "geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=0.0)  # noqa: E731
    twist = new(types, "geometry_msgs/msg/TwistWithCovariance",
                twist=new(types, "geometry_msgs/msg/Twist", linear=zero3(), angular=zero3()),
                covariance=np.zeros(36))
    pwc = new(types, "geometry_msgs/msg/PoseWithCovariance", pose=make_pose(types, pose), covariance=np.zeros(36))
    return new(types, "nav_msgs/msg/Odometry", header=make_header(types, frame_id, stamp),
               child_frame_id=child, pose=pwc, twist=twist)


def make_camera_info(types: TypeFactory, camera: Camera, frame_id: str, stamp):
    f = camera_info_fields(camera)
    roi = new(types, "sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return new(types, "sensor_msgs/msg/CameraInfo", header=make_header(types, frame_id, stamp), roi=roi, **f)


def make_image(types: TypeFactory, image: np.ndarray, frame_id: str, stamp, encoding: str | None = None):
    """``sensor_msgs/Image`` from (H, W) grey (``mono8``) or (H, W, 3) RGB (``rgb8``, or
    ``bgr8`` when asked)."""
    if encoding is None:
        encoding = "mono8" if image.ndim == 2 else "rgb8"
    if encoding == "bgr8":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif encoding not in ("mono8", "rgb8"):
        raise InputError(f"make_image writes mono8, rgb8 or bgr8, not {encoding}")
    h, w = image.shape[:2]
    data = np.ascontiguousarray(image, np.uint8).reshape(-1)
    return new(types, "sensor_msgs/msg/Image", header=make_header(types, frame_id, stamp), height=h,
               width=w, encoding=encoding, is_bigendian=0, step=data.size // h, data=data)


def make_compressed_image(types: TypeFactory, image: np.ndarray, frame_id: str, stamp,
                          fmt: str = "jpeg", quality: int = 90):
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) from grey or RGB pixels."""
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality]) if fmt == "jpeg" else (".png", [])
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:  # pragma: no cover
        raise InputError(f"cannot encode the image as {fmt}")
    return new(types, "sensor_msgs/msg/CompressedImage", header=make_header(types, frame_id, stamp),
               format=fmt, data=np.frombuffer(buf.tobytes(), np.uint8))


def make_diagnostic_array(types: TypeFactory, stamp, name: str, hardware_id: str, level: str,
                          message: str, values: dict, more=()):
    """``diagnostic_msgs/DiagnosticArray`` with one status, and optionally more.

    Args:
        level: ``OK``, ``WARN``, ``ERROR`` or ``STALE``.
        values: key -> value, written as strings.
        more: further statuses, each ``(name, level, message, values)`` (e.g. one per camera of
            a rig), same hardware id.
    """
    status_cls = types("diagnostic_msgs/msg/DiagnosticStatus")

    def status(name, level, message, values):
        lvl = getattr(status_cls, level, None)
        if lvl is None:  # message classes without the constants
            lvl = {"OK": 0, "WARN": 1, "ERROR": 2, "STALE": 3}[level]
        kv = [new(types, "diagnostic_msgs/msg/KeyValue", key=str(k), value=str(v)) for k, v in values.items()]
        return new(types, "diagnostic_msgs/msg/DiagnosticStatus", level=lvl, name=name, message=message,
                   hardware_id=hardware_id, values=kv)

    return new(types, "diagnostic_msgs/msg/DiagnosticArray", header=make_header(types, "", stamp),
               status=[status(name, level, message, values)] + [status(*m) for m in more])
