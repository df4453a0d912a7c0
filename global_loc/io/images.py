"""Reading images from files, with errors that name the file and the problem."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError
from ..geometry.camera import Camera


def read_image(path: str | os.PathLike, grayscale: bool = False) -> np.ndarray:
    """Decode an image file.

    Args:
        path: the image file (any format OpenCV reads: PNG, JPEG, TIFF, ...).
        grayscale: return (H, W) grey instead of RGB.
    Returns:
        (H, W, 3) uint8 RGB, or (H, W) uint8 grey. 16-bit images are scaled to 8 bits.
    Raises:
        ImageReadError: a missing, empty or undecodable file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image {path} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"image {path} is an empty file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"image {path} cannot be decoded: the file is corrupt or not an image")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageReadError(f"image {path} has unsupported pixel type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if grayscale:
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels.

    Raises:
        ImageReadError: a missing or unrecognised file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ImageReadError(f"image {path} cannot be read: {e}") from None


def check_image_camera(path: str | os.PathLike, camera: Camera, size: tuple[int, int] | None = None) -> None:
    """Raise :class:`ImageReadError` when the image's size (``size`` when already read) differs
    from its camera's."""
    w, h = image_size(path) if size is None else size
    if (w, h) != (camera.width, camera.height):
        raise ImageReadError(
            f"image {path} is {w}x{h} but its camera is {camera.width}x{camera.height}; "
            "check the camera file (or query list) against the images"
        )
