"""HF-Net's local features (Sarlin et al., CVPR 2019; https://github.com/ethz-asl/hfnet).

One forward pass of :class:`~global_loc.nets.hfnet.HFNetNet` gives the keypoint scores, the
dense local descriptors and the global descriptor; the latter is returned in
``LocalFeatures.extras["global_descriptor"]`` for the ``hfnet`` global model. Keypoints as the
released export: non-maximum suppression (radius 4, three iterations), threshold 0.005, top
1000; descriptors sampled bilinearly (the map's corners on the image's) and normalised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..convert import load_converted
from ..runtime.model import RuntimeOptions
from . import EXTRACTORS
from .learned import LearnedExtractor
from .superpoint import detect


@EXTRACTORS.register
class HFNet(LearnedExtractor):
    """HF-Net keypoints and 256-d descriptors (+ the 4096-d global descriptor in extras)."""

    name = "hfnet"
    output_names = ("scores", "descriptors", "global_descriptor")
    wants_color = False

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: the converted file (``global-loc convert --model hfnet``).
        max_keypoints, detection_threshold, nms_radius, remove_borders: keypoint selection.
        resize_max: shrink images whose longer side exceeds this (0: never).
        """

        weights: str = "hfnet.pth"
        max_keypoints: int = 1000
        detection_threshold: float = 0.005
        nms_radius: int = 4
        remove_borders: int = 4
        resize_max: int = 1024

    @property
    def dim(self) -> int:
        return self._arch["descriptor_dim"]

    def build_network(self):
        net, self._arch = load_converted(self.weights_path, "hfnet")
        return net

    def load_weights(self, net, path: Path) -> None:
        pass  # loaded with the converted file in build_network

    def preprocess(self, image):
        g = image if image.ndim == 2 else image[:, :, 0]
        h, w = g.shape
        x = torch.from_numpy(np.ascontiguousarray(g)).float().div_(255.0)[None, None]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def postprocess(self, outputs, hw, image_shape):
        scores, desc, glob = outputs
        h, w = hw
        with torch.inference_mode():
            kpts, sc = detect(scores[0, 0, :h, :w].clone(), self.conf.nms_radius, self.conf.detection_threshold,
                              self.conf.remove_borders, self.conf.max_keypoints)
            dh, dw = desc.shape[-2:]
            H, W = scores.shape[-2:]
            scale = torch.tensor([(dw - 1) / (W - 1), (dh - 1) / (H - 1)], dtype=kpts.dtype)
            pos = kpts * scale
            grid = (2.0 * pos / torch.tensor([dw - 1, dh - 1], dtype=kpts.dtype) - 1.0).view(1, 1, -1, 2)
            d = F.grid_sample(desc, grid, mode="bilinear", align_corners=True)[0, :, 0].t()
            d = F.normalize(d, p=2, dim=1)
        k, d, s = self.to_numpy(kpts, d, sc)
        return k, d, s, {"global_descriptor": glob[0].detach().float().cpu().numpy()}
