"""A small renderer of textured planar quads for a pinhole camera (numpy + OpenCV).

Each quad maps a texture image onto a parallelogram in the world. For every image pixel in
the quad's bounding box the renderer intersects the pixel's ray with the quad's plane (depth),
finds the texture coordinates through the plane's homography, samples the texture with
``cv2.remap`` at a mip level that matches the minification, and keeps the nearest surface per
pixel (z-buffer). Exact ground truth by construction; no GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..geometry.camera import Camera
from ..geometry.transforms import Pose


@dataclass
class Quad:
    """A textured parallelogram.

    Attributes:
        origin: (3,) world point of the texture's top-left corner.
        u_axis: (3,) world vector along the texture's width (its full length).
        v_axis: (3,) world vector along the texture's height.
        texture: (H, W, 3) uint8 RGB.
        shade: brightness factor of the face (a fixed, simple lighting).
    """

    origin: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    texture: np.ndarray
    shade: float = 1.0
    _mips: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.origin = np.asarray(self.origin, np.float64)
        self.u_axis = np.asarray(self.u_axis, np.float64)
        self.v_axis = np.asarray(self.v_axis, np.float64)
        tex = np.clip(self.texture.astype(np.float32) * self.shade, 0, 255).astype(np.uint8)
        self._mips = [tex]
        while min(self._mips[-1].shape[:2]) > 8:
            self._mips.append(cv2.pyrDown(self._mips[-1]))

    @property
    def corners(self) -> np.ndarray:
        o, u, v = self.origin, self.u_axis, self.v_axis
        return np.array([o, o + u, o + u + v, o + v])

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the textured side: the texture reads upright (u right, v down) to a
        viewer on this side."""
        n = np.cross(self.v_axis, self.u_axis)
        return n / np.linalg.norm(n)


def _clip_near(points: np.ndarray, near: float) -> np.ndarray:
    """Clip a convex polygon (N, 3) in camera coordinates to ``z >= near``."""
    out = []
    n = len(points)
    for i in range(n):
        a, b = points[i], points[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            s = (near - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    return np.array(out).reshape(-1, 3)


def render(quads: list[Quad], camera: Camera, cam_from_world: Pose, near: float = 0.05,
           background=(0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Render the quads seen by a pinhole camera.

    Args:
        quads: the scene.
        camera: a PINHOLE or SIMPLE_PINHOLE camera (distortion is not rendered).
        cam_from_world: the camera pose.
        near: nearest rendered depth, metres.
    Returns:
        ``(image (H, W, 3) uint8 RGB, depth (H, W) float32 metres, inf where empty)``.
    """
    if camera.is_distorted:
        raise ValueError("the renderer draws pinhole cameras only")
    w, h = camera.width, camera.height
    K = camera.K  # OpenCV pixel convention
    K_inv = np.linalg.inv(K)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = background
    depth = np.full((h, w), np.inf, np.float32)
    R, t = cam_from_world.R, cam_from_world.t
    for q in quads:
        pc = cam_from_world.transform(q.corners)
        poly = _clip_near(pc, near)
        if len(poly) < 3:
            continue
        uv = (poly / poly[:, 2:3]) @ K.T
        x0, y0 = np.floor(uv[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(uv[:, :2].max(axis=0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x0 > x1 or y0 > y1:
            continue
        n_c = R @ q.normal
        d_c = n_c @ (R @ q.origin + t)
        if d_c >= 0:  # the camera is behind the face (back-face culling)
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64))
        rays = np.stack([xs, ys, np.ones_like(xs)], axis=-1) @ K_inv.T
        denom = rays @ n_c
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = d_c / denom
        # world point on the plane -> texture coordinates
        X = rays * lam[..., None]  # camera frame
        rel = (X - (R @ q.origin + t)) @ R  # back to world axes, relative to the origin
        uu, vv = q.u_axis, q.v_axis
        G_inv = np.linalg.inv(np.array([[uu @ uu, uu @ vv], [uu @ vv, vv @ vv]]))
        a = (rel @ np.stack([uu, vv], axis=1)) @ G_inv.T  # (rows, cols, 2) in [0, 1] inside
        inside = (lam > near) & (a[..., 0] >= 0) & (a[..., 0] <= 1) & (a[..., 1] >= 0) & (a[..., 1] <= 1)
        closer = inside & (lam < depth[y0:y1 + 1, x0:x1 + 1])
        if not closer.any():
            continue
        # mip level: texture pixels per image pixel at the median visible depth
        th, tw = q._mips[0].shape[:2]
        zmed = float(np.median(lam[closer]))
        cos = abs(float(denom[closer].mean()) / np.linalg.norm(rays[closer].mean(axis=0)))
        texels_per_px = (tw / np.linalg.norm(uu)) * zmed / (camera.focal_length * max(cos, 0.2))
        level = int(np.clip(np.floor(np.log2(max(texels_per_px, 1.0))), 0, len(q._mips) - 1))
        tex = q._mips[level]
        sh, sw = tex.shape[:2]
        mapx = (a[..., 0] * sw - 0.5).astype(np.float32)
        mapy = (a[..., 1] * sh - 0.5).astype(np.float32)
        patch = cv2.remap(tex, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        roi = image[y0:y1 + 1, x0:x1 + 1]
        roi[closer] = patch[closer]
        depth[y0:y1 + 1, x0:x1 + 1][closer] = lam[closer]
    return image, depth
