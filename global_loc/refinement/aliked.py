"""ALIKED's dense descriptor map (Zhao et al., "ALIKED", IEEE TIM 2023) as refinement features:
the L2-normalised full-resolution map its SDDH head samples (128 channels for the n16/n32
variants, 64 for t16), pooled by 4 and 1 by default."""
from __future__ import annotations

from . import DENSE_FEATURES
from .learned import NetworkDense


@DENSE_FEATURES.register
class ALIKEDDense(NetworkDense):
    """Output per level: (H / 2^k, W / 2^k, D) float32, D the variant's descriptor size."""

    name = "aliked"
    extractor_name = "aliked"
