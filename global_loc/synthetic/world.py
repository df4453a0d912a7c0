"""A synthetic robot world with exact ground truth, recorded as bags a robot would write.

The world is a room of textured planes (walls, floor, ceiling, boxes; real photos as
textures when a folder of photos is given, procedural textures otherwise). A wheeled robot
with a forward-looking camera drives two runs:

- the **mapping run**: two laps around the room, one each way;
- the **query run**: another path (closer to the middle, weaving), with other lighting
  (exposure, gamma, moving shadows), sensor noise and blur.

Each run is written as a bag: images (``sensor_msgs/Image`` rgb8 or ``CompressedImage``
JPEG) and ``camera_info``; ``/tf`` with ``odom -> base_link`` from wheel odometry that drifts;
``/tf_static`` with ``base_link -> camera_optical``; the ground-truth ``map -> base_link`` as
``nav_msgs/Odometry`` on ``/ground_truth/odom``. The mapping run also carries ``map -> odom``
on ``/tf``, as a SLAM system would publish while mapping. Ground-truth camera trajectories are
written as TUM files beside the bags. Everything is seeded.

``WorldConfig.twin_rooms()`` gives the other layout: two rooms alike but for one wall, joined by
a doorway, and a third run in which the robot is kidnapped from one room to the other
(:mod:`global_loc.synthetic.twin_rooms`).

Frames (REP-103/105): map x-y horizontal, z up; base_link x forward, z up; camera_optical
x right, y down, z forward.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from ..io.bags import BagWriter
from ..io.text import write_tum
from ..ros import conversions as conv
from .render import Quad, render

logger = logging.getLogger(__name__)

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
GROUND_TRUTH_TOPIC = "/ground_truth/odom"
FRAMES = {"map": "map", "odom": "odom", "base": "base_link", "camera": "camera_optical"}
#: the cameras a synthetic robot can carry, by their yaw on the robot (degrees)
CAMERA_YAW_DEG = {"front": 0.0, "back": 180.0, "left": 90.0, "right": -90.0}


def camera_topics(name: str, compressed: bool = False) -> tuple[str, str, str]:
    """``(image topic, camera_info topic, optical frame)`` of the synthetic camera ``name``:
    the front camera on ``/camera/...``, the others on ``/<name>_camera/...``."""
    ns = "/camera" if name == "front" else f"/{name}_camera"
    frame = FRAMES["camera"] if name == "front" else f"{name}_camera_optical"
    return ns + ("/image_raw/compressed" if compressed else "/image_raw"), ns + "/camera_info", frame


@dataclass
class WorldConfig:
    """Attributes:
    seed: seed of everything random.
    room: ``(length x, width y, height z)`` metres.
    num_boxes: boxes standing in the room.
    image_size: ``(width, height)``; focal: pixels.
    camera_height, camera_forward, camera_pitch_deg: mounting of the camera on the robot.
    camera_rate_hz, query_camera_rate_hz, odom_rate_hz: publication rates (mapping camera,
        query camera, odometry).
    speed: robot speed, m/s; mapping_laps: laps of the mapping run (alternating direction).
    query_duration_s: length of the query run.
    odom_scale_error, odom_yaw_drift_deg_per_m: systematic wheel-odometry errors.
    layout: ``"room"`` (one room) or ``"twin-rooms"`` (two rooms alike but for one wall, and a
        third run in which the robot is kidnapped from one to the other:
        :mod:`global_loc.synthetic.twin_rooms`; :meth:`twin_rooms` gives its room size).
    kidnap_at_lap: twin-rooms: the fraction of the kidnap run's first lap after which the robot
        is carried to the twin spot.
    cameras: the robot's cameras, a rig: ``"front"`` (the default, on ``/camera/...``, frame
        ``camera_optical``) and any of ``"back"``, ``"left"``, ``"right"`` (turned by 180, 90,
        -90 degrees about the robot's z axis, on ``/<name>_camera/...``, frame
        ``<name>_camera_optical``); all fire together, with the same stamps.
    """

    seed: int = 0
    room: tuple[float, float, float] = (12.0, 8.0, 3.0)
    num_boxes: int = 4
    image_size: tuple[int, int] = (640, 480)
    focal: float = 420.0
    camera_height: float = 0.6
    camera_forward: float = 0.25
    camera_pitch_deg: float = 5.0
    camera_rate_hz: float = 5.0
    query_camera_rate_hz: float = 10.0
    odom_rate_hz: float = 50.0
    speed: float = 0.5
    mapping_laps: int = 2
    query_duration_s: float = 30.0
    odom_scale_error: float = 0.02
    odom_yaw_drift_deg_per_m: float = 0.5
    layout: str = "room"
    kidnap_at_lap: float = 0.6
    cameras: tuple[str, ...] = ("front",)

    @classmethod
    def twin_rooms(cls, **kwargs) -> "WorldConfig":
        """The twin-rooms layout with its room size and boxes (``kwargs`` override)."""
        from .twin_rooms import TWIN_ROOMS_DEFAULTS

        return cls(**{"layout": "twin-rooms", **TWIN_ROOMS_DEFAULTS, **kwargs})

    @property
    def camera(self) -> Camera:
        w, h = self.image_size
        return Camera("PINHOLE", w, h, [self.focal, self.focal, w / 2, h / 2])

    @property
    def base_from_camera(self) -> Pose:
        """Extrinsics of the front camera: the optical frame (z forward) on the robot, pitched down."""
        return self.base_from(self.cameras[0] if self.cameras else "front")

    def base_from(self, name: str) -> Pose:
        """Extrinsics of camera ``name`` (see ``cameras``): the front camera's mounting turned
        about the robot's z axis.

        Raises:
            ValueError: an unknown camera name.
        """
        if name not in CAMERA_YAW_DEG:
            raise ValueError(f"unknown camera {name!r}: one of {', '.join(CAMERA_YAW_DEG)}")
        R0 = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64)  # columns: cam axes in base
        p = np.radians(self.camera_pitch_deg)
        pitch = np.array([[np.cos(p), 0, np.sin(p)], [0, 1, 0], [-np.sin(p), 0, np.cos(p)]])
        y = np.radians(CAMERA_YAW_DEG[name])
        yaw = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
        return Pose(yaw @ pitch @ R0, yaw @ np.array([self.camera_forward, 0.0, self.camera_height]))


# --- textures ---------------------------------------------------------------------------------
def _photos(texture_dir: str | os.PathLike | None) -> list[Path]:
    if texture_dir is None:
        return []
    root = Path(texture_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"texture folder {root} does not exist")
    exts = {".jpg", ".jpeg", ".png"}
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.stat().st_size > 20_000)


def procedural_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A seeded texture rich in corners and blobs: coloured noise at several scales with
    shapes and text drawn on it. (H, W, 3) uint8 RGB."""
    w, h = size
    img = np.zeros((h, w, 3), np.float32)
    for scale in (64, 16, 4):
        small = rng.uniform(0, 1, (max(h // scale, 2), max(w // scale, 2), 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * (scale / 84.0)
    img = (255 * (img - img.min()) / (np.ptp(img) + 1e-6)).astype(np.uint8)
    for _ in range(w * h // 4000):
        c = tuple(int(x) for x in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        kind = rng.integers(0, 4)
        s = int(rng.integers(4, max(5, min(w, h) // 8)))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.3, 2))), c, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), s // 2, c, int(rng.integers(-1, 4)) or -1)
        elif kind == 2:
            cv2.line(img, (x, y), (x + int(rng.integers(-s, s)), y + int(rng.integers(-s, s))), c, 2)
        else:
            cv2.putText(img, str(int(rng.integers(0, 9999))), (x, y), cv2.FONT_HERSHEY_SIMPLEX,
                        s / 40.0, c, 2)
    return img


def _texture(rng, photos: list[Path], size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if not photos:
        return procedural_texture(rng, size)
    img = cv2.imread(str(photos[int(rng.integers(0, len(photos)))]), cv2.IMREAD_COLOR)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    ih, iw = img.shape[:2]
    # a random crop of the photo's aspect ratio closest to the face's, then resize
    aspect = w / h
    cw = min(iw, int(ih * aspect))
    ch = min(ih, int(cw / aspect))
    cw = int(ch * aspect)
    x = int(rng.integers(0, iw - cw + 1))
    y = int(rng.integers(0, ih - ch + 1))
    crop = img[y:y + ch, x:x + cw]
    if rng.uniform() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if cw > w else cv2.INTER_CUBIC)


# --- the room ---------------------------------------------------------------------------------
def make_room(config: WorldConfig, texture_dir=None, px_per_m: float = 160.0, door_width: float = 0.0,
              door_height: float = 2.1) -> list[Quad]:
    """The quads of the room: 4 walls (each of two panels), floor, ceiling and boxes.

    The room spans ``[0, L] x [0, W] x [0, H]`` (``config.room``). With ``door_width`` > 0 the
    east wall (``x = L``) has a doorway of that width and ``door_height``, centred at
    ``y = W / 2``: its two panels stop at the doorway and a lintel closes the wall above it.
    """
    rng = np.random.default_rng(config.seed)
    photos = _photos(texture_dir)
    L, W, H = config.room
    quads: list[Quad] = []

    def face(origin, u, v, shade):
        u, v = np.asarray(u, float), np.asarray(v, float)
        size = (max(int(np.linalg.norm(u) * px_per_m), 16), max(int(np.linalg.norm(v) * px_per_m), 16))
        quads.append(Quad(origin, u, v, _texture(rng, photos, size), shade))

    z = np.array([0, 0, 1.0])
    # walls, seen from inside (u to the right, v down), split in two panels each
    walls = [((L, 0, H), (-L, 0, 0)), ((L, W, H), (0, -W, 0)), ((0, W, H), (L, 0, 0)), ((0, 0, H), (0, W, 0))]
    for i, (o, u) in enumerate(walls):
        o, u = np.array(o, float), np.array(u, float)
        if i == 1 and door_width > 0:  # the east wall: panel, doorway (lintel above), panel
            side = (W - door_width) / 2 / W
            face(o, side * u, -H * z, 0.85 + 0.05 * i)
            face(o + (1 - side) * u, side * u, -H * z, 0.85 + 0.05 * i)
            face(o + side * u, (1 - 2 * side) * u, -(H - door_height) * z, 0.85 + 0.05 * i)
            continue
        for k in range(2):
            face(o + k * u / 2, u / 2, -H * z, 0.85 + 0.05 * i)
    face((0, W, 0), (L, 0, 0), (0, -W, 0), 0.7)  # floor, seen from above
    face((0, 0, H), (L, 0, 0), (0, W, 0), 0.6)  # ceiling, seen from below
    # boxes away from the driving lanes
    spots = [(L * 0.5, W * 0.5), (L * 0.3, W * 0.5), (L * 0.7, W * 0.5), (L * 0.5, W * 0.35)]
    for cx, cy in spots[: config.num_boxes]:
        s = rng.uniform(0.5, 0.8)
        hgt = rng.uniform(0.6, 1.3)
        x0, x1, y0, y1 = cx - s / 2, cx + s / 2, cy - s / 2, cy + s / 2
        sides = [((x0, y0, hgt), (s, 0, 0)), ((x1, y0, hgt), (0, s, 0)), ((x1, y1, hgt), (-s, 0, 0)),
                 ((x0, y1, hgt), (0, -s, 0))]
        for o, u in sides:  # seen from outside
            face(o, u, -hgt * z, 0.9)
        face((x0, y1, hgt), (s, 0, 0), (0, -s, 0), 1.0)  # the top, seen from above
    return quads


# --- trajectories -------------------------------------------------------------------------------
def _yaw_pose(x, y, yaw) -> Pose:
    c, s = np.cos(yaw), np.sin(yaw)
    return Pose(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), [x, y, 0.0])


def _lane(config: WorldConfig, margin: float, n: int, clockwise: bool, phase: float = 0.0,
          weave: float = 0.0, weave_period: float = 4.0, exponent: float = 6.0):
    """``n`` points (n, 2) and headings (n,) spaced evenly along a closed lane: a superellipse
    (a rectangle with rounded corners) ``margin`` metres from the walls, optionally weaving
    sideways; and the lane's length."""
    L, W, _ = config.room
    a, b = L / 2 - margin, W / 2 - margin
    th = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    c, s_ = np.cos(th), np.sin(th)
    P = np.stack([L / 2 + a * np.sign(c) * np.abs(c) ** (2 / exponent),
                  W / 2 + b * np.sign(s_) * np.abs(s_) ** (2 / exponent)], axis=1)
    if clockwise:
        P = P[::-1]
    Pc = np.vstack([P, P[:1]])
    s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(Pc, axis=0), axis=1))])
    total = s[-1]
    q = (phase * total + np.linspace(0, total, n, endpoint=False)) % total
    xy = np.stack([np.interp(q, s, Pc[:, 0]), np.interp(q, s, Pc[:, 1])], axis=1)
    if weave:
        d = np.stack([np.interp((q + 0.05) % total, s, Pc[:, 0]) - np.interp((q - 0.05) % total, s, Pc[:, 0]),
                      np.interp((q + 0.05) % total, s, Pc[:, 1]) - np.interp((q - 0.05) % total, s, Pc[:, 1])], axis=1)
        normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.linalg.norm(d, axis=1, keepdims=True)
        xy = xy + normal * (weave * np.sin(2 * np.pi * q / weave_period))[:, None]
    step = np.roll(xy, -1, axis=0) - np.roll(xy, 1, axis=0)
    heading = np.unwrap(np.arctan2(step[:, 1], step[:, 0]))
    return xy, heading, total


def mapping_trajectory(config: WorldConfig, rate_hz: float):
    """Ground-truth ``map_from_base`` samples of the mapping run: ``(times, poses)``. Laps of
    the outer lane in alternating directions, with a turn on the spot between them."""
    _, _, length = _lane(config, 1.8, 10, False)
    n_lap = int(length / config.speed * rate_hz)
    n_turn = int(4.0 * rate_hz)
    poses: list[Pose] = []
    for lap in range(config.mapping_laps):
        xy, yaw, _ = _lane(config, 1.8, n_lap, clockwise=bool(lap % 2))
        if lap:  # turn on the spot from the last heading to the new one
            last = poses[-1]
            y0 = np.arctan2(last.R[1, 0], last.R[0, 0])
            turn = (yaw[0] - y0 + np.pi) % (2 * np.pi) - np.pi
            for k in range(1, n_turn + 1):
                a = 0.5 - 0.5 * np.cos(np.pi * k / n_turn)
                poses.append(_yaw_pose(last.t[0], last.t[1], y0 + a * turn))
        poses += [_yaw_pose(x, y, h) for (x, y), h in zip(xy, yaw)]
    return np.arange(len(poses)) / rate_hz, poses


def query_trajectory(config: WorldConfig, rate_hz: float):
    """Ground-truth ``map_from_base`` samples of the query run: an inner lane, weaving, at
    1.2 times the mapping speed."""
    n = int(config.query_duration_s * rate_hz)
    speed = config.speed * 1.2
    _, _, length = _lane(config, 2.3, 10, False)
    n_lap = int(length / speed * rate_hz)
    xy, yaw, _ = _lane(config, 2.3, n_lap, False, phase=0.3, weave=0.25, weave_period=5.0)
    idx = np.arange(n) % n_lap
    return np.arange(n) / rate_hz, [_yaw_pose(xy[i, 0], xy[i, 1], yaw[i]) for i in idx]


def simulate_odometry(times, map_from_base: list[Pose], config: WorldConfig, rng) -> list[Pose]:
    """Wheel odometry ``odom_from_base``: the true increments with a scale error, a yaw drift
    per metre and noise, integrated from the first pose (odom == map at the start)."""
    out = [Pose.identity()]
    for k in range(1, len(map_from_base)):
        inc = map_from_base[k - 1].inverse() * map_from_base[k]
        dist = float(np.linalg.norm(inc.t))
        yaw = np.arctan2(inc.R[1, 0], inc.R[0, 0])
        yaw += np.radians(config.odom_yaw_drift_deg_per_m) * dist + rng.normal(0, np.radians(0.05))
        step = inc.t * (1 + config.odom_scale_error) + rng.normal(0, 0.001, 3) * [1, 1, 0]
        noisy = _yaw_pose(step[0], step[1], yaw)
        out.append(out[-1] * noisy)
    return out


# --- lighting and sensor effects ----------------------------------------------------------------
def degrade(image: np.ndarray, rng, t: float, strength: float = 1.0) -> np.ndarray:
    """Query-run appearance: exposure and gamma that change slowly, soft moving shadows,
    sensor noise and blur."""
    img = image.astype(np.float32) / 255.0
    gain = 1.0 + strength * 0.35 * np.sin(0.2 * t + 1.0)
    gamma = 1.0 + strength * 0.3 * np.sin(0.13 * t)
    img = np.clip(img * gain, 0, 1) ** gamma
    h, w = img.shape[:2]
    shadow = np.ones((h // 8, w // 8), np.float32)
    for k in range(2):
        cx = (0.5 + 0.4 * np.sin(0.3 * t + 2 * k)) * shadow.shape[1]
        cy = (0.5 + 0.3 * np.cos(0.2 * t + k)) * shadow.shape[0]
        cv2.ellipse(shadow, (int(cx), int(cy)), (w // 40, h // 40), 30.0 * k, 0, 360, 1 - 0.45 * strength, -1)
    shadow = cv2.GaussianBlur(cv2.resize(shadow, (w, h)), (0, 0), 15)
    img = img * shadow[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 0.6 + 0.4 * strength)
    img = img + rng.normal(0, 0.012 * strength, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


# --- writing the runs -------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One recorded run: its bag, the first camera's image topic, frames per camera, the
    ground truth (TUM: the first camera's optical frame, and ``base_link``, in the map frame),
    and for a rig every camera's image topic and ground truth (name -> TUM path)."""

    bag: Path
    image_topic: str
    frames: int
    ground_truth_tum: Path
    base_ground_truth_tum: Path
    image_topics: list[str] = field(default_factory=list)
    camera_ground_truth: dict = field(default_factory=dict)


@dataclass
class World:
    """The runs of one world: ``kidnap`` only in the twin-rooms layout."""

    config: WorldConfig
    mapping: RunInfo
    query: RunInfo
    frames: dict = field(default_factory=lambda: dict(FRAMES))
    kidnap: RunInfo | None = None


def _render_run(quads, config: WorldConfig, times_cam, map_from_base_cam, degrade_strength, rng, progress, desc,
                base_from_cam: Pose | None = None):
    cam = config.camera
    b_c = config.base_from_camera if base_from_cam is None else base_from_cam
    images = []
    for k in tqdm(range(len(times_cam)), desc=desc, disable=not progress, unit="img"):
        cam_from_map = (map_from_base_cam[k] * b_c).inverse()
        img, _ = render(quads, cam, cam_from_map)
        if degrade_strength > 0:
            img = degrade(img, rng, times_cam[k], degrade_strength)
        images.append(img)
    return images


def write_run(path: Path, fmt: str, compressed: bool, config: WorldConfig, t0_ns: int, times_odom,
              map_from_base_odom, odom_from_base, cam_idx, cam_times, images: dict[str, list], with_map_to_odom: bool,
              frames: dict):
    """Write one run as a bag: odometry samples at ``times_odom``; for each camera (``images``:
    name -> its images, see :func:`camera_topics`) the image ``j`` right after odometry sample
    ``cam_idx[j]`` with stamp ``cam_times[j]``, and its extrinsics on ``/tf_static``. Returns
    the image topics, in the order of ``images``."""
    cam = config.camera
    F = frames
    names = list(images)
    topics = {n: camera_topics(n, compressed) for n in names}
    with BagWriter(path, fmt) as bag:
        T = bag.types
        ns = lambda t: t0_ns + int(round(t * 1e9))  # noqa: E731
        bag.write("/tf_static", "tf2_msgs/msg/TFMessage", ns(0.0), conv.make_tf_message(
            T, [conv.make_transform_stamped(T, F["base"], topics[n][2], ns(0.0), config.base_from(n)) for n in names]))
        img_iter = iter(zip(cam_idx, cam_times, zip(*(images[n] for n in names))))
        nxt = next(img_iter, None)
        for k, t in enumerate(times_odom):
            stamp = ns(t)
            tfs = [conv.make_transform_stamped(T, F["odom"], F["base"], stamp, odom_from_base[k])]
            if with_map_to_odom and k % max(int(round(config.odom_rate_hz / 10.0)), 1) == 0:
                map_from_odom = map_from_base_odom[k] * odom_from_base[k].inverse()
                tfs.append(conv.make_transform_stamped(T, F["map"], F["odom"], stamp, map_from_odom))
            bag.write("/tf", "tf2_msgs/msg/TFMessage", stamp, conv.make_tf_message(T, tfs))
            bag.write(GROUND_TRUTH_TOPIC, "nav_msgs/msg/Odometry", stamp,
                      conv.make_odometry(T, F["map"], F["base"], stamp, map_from_base_odom[k]))
            while nxt is not None and nxt[0] == k:
                stamp = ns(nxt[1])
                for n, img in zip(names, nxt[2]):
                    image_topic, info_topic, frame = topics[n]
                    if compressed:
                        msg = conv.make_compressed_image(T, img, frame, stamp, "jpeg", 90)
                        bag.write(image_topic, "sensor_msgs/msg/CompressedImage", stamp, msg)
                    else:
                        bag.write(image_topic, "sensor_msgs/msg/Image", stamp, conv.make_image(T, img, frame, stamp))
                    bag.write(info_topic, "sensor_msgs/msg/CameraInfo", stamp, conv.make_camera_info(T, cam, frame, stamp))
                nxt = next(img_iter, None)
    return [topics[n][0] for n in names]


def generate_world(out_dir: str | os.PathLike, config: WorldConfig | None = None, fmt: str = "mcap",
                   compressed: bool = False, texture_dir=None, progress: bool = False,
                   formats: list[tuple[str, bool]] | None = None) -> dict[tuple[str, bool], World]:
    """Render both runs once and write them as bags.

    Args:
        out_dir: a new folder.
        fmt, compressed: the bag format (``mcap``, ``sqlite3``, ``ros1``) and image transport;
            ``formats`` lists several ``(fmt, compressed)`` pairs to write from one rendering.
        texture_dir: a folder of photos to use as textures (procedural textures otherwise).
    Returns:
        ``(fmt, compressed) -> World`` with the bag paths and ground-truth files.
    """
    config = config or WorldConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats = formats or [(fmt, compressed)]
    rng = np.random.default_rng(config.seed + 1)
    t0_ns = 1_700_000_000 * 1_000_000_000
    b_c = config.base_from_camera
    runs = {}
    run_list = [("mapping", 0.0, True, config.camera_rate_hz), ("query", 1.0, False, config.query_camera_rate_hz)]
    if config.layout == "room":
        quads = make_room(config, texture_dir)
        trajectories = {"mapping": mapping_trajectory, "query": query_trajectory}

        def trajectory(run, rate):
            times, gt = trajectories[run](config, rate)
            return times, gt, gt
    elif config.layout == "twin-rooms":
        from .twin_rooms import make_twin_rooms, twin_rooms_trajectory

        quads = make_twin_rooms(config, texture_dir)
        run_list.append(("kidnap", 1.0, False, config.query_camera_rate_hz))

        def trajectory(run, rate):
            return twin_rooms_trajectory(config, run, rate)
    else:
        raise ValueError(f"unknown world layout {config.layout!r}: 'room' or 'twin-rooms'")
    for run, strength, with_m2o, rate in run_list:
        times, gt, felt = trajectory(run, config.odom_rate_hz)
        odom = simulate_odometry(times, felt, config, rng)
        # the camera fires every `step` odometry samples, 7 ms after one, so that tf lookups
        # interpolate between samples rather than hit them
        step = max(int(round(config.odom_rate_hz / rate)), 1)
        cam_idx = list(range(step // 2, len(times) - 1, step))
        delay = 0.007
        alpha = delay * config.odom_rate_hz
        cam_t = np.array([times[i] + delay for i in cam_idx])
        cam_gt = [gt[i].interpolate(gt[i + 1], alpha) for i in cam_idx]
        first, *others = config.cameras
        images = {first: _render_run(quads, config, cam_t, cam_gt, strength, rng, progress,
                                     f"rendering the {run} run")}
        for i, name in enumerate(others):  # each with its own noise: the first camera's images stay as they were
            images[name] = _render_run(quads, config, cam_t, cam_gt, strength, np.random.default_rng(config.seed + 100 + i),
                                       progress, f"rendering the {run} run ({name} camera)", config.base_from(name))
        gt_base = [(t0_ns * 1e-9 + t, p) for t, p in zip(cam_t, cam_gt)]
        tum_base = out / f"{run}_ground_truth_base.tum"
        write_tum(tum_base, gt_base)
        tums = {}
        for name in config.cameras:
            tums[name] = out / (f"{run}_ground_truth_camera.tum" if name == first else
                                f"{run}_ground_truth_{name}_camera.tum")
            write_tum(tums[name], [(t, p * config.base_from(name)) for t, p in gt_base])
        for f, comp in formats:
            name = f"{run}_{f}{'_jpeg' if comp else ''}"
            path = out / (name + ".bag" if f == "ros1" else name)
            topics = write_run(path, f, comp, config, t0_ns, times, gt, odom, cam_idx, cam_t, images,
                               with_m2o, FRAMES)
            runs.setdefault((f, comp), {})[run] = RunInfo(path, topics[0], len(cam_idx), tums[first], tum_base,
                                                          topics, tums)
        t0_ns += int((times[-1] + 60) * 1e9)
    worlds = {k: World(config, v["mapping"], v["query"], kidnap=v.get("kidnap")) for k, v in runs.items()}
    meta = {"config": asdict(config), "textures": str(texture_dir) if texture_dir else "procedural",
            "bags": {f"{k[0]}{'_jpeg' if k[1] else ''}": {
                **{run: str(info.bag) for run, info in (("mapping", w.mapping), ("query", w.query),
                                                        ("kidnap", w.kidnap)) if info is not None},
                "image_topic": w.query.image_topic, "image_topics": w.query.image_topics} for k, w in worlds.items()}}
    (out / "world.json").write_text(json.dumps(meta, indent=1))
    return worlds
