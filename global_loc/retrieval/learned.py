"""The base of learned global descriptors: a network from an image to one vector, run by a
backend (:class:`~global_loc.runtime.backends.DenseRunner`).

Common options: ``weights`` (published file name or path), the
:class:`~global_loc.runtime.model.RuntimeOptions`, ``resize_max`` (longer image side fed to the
network).
"""
from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from ..runtime.model import LearnedModel
from ..types import LocalFeatures
from .base import GlobalDescriptorModel


class LearnedGlobalModel(LearnedModel, GlobalDescriptorModel):
    """Subclasses set ``name``, ``Conf``, :attr:`in_channels` and implement
    :meth:`build_network`, :meth:`load_weights` and :attr:`raw_dim`; the network maps
    (B, C, H, W) float32 to (B, raw_dim) L2-normalised.

    Args:
        conf: the model's ``Conf``; device: ``auto``, ``cpu`` or ``cuda``; models_dir: where to
            look for the weights.
    """

    in_channels: ClassVar[int] = 3
    #: multiple of which the network's input sides must be
    size_multiple: ClassVar[int] = 32

    def __init__(self, conf=None, device: str = "auto", models_dir=None, **kwargs):
        GlobalDescriptorModel.__init__(self, conf)
        self._load(device, models_dir, ("global_descriptor",))

    def prepare(self, image: np.ndarray):
        """(H, W) or (H, W, 3) uint8 -> (1, C, H', W') float32 tensor in [0, 1], the longer side
        at most ``resize_max`` and both sides multiples of :attr:`size_multiple` (cropped)."""
        torch = self.torch
        if self.in_channels == 1 and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        elif self.in_channels == 3 and image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        h, w = image.shape[:2]
        r = self.conf.resize_max
        if r and max(h, w) > r:
            s = r / max(h, w)
            image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            h, w = image.shape[:2]
        m = self.size_multiple
        image = image[: max(h // m * m, m), : max(w // m * m, m)]
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
        return (x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None])

    def _describe(self, image, features: LocalFeatures) -> np.ndarray:
        if image is None:
            raise ValueError(f"{self.name} describes images; an image is needed")
        (desc,) = self.runner(self.prepare(image))
        return desc[0].detach().float().cpu().numpy().astype(np.float32)
