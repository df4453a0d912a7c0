"""A synthetic scene at the level of features, for fast tests with exact ground truth.

3D points carry random unit descriptors; each camera sees the points in front of it, with
keypoints projected through its camera model (plus optional pixel noise) and descriptors
perturbed slightly. Seeded, so every test run sees the same scene.
"""
from __future__ import annotations

import numpy as np

from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose
from global_loc.types import Keyframe, LocalFeatures


def look_at(center, target, up=(0.0, -1.0, 0.0)) -> Pose:
    """cam_from_world of a camera at ``center`` looking at ``target`` (OpenCV axes)."""
    center, target, up = (np.asarray(v, float) for v in (center, target, up))
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross((1.0, 0.0, 0.0), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in the world
    return Pose(R, -R @ center)


class FeatureScene:
    def __init__(self, num_points=3000, dim=32, seed=0, camera=None):
        self.rng = np.random.default_rng(seed)
        # points on the surface of a box room around the origin, cameras inside a ring
        p = self.rng.uniform(-1, 1, (num_points, 3))
        face = self.rng.integers(0, 3, num_points)
        p[np.arange(num_points), face] = np.sign(p[np.arange(num_points), face]) * 1.0
        self.points = p * np.array([4.0, 1.5, 4.0])
        d = self.rng.normal(size=(num_points, dim)).astype(np.float32)
        self.descriptors = d / np.linalg.norm(d, axis=1, keepdims=True)
        self.camera = camera or Camera("PINHOLE", 640, 480, [400, 400, 319.5, 239.5])
        self.dim = dim

    def pose_on_ring(self, angle_rad, radius=1.0, height=0.0, yaw_offset=0.0) -> Pose:
        c = np.array([radius * np.cos(angle_rad), height, radius * np.sin(angle_rad)])
        a = angle_rad + np.pi / 2 + yaw_offset  # look tangentially outwards-ish
        target = c + np.array([np.cos(a) * 2, 0, np.sin(a) * 2]) + 0.5 * c
        return look_at(c, target)

    def observe(self, cam_from_world: Pose, pixel_noise=0.3, desc_noise=0.05, camera=None):
        """LocalFeatures of what the camera sees, and the index of the point of each."""
        cam = camera or self.camera
        pc = cam_from_world.transform(self.points)
        uv = cam.project(pc)
        ok = (pc[:, 2] > 0.1) & np.all(np.isfinite(uv), axis=1)
        ok &= (uv[:, 0] >= 0) & (uv[:, 0] <= cam.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= cam.height - 1)
        idx = np.flatnonzero(ok)
        kp = uv[idx] + self.rng.normal(scale=pixel_noise, size=(len(idx), 2))
        d = self.descriptors[idx] + self.rng.normal(scale=desc_noise, size=(len(idx), self.dim))
        d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        feats = LocalFeatures(kp, d, np.ones(len(idx)), (cam.width, cam.height))
        return feats, idx

    def keyframes(self, n=12, pixel_noise=0.3, **kw):
        out = []
        for i in range(n):
            pose = self.pose_on_ring(2 * np.pi * i / n, **kw)
            feats, _ = self.observe(pose, pixel_noise=pixel_noise)
            out.append((Keyframe(f"kf{i:03d}", self.camera, pose, stamp=float(i)), feats))
        return out


from dataclasses import dataclass  # noqa: E402

from global_loc.features import EXTRACTORS  # noqa: E402
from global_loc.features.base import LocalFeatureExtractor  # noqa: E402


@EXTRACTORS.register
class SyntheticFeatures(LocalFeatureExtractor):
    """Stands for an extractor whose features the tests supply themselves (32-d)."""

    name = "synthetic32"

    @dataclass
    class Conf:
        resize_max: int = 0

    @property
    def dim(self) -> int:
        return 32

    def _extract(self, image):
        raise RuntimeError("synthetic features are passed in, not extracted")


SYNTHETIC_PRESET = {
    "features": {"name": "synthetic32"},
    "global_descriptor": {"name": "vlad", "num_clusters": 16},
    "mapping": {"num_pairs_pose": 4, "num_pairs_retrieval": 2},
}


def synthetic_conf(**sections):
    from global_loc.config import PipelineConf, deep_merge, from_dict

    return from_dict(PipelineConf, deep_merge(SYNTHETIC_PRESET, sections))
