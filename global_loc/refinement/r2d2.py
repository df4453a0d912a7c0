"""R2D2's dense descriptor map (Revaud et al., "R2D2", NeurIPS 2019) as refinement features:
128 L2-normalised channels at full resolution (the input scale of a single-scale pass, or of
the first level of the multi-scale one), pooled by 4 and 1 by default."""
from __future__ import annotations

from . import DENSE_FEATURES
from .learned import NetworkDense


@DENSE_FEATURES.register
class R2D2Dense(NetworkDense):
    """Output per level: (H / 2^k, W / 2^k, 128) float32."""

    name = "r2d2"
    extractor_name = "r2d2"
    default_extractor = {"multiscale": False}
