"""MobileNetVLAD (Sarlin et al., "Leveraging Deep Visual Descriptors for Hierarchical Efficient
Localization", CoRL 2018; https://github.com/ethz-asl/hierarchical_loc).

MobileNetV2 with depth multiplier 0.35 and a VLAD layer projected to 4096 dimensions, from the
released TensorFlow 1 checkpoint converted by ``global-loc convert --model mobilenetvlad``.
Input: grey; output (4096,) float32 unit norm.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..convert import load_converted
from ..runtime.model import RuntimeOptions
from . import GLOBAL_MODELS
from .learned import LearnedGlobalModel


@GLOBAL_MODELS.register
class MobileNetVLAD(LearnedGlobalModel):
    name = "mobilenetvlad"
    in_channels = 1

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: the converted file (``global-loc convert``), e.g. ``mobilenetvlad_depth-0.35.pth``.
        resize_max: longer image side fed to the network.
        pca_dims: further PCA-whitening learned from the map (0: none).
        """

        weights: str = "mobilenetvlad_depth-0.35.pth"
        resize_max: int = 640
        pca_dims: int = 0

    def build_network(self):
        self._net, self._arch = load_converted(self.weights_path, "mobilenetvlad")
        self.in_channels = self._arch["in_channels"]
        return self._net

    def load_weights(self, net, path: Path) -> None:
        pass  # loaded with the converted file in build_network

    @property
    def raw_dim(self) -> int:
        a = self._arch
        return a["reduction"] or a["clusters"] * self._net.backbone.channels[17]
