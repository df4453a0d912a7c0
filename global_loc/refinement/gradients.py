"""Weight-free dense features: locally normalised intensity and gradients over a pyramid.

The default preset's features for feature-metric refinement, needing no network: at each level
of a Gaussian pyramid (OpenCV ``pyrDown``), the blurred image ``I``, normalised by its local
mean and standard deviation (a Gaussian window), and its x and y derivatives (Sobel) divided by
the same local standard deviation. Three channels per level; invariant to affine changes of
brightness within a window, as normalised cross-correlation is (the photometric cost of direct
methods, e.g. Engel et al., "Direct Sparse Odometry", TPAMI 2018, made robust to exposure).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import DENSE_FEATURES
from .base import DenseFeatures, FeatureLevel


@DENSE_FEATURES.register
class GradientFeatures(DenseFeatures):
    """Normalised intensity and gradients at several pyramid levels.

    Output: per level (coarse first) (H / 2^k, W / 2^k, 3) float32 with ``scale = 2^k``.
    """

    name = "gradients"

    @dataclass
    class Conf:
        """Attributes:
        octaves: pyramid levels used, coarse first (0 is the full image, k halves it k times).
        blur_sigma: extra Gaussian blur of each level, in its pixels (widens the basin of
            convergence, suppresses noise).
        window_sigma: Gaussian window of the local normalisation, pixels of the level.
        min_contrast: added to the local standard deviation (intensity in [0, 1]), so that flat
            regions give features near zero rather than amplified noise.
        """

        octaves: list[int] = field(default_factory=lambda: [2, 1, 0])
        blur_sigma: float = 1.0
        window_sigma: float = 2.0
        min_contrast: float = 0.02

    @property
    def channels(self) -> list[int]:
        return [3] * len(self.conf.octaves)

    def _extract(self, image: np.ndarray) -> list[FeatureLevel]:
        c = self.conf
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        level = grey.astype(np.float32) * (1.0 / 255.0)
        pyramid = [level]
        for _ in range(max(c.octaves, default=0)):
            level = cv2.pyrDown(level)
            pyramid.append(level)
        out = []
        for k in c.octaves:
            img = pyramid[k]
            if c.blur_sigma > 0:
                img = cv2.GaussianBlur(img, (0, 0), c.blur_sigma, borderType=cv2.BORDER_REFLECT)
            mean = cv2.GaussianBlur(img, (0, 0), c.window_sigma, borderType=cv2.BORDER_REFLECT)
            mean_sq = cv2.GaussianBlur(img * img, (0, 0), c.window_sigma, borderType=cv2.BORDER_REFLECT)
            std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)) + c.min_contrast
            inv = 1.0 / std
            gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
            gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
            feats = np.stack([(img - mean) * inv, gx * inv, gy * inv], axis=-1)
            out.append(FeatureLevel(feats, float(2 ** k)))
        return out
