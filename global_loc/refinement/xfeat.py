"""XFeat's dense descriptor map (Potje et al., "XFeat", CVPR 2024) as refinement features: 64
L2-normalised channels at 1/8 of the (640-pixel) network input, used as it is (one level)
by default."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import DENSE_FEATURES
from .learned import NetworkDense


@DENSE_FEATURES.register
class XFeatDense(NetworkDense):
    """Output: (H / 8, W / 8, 64) float32 for a 640-pixel image, ``scale`` 8."""

    name = "xfeat"
    extractor_name = "xfeat"

    @dataclass
    class Conf(NetworkDense.Conf):
        octaves: list[int] = field(default_factory=lambda: [0])
