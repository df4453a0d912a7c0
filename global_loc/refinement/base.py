"""The dense feature interface of feature-metric refinement, and bilinear sampling.

A dense feature source turns an image into a pyramid of feature maps, coarse to fine. The map
stores, for each 3D point, reference features sampled from these maps at its observations
(:mod:`global_loc.refinement.reference`); the refiner aligns the query's maps with them
(:mod:`global_loc.refinement.featuremetric`).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..registry import ConfiguredModel


@dataclass
class FeatureLevel:
    """One level of a dense feature pyramid.

    Attributes:
        features: (H_l, W_l, C) float32, C-contiguous; or (C, H_l, W_l) with
            ``channels_first`` (a network's map as it comes, without a transposing copy).
        scale: image pixels per feature pixel (1, 2, 4, ...): a pixel ``p`` of the image (OpenCV
            convention, top-left pixel centre at (0, 0)) is ``(p + 0.5) / scale - 0.5`` here.
        channels_first: the layout of ``features``.
    """

    features: np.ndarray
    scale: float
    channels_first: bool = False

    @property
    def channels(self) -> int:
        return self.features.shape[0 if self.channels_first else 2]

    def sample(self, xy: np.ndarray, with_gradient: bool = False):
        """:func:`sample_bilinear` of this level at level pixels ``xy``."""
        return sample_bilinear(self.features, xy, with_gradient, self.channels_first)


def to_level_pixels(pixels: np.ndarray, scale: float) -> np.ndarray:
    """(N, 2) image pixels -> pixels of a level of the given ``scale`` (OpenCV convention)."""
    return (np.asarray(pixels, np.float64) + 0.5) / scale - 0.5


def sample_bilinear(fmap: np.ndarray, xy: np.ndarray, with_gradient: bool = False,
                    channels_first: bool = False):
    """Bilinear interpolation of a feature map at sub-pixel positions.

    Args:
        fmap: (H, W, C) float32, or (C, H, W) with ``channels_first``.
        xy: (N, 2) float64 pixels of ``fmap`` (OpenCV convention).
        with_gradient: also return the derivatives of the interpolant along x and y.
    Returns:
        ``(values (N, C) float32, valid (N,) bool)``, or with ``with_gradient``
        ``(values, d_dx (N, C), d_dy (N, C), valid)``; positions outside
        ``[0, W-1) x [0, H-1)`` are invalid and read as zeros.
    """
    if channels_first:
        c, h, w = fmap.shape
    else:
        h, w, c = fmap.shape
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    valid = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (y >= 0) & (x < w - 1) & (y < h - 1)
    xs = np.where(valid, x, 0.0)
    ys = np.where(valid, y, 0.0)
    x0 = xs.astype(np.intp)  # floor: xs >= 0
    y0 = ys.astype(np.intp)
    ax = (xs - x0)[:, None].astype(np.float32)
    ay = (ys - y0)[:, None].astype(np.float32)
    i00 = y0 * w + x0
    if channels_first:
        flat = fmap.reshape(c, h * w)
        f00, f10, f01, f11 = (flat.take(i, axis=1).T for i in (i00, i00 + 1, i00 + w, i00 + w + 1))
    else:
        flat = fmap.reshape(h * w, c)
        f00, f10, f01, f11 = (flat.take(i, axis=0) for i in (i00, i00 + 1, i00 + w, i00 + w + 1))
    top = f00 + ax * (f10 - f00)
    bottom = f01 + ax * (f11 - f01)
    values = top + ay * (bottom - top)
    values[~valid] = 0.0
    if not with_gradient:
        return values, valid
    d_dx = (1 - ay) * (f10 - f00) + ay * (f11 - f01)
    d_dy = bottom - top
    d_dx[~valid] = 0.0
    d_dy[~valid] = 0.0
    return values, d_dx, d_dy, valid


def sample_pyramid(levels: list[FeatureLevel], pixels: np.ndarray) -> np.ndarray:
    """Features of every level at image pixels, concatenated coarse to fine.

    Args:
        levels: a pyramid from :meth:`DenseFeatures.extract`.
        pixels: (N, 2) image pixels, OpenCV convention.
    Returns:
        (N, sum of channels) float32; NaN rows where a pixel falls outside a level.
    """
    parts = []
    for lv in levels:
        v, ok = lv.sample(to_level_pixels(pixels, lv.scale))
        v = v.astype(np.float32)
        v[~ok] = np.nan
        parts.append(v)
    if not parts:
        return np.zeros((len(pixels), 0), np.float32)
    return np.concatenate(parts, axis=1)


class DenseFeatures(ConfiguredModel, abc.ABC):
    """A source of dense features for feature-metric refinement.

    Subclasses set ``name`` and ``Conf`` (a dataclass of options, checked strictly) and
    implement :meth:`_extract`. One file per source, registered in
    :data:`global_loc.refinement.DENSE_FEATURES`, as the local feature extractors are.

    Args:
        conf: a ``Conf`` instance, a dict of options, or None for the defaults.
    """

    @property
    @abc.abstractmethod
    def channels(self) -> list[int]:
        """Channels of each level, coarse to fine."""

    @property
    def dim(self) -> int:
        """Length of a point's reference feature: the channels of all levels."""
        return int(sum(self.channels))

    @abc.abstractmethod
    def _extract(self, image: np.ndarray) -> list[FeatureLevel]:
        """The pyramid of an (H, W) uint8 grey or (H, W, 3) uint8 RGB image, coarse first."""

    def extract(self, image: np.ndarray) -> list[FeatureLevel]:
        """The feature pyramid of one image, coarse to fine.

        Args:
            image: (H, W) uint8 grey or (H, W, 3) uint8 RGB.
        Returns:
            :class:`FeatureLevel` s with ``channels`` channels each.
        Raises:
            InputError: for an image of another shape or dtype.
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) or (
                image.ndim == 3 and image.shape[2] != 3):
            raise InputError(
                "dense features need an (H, W) or (H, W, 3) uint8 image, got "
                f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}"
            )
        levels = self._extract(image)
        return [FeatureLevel(np.ascontiguousarray(lv.features, np.float32), float(lv.scale), lv.channels_first)
                for lv in levels]
