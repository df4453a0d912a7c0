"""SuperPoint: "SuperPoint: Self-Supervised Interest Point Detection and Description", DeTone,
Malisiewicz and Rabinovich, CVPRW 2018 (https://github.com/magicleap/SuperPointPretrainedNetwork;
the weights ``superpoint_v1.pth`` are under Magic Leap's non-commercial licence).

Dense network: grey image (B, 1, H, W) in [0, 1], H and W multiples of 8 -> ``scores``
(B, 1, H, W) (softmax over 65 bins of each 8x8 cell, the "no keypoint" bin dropped) and
``descriptors`` (B, 256, H/8, W/8) L2-normalised. Post-processing as SuperGlue's: non-maximum
suppression (radius ``nms_radius``), borders removed, threshold, top-k, descriptors sampled
bilinearly at the keypoints and normalised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.weights import WeightsError, check_state_dict, load_torch_checkpoint
from ..runtime.model import RuntimeOptions
from . import EXTRACTORS
from .aliked import simple_nms
from .learned import LearnedExtractor


class SuperPointNet(nn.Module):
    """The published architecture (module names as in ``superpoint_v1.pth``)."""

    in_channels = 1

    def __init__(self):
        super().__init__()
        c = (64, 64, 128, 128, 256)
        self.conv1a, self.conv1b = nn.Conv2d(1, c[0], 3, 1, 1), nn.Conv2d(c[0], c[0], 3, 1, 1)
        self.conv2a, self.conv2b = nn.Conv2d(c[0], c[1], 3, 1, 1), nn.Conv2d(c[1], c[1], 3, 1, 1)
        self.conv3a, self.conv3b = nn.Conv2d(c[1], c[2], 3, 1, 1), nn.Conv2d(c[2], c[2], 3, 1, 1)
        self.conv4a, self.conv4b = nn.Conv2d(c[2], c[3], 3, 1, 1), nn.Conv2d(c[3], c[3], 3, 1, 1)
        self.convPa, self.convPb = nn.Conv2d(c[3], c[4], 3, 1, 1), nn.Conv2d(c[4], 65, 1)
        self.convDa, self.convDb = nn.Conv2d(c[3], c[4], 3, 1, 1), nn.Conv2d(c[4], 256, 1)

    def forward(self, image):
        x = F.relu(self.conv1b(F.relu(self.conv1a(image))))
        x = F.relu(self.conv2b(F.relu(self.conv2a(F.max_pool2d(x, 2)))))
        x = F.relu(self.conv3b(F.relu(self.conv3a(F.max_pool2d(x, 2)))))
        x = F.relu(self.conv4b(F.relu(self.conv4a(F.max_pool2d(x, 2)))))
        scores = F.softmax(self.convPb(F.relu(self.convPa(x))), dim=1)[:, :-1]
        scores = F.pixel_shuffle(scores, 8)  # (B, 1, H, W), channel = dy * 8 + dx
        desc = F.normalize(self.convDb(F.relu(self.convDa(x))), p=2, dim=1)
        return scores, desc


def sample_descriptors(kpts: torch.Tensor, desc: torch.Tensor, s: int = 8) -> torch.Tensor:
    """Bilinear sampling of a (C, h, w) map at keypoints (N, 2) of an image s times larger,
    as SuperGlue does; returns (N, C) L2-normalised."""
    c, h, w = desc.shape
    k = kpts - s / 2 + 0.5
    k = k / torch.tensor([w * s - s / 2 - 0.5, h * s - s / 2 - 0.5], device=k.device, dtype=k.dtype)
    k = k * 2 - 1
    d = F.grid_sample(desc[None], k.view(1, 1, -1, 2), mode="bilinear", align_corners=True)
    return F.normalize(d.reshape(c, -1).t(), p=2, dim=1)


def detect(scores: torch.Tensor, nms_radius: int, threshold: float, border: int, max_keypoints: int):
    """Keypoints (N, 2) (x, y) and scores (N,) from a (H, W) score map."""
    s = simple_nms(scores[None, None], nms_radius)[0, 0] if nms_radius else scores
    h, w = s.shape
    if border:
        s[:border], s[h - border:], s[:, :border], s[:, w - border:] = 0, 0, 0, 0
    ys, xs = torch.nonzero(s > threshold, as_tuple=True)
    sc = s[ys, xs]
    if max_keypoints > 0 and len(sc) > max_keypoints:
        top = torch.topk(sc, max_keypoints).indices
        ys, xs, sc = ys[top], xs[top], sc[top]
    return torch.stack([xs, ys], 1).float(), sc


@EXTRACTORS.register
class SuperPoint(LearnedExtractor):
    """SuperPoint keypoints and 256-d descriptors.

    Output: keypoints (N, 2) float32 pixels, descriptors (N, 256) float32 unit norm, scores
    (N,) float32; N <= max_keypoints.
    """

    name = "superpoint"
    output_names = ("scores", "descriptors")
    wants_color = False

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: ``superpoint_v1.pth``.
        max_keypoints: top-k (<= 0: all above the threshold).
        detection_threshold, nms_radius, remove_borders: as SuperGlue.
        resize_max: shrink images whose longer side exceeds this (0: never).
        """

        weights: str = "superpoint_v1.pth"
        max_keypoints: int = 4096
        detection_threshold: float = 0.005
        nms_radius: int = 4
        remove_borders: int = 4
        resize_max: int = 1600

    @property
    def dim(self) -> int:
        return 256

    def build_network(self):
        return SuperPointNet()

    def load_weights(self, net, path: Path) -> None:
        state = load_torch_checkpoint(path, "SuperPoint")
        if not isinstance(state, dict):
            raise WeightsError(f"{path} holds a {type(state).__name__}, not a SuperPoint state dict")
        check_state_dict(state, net.state_dict(), path, "SuperPoint")
        net.load_state_dict(state, strict=True)

    def preprocess(self, image):
        g = image if image.ndim == 2 else image[:, :, 0]
        h, w = g.shape
        x = torch.from_numpy(np.ascontiguousarray(g)).float().div_(255.0)[None, None]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x, (h, w)

    def postprocess(self, outputs, hw, image_shape):
        scores, desc = outputs
        h, w = hw
        with torch.inference_mode():
            kpts, sc = detect(scores[0, 0, :h, :w].clone(), self.conf.nms_radius, self.conf.detection_threshold,
                              self.conf.remove_borders, self.conf.max_keypoints)
            d = sample_descriptors(kpts, desc[0])
        return self.to_numpy(kpts, d, sc)
