"""The twin-rooms world: two rooms alike in texture and geometry, for perceptual aliasing.

Room A is the robot world's room (:func:`~global_loc.synthetic.world.make_room`) with a doorway
in its east wall. Room B is room A turned by 180 degrees about the doorway's vertical axis (and
moved by the wall's thickness), so that every wall, box and texture of A has a twin in B, seen
the same way from the twin spot. One thing differs: B's west wall (the wall facing the doorway)
carries another texture (a mural), so a camera that sees that wall in either room can tell the
rooms apart; anywhere else the two rooms give the same images.

Runs (as in the robot world; see :mod:`global_loc.synthetic.world`):

- mapping: two laps of room A's outer lane (one each way), through the doorway, the same two
  laps in B;
- query: one weaving lap of A's inner lane, through the doorway, the same lap in B;
- kidnap: the query's lap in A, but 60 % of the way round (``WorldConfig.kidnap_at_lap``) the
  robot is carried to the same spot in B and goes on there for most of a lap. Its wheel odometry
  does not see the carrying: it stays continuous while the ground truth jumps by the rooms'
  transform, as for a robot picked up and put down (the "kidnapped robot" problem).

Frames: the world frame is room A's (``map``, x-y horizontal, z up); room B spans
``x in [L + gap, 2 L + gap]``.
"""
from __future__ import annotations

import numpy as np

from ..geometry.transforms import Pose
from .render import Quad
from .world import WorldConfig, _lane, _photos, _texture, _yaw_pose, make_room, mapping_trajectory

#: The room's size and the boxes of the twin-rooms layout (the robot world's room is 12 x 8 m
#: with 4 boxes; these rooms are smaller, and the boxes stay clear of the lanes and the doorway).
TWIN_ROOMS_DEFAULTS = {"room": (10.0, 7.0, 3.0), "num_boxes": 2}
DOOR_WIDTH_M = 1.2
WALL_GAP_M = 0.02
OUTER_MARGIN_M, INNER_MARGIN_M = 1.8, 2.3


def b_from_a(config) -> Pose:
    """``world_from_roomA`` for room B: the 180-degree turn about the doorway's axis,
    ``(x, y, z) -> (2 L + gap - x, W - y, z)``. A pose of room A, ``map_from_base``, has its
    twin ``b_from_a(config) * map_from_base`` in B."""
    L, W, _ = config.room
    return Pose(np.diag([-1.0, -1.0, 1.0]), [2 * L + WALL_GAP_M, W, 0.0])


def make_twin_rooms(config: WorldConfig, texture_dir=None) -> list[Quad]:
    """The quads of both rooms: A's from :func:`make_room` with a doorway, B's their twins, but
    for B's west wall (the mural: textures drawn from another seed)."""
    room_a = make_room(config, texture_dir, door_width=DOOR_WIDTH_M)
    T = b_from_a(config)
    rng = np.random.default_rng(config.seed + 1000)
    photos = _photos(texture_dir)
    room_b = []
    for q in room_a:
        texture = q.texture
        if abs(q.origin[0]) < 1e-9 and abs(q.u_axis[0]) < 1e-9:  # a panel of the west wall (x = 0)
            texture = _texture(rng, photos, (texture.shape[1], texture.shape[0]))
        room_b.append(Quad(T.transform(q.origin[None])[0], T.R @ q.u_axis, T.R @ q.v_axis, texture, q.shade))
    return room_a + room_b


def _yaw(p: Pose) -> float:
    return float(np.arctan2(p.R[1, 0], p.R[0, 0]))


def _turn(start: Pose, yaw: float, n: int) -> list[Pose]:
    y0 = _yaw(start)
    d = (yaw - y0 + np.pi) % (2 * np.pi) - np.pi
    return [_yaw_pose(start.t[0], start.t[1], y0 + (0.5 - 0.5 * np.cos(np.pi * k / n)) * d) for k in range(1, n + 1)]


def _transit(a: Pose, b: Pose, speed: float, rate_hz: float) -> list[Pose]:
    """From pose ``a`` to pose ``b`` through the doorway: turn towards ``b`` on the spot, drive
    straight, turn to ``b``'s heading (4 s per turn)."""
    n_turn = int(4.0 * rate_hz)
    d = b.t[:2] - a.t[:2]
    heading = float(np.arctan2(d[1], d[0]))
    out = _turn(a, heading, n_turn)
    n = max(int(np.linalg.norm(d) / speed * rate_hz), 1)
    out += [_yaw_pose(*(a.t[:2] + d * k / n), heading) for k in range(1, n + 1)]
    return out + _turn(out[-1], _yaw(b), n_turn)


def _inner_lap(config, rate_hz: float, laps: float = 1.0) -> list[Pose]:
    """The query's lane in room A: weaving, 1.2 times the mapping speed, starting at the east
    end heading north; ``laps`` laps."""
    speed = config.speed * 1.2
    _, _, length = _lane(config, INNER_MARGIN_M, 10, False)
    n_lap = int(length / speed * rate_hz)
    xy, yaw, _ = _lane(config, INNER_MARGIN_M, n_lap, False, weave=0.25, weave_period=5.0)
    idx = np.arange(int(laps * n_lap)) % n_lap
    return [_yaw_pose(xy[i, 0], xy[i, 1], yaw[i]) for i in idx]


def twin_rooms_trajectory(config, run: str, rate_hz: float):
    """Ground truth of one run, ``(times (N,), map_from_base (N poses), felt (N poses))``:
    ``felt`` is what the wheels integrate (the ground truth, but for the kidnap run: the
    trajectory without the jump). ``run``: ``"mapping"``, ``"query"`` or ``"kidnap"``."""
    T = b_from_a(config)
    if run == "kidnap":
        local = _inner_lap(config, rate_hz, 1.0 + config.kidnap_at_lap)
        n_lap = len(_inner_lap(config, rate_hz))
        k = int(config.kidnap_at_lap * n_lap)
        gt = local[:k] + [T * p for p in local[k:]]
        return np.arange(len(gt)) / rate_hz, gt, local
    if run == "mapping":
        local = mapping_trajectory(config, rate_hz)[1]
        speed = config.speed
    elif run == "query":
        local = _inner_lap(config, rate_hz)
        speed = config.speed * 1.2
    else:
        raise ValueError(f"unknown run {run!r}: mapping, query or kidnap")
    twin = [T * p for p in local]
    gt = local + _transit(local[-1], twin[0], speed, rate_hz) + twin
    return np.arange(len(gt)) / rate_hz, gt, gt
