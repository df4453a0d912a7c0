"""Text formats users already have.

- Pose lists (COLMAP / hloc / visuallocalization.net): ``name qw qx qy qz tx ty tz`` per line,
  the pose ``cam_from_world``.
- Query lists / camera files (hloc): ``name MODEL WIDTH HEIGHT PARAMS...`` with COLMAP models.
- TUM trajectories: ``stamp tx ty tz qx qy qz qw``, the pose ``world_from_cam``.

Lines starting with ``#`` and blank lines are skipped; names may not contain spaces.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import CameraModelError, InputError
from ..geometry.camera import Camera
from ..geometry.transforms import Pose, quat_to_wxyz, quat_to_xyzw


def _lines(path: Path, what: str) -> Iterable[tuple[int, list[str]]]:
    if not path.is_file():
        raise InputError(f"{what} file {path} does not exist")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{what} file {path} is not a text file") from None
    for no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield no, line.split()


def _floats(tokens: list[str], path: Path, no: int, what: str) -> np.ndarray:
    try:
        v = np.array([float(t) for t in tokens], np.float64)
    except ValueError:
        raise InputError(f"{path}:{no}: {what} must be numbers, got '{' '.join(tokens)}'") from None
    if not np.all(np.isfinite(v)):
        raise InputError(f"{path}:{no}: {what} must be finite")
    return v


def read_poses(path: str | os.PathLike) -> dict[str, Pose]:
    """Read a pose list ``name qw qx qy qz tx ty tz`` (cam_from_world).

    Returns:
        ``name -> cam_from_world`` in file order.
    Raises:
        InputError: missing file, malformed line (file and line number in the message),
            duplicate name.
    """
    path = Path(path)
    out: dict[str, Pose] = {}
    for no, tok in _lines(path, "pose"):
        if len(tok) != 8:
            raise InputError(
                f"{path}:{no}: expected 'name qw qx qy qz tx ty tz' (8 fields), got {len(tok)}"
            )
        v = _floats(tok[1:], path, no, "quaternion and translation")
        if np.linalg.norm(v[:4]) < 1e-9:
            raise InputError(f"{path}:{no}: the quaternion is zero")
        if tok[0] in out:
            raise InputError(f"{path}:{no}: image '{tok[0]}' is listed twice")
        out[tok[0]] = Pose.from_qt(v[:4], v[4:])
    return out


def write_poses(path: str | os.PathLike, poses: dict[str, Pose]) -> None:
    """Write ``name qw qx qy qz tx ty tz`` lines (cam_from_world), full float precision."""
    with open(path, "w") as f:
        for name, p in poses.items():
            vals = " ".join(repr(float(x)) for x in (*p.q_wxyz, *p.t))
            f.write(f"{name} {vals}\n")


def read_cameras(path: str | os.PathLike, what: str = "camera") -> dict[str, Camera]:
    """Read an hloc query list / camera file ``name MODEL WIDTH HEIGHT PARAMS...``.

    Args:
        what: what the file is, for the messages (``camera``, ``query list``).

    Returns:
        ``name -> Camera`` in file order.
    Raises:
        InputError / CameraModelError: with the file and line number.
    """
    return {n: c for n, c in read_query_list(path, what, names_alone=False).items()}


def read_query_list(path: str | os.PathLike, what: str = "query list",
                    names_alone: bool = True) -> dict[str, Camera | None]:
    """Read an hloc query list: ``name MODEL WIDTH HEIGHT PARAMS...`` per line, or ``name``
    alone where the camera is unknown (its camera is then None: infer it, e.g. from EXIF with
    :func:`global_loc.map.sfm.infer_camera`).

    Returns:
        ``name -> Camera or None`` in file order.
    Raises:
        InputError / CameraModelError: with the file and line number.
    """
    path = Path(path)
    out: dict[str, Camera | None] = {}
    for no, tok in _lines(path, what):
        if len(tok) == 1 and names_alone:
            if tok[0] in out:
                raise InputError(f"{path}:{no}: image '{tok[0]}' is listed twice")
            out[tok[0]] = None
            continue
        if len(tok) < 5:
            raise InputError(f"{path}:{no}: expected 'name MODEL WIDTH HEIGHT PARAMS...'"
                             + (" or 'name' alone" if names_alone else ""))
        try:
            w, h = int(tok[2]), int(tok[3])
        except ValueError:
            raise InputError(f"{path}:{no}: width and height must be integers") from None
        params = _floats(tok[4:], path, no, "camera parameters")
        try:
            cam = Camera(tok[1], w, h, params)
        except CameraModelError as e:
            raise CameraModelError(f"{path}:{no}: {e}") from None
        if tok[0] in out:
            raise InputError(f"{path}:{no}: image '{tok[0]}' is listed twice")
        out[tok[0]] = cam
    return out


def write_cameras(path: str | os.PathLike, cameras: dict[str, Camera]) -> None:
    """Write an hloc query list ``name MODEL WIDTH HEIGHT PARAMS...``."""
    with open(path, "w") as f:
        for name, c in cameras.items():
            params = " ".join(repr(float(x)) for x in c.params)
            f.write(f"{name} {c.model} {c.width} {c.height} {params}\n")


def read_tum(path: str | os.PathLike) -> list[tuple[float, Pose]]:
    """Read a TUM trajectory ``stamp tx ty tz qx qy qz qw``.

    Returns:
        ``(stamp seconds, world_from_cam)`` pairs in file order.
    """
    path = Path(path)
    out = []
    for no, tok in _lines(path, "trajectory"):
        if len(tok) != 8:
            raise InputError(f"{path}:{no}: expected 'stamp tx ty tz qx qy qz qw' (8 fields)")
        v = _floats(tok, path, no, "TUM fields")
        out.append((float(v[0]), Pose.from_qt(quat_to_wxyz(v[4:8]), v[1:4])))
    return out


def write_tum(path: str | os.PathLike, trajectory: Iterable[tuple[float, Pose]]) -> None:
    """Write ``stamp tx ty tz qx qy qz qw`` lines; the poses are ``world_from_cam``."""
    with open(path, "w") as f:
        for stamp, p in trajectory:
            q = quat_to_xyzw(p.q_wxyz)
            vals = " ".join(repr(float(x)) for x in (*p.t, *q))
            f.write(f"{stamp:.9f} {vals}\n")
