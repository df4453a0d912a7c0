"""Import of COLMAP reconstructions (text or binary) through pycolmap."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from ..errors import InputError
from ..geometry.camera import COLMAP_PIXEL_OFFSET, Camera
from ..geometry.transforms import Pose
from ..map.builder import FixedPoints
from ..types import Keyframe


@dataclass
class ColmapModel:
    """What a map takes from a COLMAP reconstruction.

    Attributes:
        keyframes: registered images as keyframes, in image-id order.
        image_ids: their COLMAP image ids.
        points: the registered 3D points with their observations (pixels converted to
            OpenCV's convention).
    """

    keyframes: list[Keyframe]
    image_ids: list[int]
    points: FixedPoints


def read_colmap_model(path: str | os.PathLike) -> ColmapModel:
    """Read ``cameras``, ``images`` and ``points3D`` (``.txt`` or ``.bin``) from a folder.

    Raises:
        InputError: a missing folder or files, or a model pycolmap cannot read.
        CameraModelError: a camera model global_loc does not support.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"COLMAP model folder {path} does not exist")
    have = {p.name for p in path.iterdir()}
    for stem in ("cameras", "images", "points3D"):
        if f"{stem}.txt" not in have and f"{stem}.bin" not in have:
            raise InputError(
                f"{path} is not a COLMAP model: {stem}.txt or {stem}.bin is missing"
            )
    try:
        rec = pycolmap.Reconstruction(str(path))
    except Exception as e:  # pycolmap raises plain exceptions with COLMAP's message
        raise InputError(f"cannot read the COLMAP model in {path}: {e}") from None

    cameras = {cid: Camera.from_pycolmap(c) for cid, c in rec.cameras.items()}
    point_ids = np.array(sorted(rec.points3D.keys()), np.int64)
    row_of = {int(pid): r for r, pid in enumerate(point_ids)}
    xyz = np.array([rec.points3D[int(p)].xyz for p in point_ids], np.float64).reshape(-1, 3)
    rgb = np.array([rec.points3D[int(p)].color for p in point_ids], np.uint8).reshape(-1, 3)
    err = np.array([rec.points3D[int(p)].error for p in point_ids], np.float32)

    keyframes, image_ids, observations = [], [], {}
    for iid in sorted(rec.images.keys()):
        im = rec.images[iid]
        if not im.has_pose:
            continue
        kf = Keyframe(
            name=im.name,
            camera=cameras[im.camera_id],
            cam_from_world=Pose.from_pycolmap(im.cam_from_world()),
        )
        xy, rows = [], []
        for p2d in im.points2D:
            if p2d.has_point3D():
                xy.append(np.asarray(p2d.xy, np.float64) - COLMAP_PIXEL_OFFSET)
                rows.append(row_of[int(p2d.point3D_id)])
        observations[im.name] = (np.array(xy).reshape(-1, 2), np.array(rows, np.int64))
        keyframes.append(kf)
        image_ids.append(int(iid))
    if not keyframes:
        raise InputError(f"the COLMAP model in {path} has no registered images")
    return ColmapModel(keyframes, image_ids, FixedPoints(point_ids, xyz, rgb, err, observations))
