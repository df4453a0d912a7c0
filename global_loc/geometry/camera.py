"""The one camera model class of global_loc.

Pixel convention, stated once: **keypoints and every pixel coordinate that global_loc's
functions take or return follow OpenCV: the centre of the top-left pixel is (0, 0)**, x right,
y down. Camera *parameters* follow COLMAP, whose pixel grid puts that centre at (0.5, 0.5):
the principal point ``cx, cy`` of a camera file is used as written. :data:`COLMAP_PIXEL_OFFSET`
converts at the boundary, in this file (pycolmap) and in ``global_loc/ros`` (CameraInfo, whose
K is in OpenCV's convention).

Camera axes: OpenCV / ROS optical frame, x right, y down, z forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pycolmap

from ..errors import CameraModelError

#: Add to an OpenCV pixel coordinate to get COLMAP's; subtract for the other way.
COLMAP_PIXEL_OFFSET = 0.5

#: Supported COLMAP camera models and their parameter names, in COLMAP's order.
CAMERA_MODELS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "OPENCV_FISHEYE": ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4"),
    "FULL_OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
}


@dataclass(frozen=True, eq=False)
class Camera:
    """A calibrated camera with a COLMAP model.

    Attributes:
        model: COLMAP model name, one of :data:`CAMERA_MODELS`.
        width, height: image size in pixels.
        params: (P,) float64 parameters in COLMAP's order and pixel convention.

    Raises:
        CameraModelError: for an unknown model, a wrong number of parameters, a non-positive
            size or focal length.
    """

    model: str
    width: int
    height: int
    params: np.ndarray = field(repr=False)

    def __post_init__(self):
        model = str(self.model).upper()
        if model not in CAMERA_MODELS:
            raise CameraModelError(
                f"unknown camera model '{self.model}'; supported models are "
                f"{', '.join(CAMERA_MODELS)} (COLMAP names)"
            )
        params = np.asarray(self.params, dtype=np.float64).reshape(-1)
        names = CAMERA_MODELS[model]
        if params.size != len(names):
            raise CameraModelError(
                f"camera model {model} takes {len(names)} parameters ({' '.join(names)}), "
                f"got {params.size}"
            )
        if not np.all(np.isfinite(params)):
            raise CameraModelError(f"camera parameters must be finite, got {params.tolist()}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraModelError(f"camera size must be positive, got {self.width}x{self.height}")
        focal = params[:2] if names[1] == "fy" else params[:1]
        if np.any(focal <= 0):
            raise CameraModelError(f"camera focal length must be positive, got {focal.tolist()}")
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        params.setflags(write=False)
        object.__setattr__(self, "params", params)

    # --- construction and export -------------------------------------------------------
    @classmethod
    def from_pycolmap(cls, camera: "pycolmap.Camera") -> "Camera":
        return cls(camera.model_name, camera.width, camera.height, np.array(camera.params))

    @cached_property
    def _colmap(self) -> "pycolmap.Camera":
        return pycolmap.Camera(
            model=self.model, width=self.width, height=self.height, params=self.params
        )

    def to_pycolmap(self) -> "pycolmap.Camera":
        """A pycolmap camera with the same model and parameters (COLMAP pixel convention)."""
        return self._colmap

    def __eq__(self, other) -> bool:
        if not isinstance(other, Camera):
            return NotImplemented
        return (
            self.model == other.model
            and self.width == other.width
            and self.height == other.height
            and np.array_equal(self.params, other.params)
        )

    def __hash__(self) -> int:
        return hash((self.model, self.width, self.height, self.params.tobytes()))

    def __repr__(self) -> str:
        p = " ".join(f"{v:g}" for v in self.params)
        return f"Camera({self.model} {self.width}x{self.height} [{p}])"

    # --- properties ----------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return self.width, self.height

    @property
    def focal_length(self) -> float:
        """Mean focal length in pixels."""
        return float(self._colmap.mean_focal_length())

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 calibration matrix of the pinhole part, OpenCV pixel convention."""
        K = np.array(self._colmap.calibration_matrix(), dtype=np.float64)
        K[:2, 2] -= COLMAP_PIXEL_OFFSET
        return K

    @property
    def is_distorted(self) -> bool:
        return self.model not in ("SIMPLE_PINHOLE", "PINHOLE")

    # --- projection ----------------------------------------------------------------------
    def project(self, points_cam) -> np.ndarray:
        """Project 3D points in the camera frame to pixels.

        Args:
            points_cam: (N, 3) metres, camera frame (z forward).
        Returns:
            (N, 2) float64 pixels, OpenCV convention; NaN for points with ``z <= 0``.
        """
        p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        out = np.full((len(p), 2), np.nan)
        valid = p[:, 2] > 1e-12
        if np.any(valid):
            out[valid] = np.asarray(self._colmap.img_from_cam(p[valid])) - COLMAP_PIXEL_OFFSET
        return out

    def projection_jacobian(self, points_cam, pixels=None) -> np.ndarray:
        """Derivative of :meth:`project` with respect to the camera-frame point.

        Args:
            points_cam: (N, 3) metres, camera frame, in front of the camera.
            pixels: their projections, when already computed (saves a call).
        Returns:
            (N, 2, 3) float64 pixels per metre: analytic for the pinhole models, forward
            differences through the model for the others (any COLMAP model with distortion).
        """
        p = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        if self.model in ("SIMPLE_PINHOLE", "PINHOLE"):
            fx = self.params[0]
            fy = self.params[0] if self.model == "SIMPLE_PINHOLE" else self.params[1]
            iz = 1.0 / p[:, 2]
            jac = np.zeros((len(p), 2, 3))
            jac[:, 0, 0] = fx * iz
            jac[:, 0, 2] = -fx * p[:, 0] * iz * iz
            jac[:, 1, 1] = fy * iz
            jac[:, 1, 2] = -fy * p[:, 1] * iz * iz
            return jac
        uv = self.project(p) if pixels is None else np.asarray(pixels, np.float64).reshape(-1, 2)
        jac = np.empty((len(p), 2, 3))
        eps = 1e-6 * np.maximum(np.abs(p[:, 2]), 1e-9)
        for k in range(3):
            moved = p.copy()
            moved[:, k] += eps
            jac[:, :, k] = (self.project(moved) - uv) / eps[:, None]
        return jac

    def rays(self, pixels) -> np.ndarray:
        """Unit bearing vectors of pixels, distortion removed.

        Args:
            pixels: (N, 2) pixels, OpenCV convention.
        Returns:
            (N, 3) float64 unit vectors in the camera frame.
        """
        uv = np.asarray(pixels, dtype=np.float64).reshape(-1, 2) + COLMAP_PIXEL_OFFSET
        if len(uv) == 0:
            return np.zeros((0, 3))
        rays = np.asarray(self._colmap.cam_ray_from_img(uv), dtype=np.float64)
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def to_colmap_pixels(self, pixels) -> np.ndarray:
        """OpenCV-convention pixels (N, 2) -> COLMAP-convention pixels, float64, for pycolmap."""
        return np.asarray(pixels, dtype=np.float64).reshape(-1, 2) + COLMAP_PIXEL_OFFSET

    def scaled(self, scale_x: float, scale_y: float | None = None) -> "Camera":
        """The camera of the image resized by ``scale_x`` (and ``scale_y``), pycolmap's
        ``Camera.rescale`` (focal lengths and principal point scale, distortion does not)."""
        scale_y = scale_x if scale_y is None else scale_y
        w = int(round(self.width * scale_x))
        h = int(round(self.height * scale_y))
        cam = pycolmap.Camera(
            model=self.model, width=self.width, height=self.height, params=self.params
        )
        cam.rescale(w, h)
        return Camera.from_pycolmap(cam)
