"""The local feature extractor interface."""
from __future__ import annotations

import abc
from typing import ClassVar

import cv2
import numpy as np

from ..errors import InputError
from ..registry import ConfiguredModel
from ..types import LocalFeatures


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey from an (H, W) grey or (H, W, 3) RGB uint8 image."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise InputError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def resize_to_max(image: np.ndarray, resize_max: int | None) -> tuple[np.ndarray, float, float]:
    """Shrink ``image`` so that its longer side is at most ``resize_max`` pixels.

    Returns:
        ``(resized, scale_x, scale_y)`` with ``scale = original / resized`` size.
    """
    h, w = image.shape[:2]
    if not resize_max or max(h, w) <= resize_max:
        return image, 1.0, 1.0
    s = resize_max / max(h, w)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    out = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out, w / nw, h / nh


def rescale_keypoints(kpts: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """Keypoints (N, 2) of a resized image -> pixels of the original, OpenCV convention."""
    if scale_x == 1.0 and scale_y == 1.0:
        return kpts
    out = kpts.astype(np.float64)
    out[:, 0] = (out[:, 0] + 0.5) * scale_x - 0.5
    out[:, 1] = (out[:, 1] + 0.5) * scale_y - 0.5
    return out.astype(np.float32)


def sample_colors(image: np.ndarray, kpts: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB of ``image`` at the nearest pixel of each keypoint (grey repeated)."""
    h, w = image.shape[:2]
    if len(kpts) == 0:
        return np.zeros((0, 3), np.uint8)
    x = np.clip(np.round(kpts[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(kpts[:, 1]).astype(int), 0, h - 1)
    px = image[y, x]
    return np.repeat(px[:, None], 3, axis=1) if image.ndim == 2 else px[:, :3]


class LocalFeatureExtractor(ConfiguredModel, abc.ABC):
    """Detects keypoints and describes them.

    Subclasses set ``name``, ``Conf`` (a dataclass whose defaults are the model's
    ``default_conf``) and implement :meth:`_extract` on an image already converted and
    resized; this base class handles grey conversion, ``resize_max`` and colours.

    Args:
        conf: a ``Conf`` instance, a dict of options (checked strictly), or None.
    """

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Descriptor dimension D."""

    @abc.abstractmethod
    def _extract(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Extract from a prepared image.

        Args:
            image: (H, W) uint8 grey or (H, W, 3) uint8 RGB (as :attr:`wants_color`).
        Returns:
            keypoints (N, 2) float32 pixels of this image, descriptors (N, D) float32
            L2-normalised, scores (N,) float32; optionally a fourth item, a dict of extra
            outputs (see :attr:`LocalFeatures.extras`).
        """

    wants_color: ClassVar[bool] = False
    #: Set by a dense feature source that reuses this network's dense descriptor map for
    #: feature-metric refinement (DRAN's "reuse your features"): :meth:`extract` then keeps the
    #: map of its last image for :meth:`dense_map_for`. Extractors without one ignore it.
    retain_dense: bool = False

    def _keep_dense(self, fmap, map_scale: float) -> None:
        """Called by :meth:`_extract` of networks with a dense descriptor map: ``fmap`` (C, H', W')
        (a tensor or an array) over the prepared image, ``map_scale`` prepared-image pixels per
        map pixel. Kept (unconverted) only while :attr:`retain_dense` is set."""
        if self.retain_dense:
            self._pending_dense = (fmap, float(map_scale))

    def dense_map_for(self, image: np.ndarray):
        """The dense descriptor map kept from the last :meth:`extract` of this very ``image``
        array, as ``(map (C, H', W'), image pixels per map pixel)`` (the map as the network gave
        it: a torch tensor or an array), or None."""
        kept = self.__dict__.get("_dense")
        if kept is None or kept[0] is not image:
            return None
        return kept[1], kept[2]

    def _prepare(self, image: np.ndarray):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InputError(
                "expected an (H, W) or (H, W, 3) uint8 image, got "
                f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}"
            )
        prepared = image if self.wants_color else to_grayscale(image)
        return resize_to_max(prepared, getattr(self.conf, "resize_max", None))

    def _finish(self, image: np.ndarray, out, sx: float, sy: float) -> LocalFeatures:
        kpts, desc, scores = out[:3]
        kpts = rescale_keypoints(np.asarray(kpts, np.float32).reshape(-1, 2), sx, sy)
        h, w = image.shape[:2]
        return LocalFeatures(
            keypoints=kpts,
            descriptors=np.asarray(desc, np.float32).reshape(len(kpts), self.dim),
            scores=scores,
            image_size=(w, h),
            colors=sample_colors(image, kpts),
            extras=out[3] if len(out) > 3 else {},
        )

    def extract(self, image: np.ndarray) -> LocalFeatures:
        """Local features of one image.

        Args:
            image: (H, W) uint8 grey or (H, W, 3) uint8 RGB.
        Returns:
            :class:`LocalFeatures` with keypoints in pixels of ``image``.
        Raises:
            InputError: for an image of another shape or dtype.
        """
        return self._extract_prepared(image, *self._prepare(image))

    def _extract_prepared(self, image: np.ndarray, prepared: np.ndarray, sx: float, sy: float) -> LocalFeatures:
        """:meth:`extract` of ``image`` once prepared (``_prepare``), keeping the dense map for
        :meth:`dense_map_for` where :attr:`retain_dense` asks for it."""
        self._pending_dense = None
        self._dense = None
        features = self._finish(image, self._extract(prepared), sx, sy)
        if self._pending_dense is not None:
            fmap, scale = self._pending_dense
            self._dense, self._pending_dense = (image, fmap, scale * sx), None
        return features

    def extract_batch(self, images: list[np.ndarray]) -> list[LocalFeatures]:
        """Local features of several images; learned extractors run images of the same size
        through the network together (faster on a GPU). Same output as :meth:`extract`."""
        return [self.extract(im) for im in images]
