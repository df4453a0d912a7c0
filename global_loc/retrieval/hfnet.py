"""HF-Net's global head (Sarlin et al., "From Coarse to Fine: Robust Hierarchical Localization
at Large Scale", CVPR 2019; https://github.com/ethz-asl/hfnet).

HF-Net computes local and global features in one pass. With the ``hfnet`` local extractor, the
global descriptor of an image comes with its local features (``LocalFeatures.extras``) and the
network is not run again; alone, this model runs the network itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..convert import load_converted
from ..types import LocalFeatures
from ..runtime.model import RuntimeOptions
from . import GLOBAL_MODELS
from .learned import LearnedGlobalModel


@GLOBAL_MODELS.register
class HFNetGlobal(LearnedGlobalModel):
    """Output (4096,) float32 unit norm (the released model's projection)."""

    name = "hfnet"
    in_channels = 1

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: the converted file (``global-loc convert --model hfnet``), e.g. ``hfnet.pth``.
        resize_max: longer image side fed to the network when run alone.
        pca_dims: further PCA-whitening learned from the map (0: none).
        """

        weights: str = "hfnet.pth"
        resize_max: int = 640
        pca_dims: int = 0

    def build_network(self):
        import torch.nn as nn

        net, self._arch = load_converted(self.weights_path, "hfnet")

        class GlobalHead(nn.Module):
            def __init__(self, hfnet):
                super().__init__()
                self.hfnet = hfnet

            def forward(self, image):
                return self.hfnet(image)[2]

        return GlobalHead(net)

    def load_weights(self, net, path: Path) -> None:
        pass  # loaded with the converted file in build_network

    @property
    def raw_dim(self) -> int:
        return self._arch["reduction"] or self._arch["clusters"] * self.network.hfnet.backbone.channels[17]

    def _describe(self, image, features: LocalFeatures) -> np.ndarray:
        g = features.extras.get("global_descriptor") if features is not None else None
        if g is not None and g.shape == (self.raw_dim,):
            return np.asarray(g, np.float32)
        return super()._describe(image, features)
