"""ALIKED: "ALIKED: A Lighter Keypoint and Descriptor Extraction Network via Deformable
Transformation", Zhao et al., IEEE TIM 2023 (https://github.com/Shiaoming/ALIKED, BSD-3).

Variants ``aliked-t16``, ``aliked-n16``, ``aliked-n16rot``, ``aliked-n32`` load the published
state dicts. The deformable convolutions run in plain PyTorch
(:func:`global_loc.runtime.ops.deform_conv2d`), so no compiled extension is needed.

Dense network (what ``global-loc export`` writes): RGB image (B, 3, H, W) in [0, 1], H and W
multiples of 32 -> ``feature_map`` (B, dim, H, W) L2-normalised and ``score_map`` (B, 1, H, W)
in [0, 1]. Post-processing: keypoints by non-maximum suppression and a soft-argmax refinement
(DKD), descriptors by the sparse deformable descriptor head (SDDH) at each keypoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.ops import deform_conv2d
from ..runtime.weights import WeightsError, check_state_dict, load_torch_checkpoint
from ..runtime.model import RuntimeOptions
from . import EXTRACTORS
from .learned import LearnedExtractor

VARIANTS = {  # c1, c2, c3, c4, dim, K (descriptor patch), M (descriptor sample positions)
    "aliked-t16": (8, 16, 32, 64, 64, 3, 16),
    "aliked-n16": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n16rot": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n32": (16, 32, 64, 128, 128, 3, 32),
}


class DeformConv(nn.Module):
    """3x3 deformable convolution whose offsets come from a plain convolution; offsets are
    clamped to a quarter of the feature map's larger side."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.offset_conv = nn.Conv2d(cin, 18, 3, padding=1, bias=True)
        self.regular_conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    def forward(self, x):
        lim = torch.max(torch._shape_as_tensor(x)[2:]).to(x.dtype) / 4.0
        offset = torch.minimum(torch.maximum(self.offset_conv(x), -lim), lim)
        return deform_conv2d(x, offset, self.regular_conv.weight, self.regular_conv.bias, (1, 1))


def _conv(cin, cout, deformable):
    return DeformConv(cin, cout) if deformable else nn.Conv2d(cin, cout, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, gate):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv(cout, cout, False), nn.BatchNorm2d(cout)
        self.gate = gate

    def forward(self, x):
        x = self.gate(self.bn1(self.conv1(x)))
        return self.gate(self.bn2(self.conv2(x)))


class ResBlock(nn.Module):
    def __init__(self, cin, cout, gate, deformable):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, deformable), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv(cout, cout, deformable), nn.BatchNorm2d(cout)
        self.downsample = nn.Conv2d(cin, cout, 1)
        self.gate = gate

    def forward(self, x):
        y = self.gate(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.gate(y + self.downsample(x))


class SDDH(nn.Module):
    """Sparse deformable descriptor head: per keypoint, offsets predicted from a KxK patch,
    M features sampled at the offsets, projected and aggregated into one descriptor."""

    def __init__(self, dim: int, k: int, m: int, gate):
        super().__init__()
        self.k, self.m = k, m
        self.offset_conv = nn.Sequential(nn.Conv2d(dim, 2 * m, k, bias=True), gate,
                                         nn.Conv2d(2 * m, 2 * m, 1, bias=True))
        self.sf_conv = nn.Conv2d(dim, dim, 1, bias=False)
        self.agg_weights = nn.Parameter(torch.zeros(m, dim, dim))

    def forward(self, fmap: torch.Tensor, kpts: torch.Tensor) -> torch.Tensor:
        """fmap (C, H, W); kpts (N, 2) pixels (x, y) -> (N, C) L2-normalised descriptors."""
        c, h, w = fmap.shape
        n = len(kpts)
        if n == 0:
            return fmap.new_zeros((0, c))
        k = self.k
        # KxK patch whose top-left is the keypoint's pixel minus one, kept inside the map
        ki = kpts.long()
        cx = (ki[:, 0] - 1).clamp(0, w - 1 - k)
        cy = (ki[:, 1] - 1).clamp(0, h - 1 - k)
        r = torch.arange(k, device=fmap.device)
        ys = (cy[:, None] + r[None]).view(n, k, 1).expand(n, k, k)
        xs = (cx[:, None] + r[None]).view(n, 1, k).expand(n, k, k)
        patches = fmap[:, ys, xs].permute(1, 0, 2, 3)  # (N, C, K, K)
        lim = max(h, w) / 4.0
        offset = self.offset_conv(patches).clamp(-lim, lim)[:, :, 0, 0]  # (N, 2M)
        offset = offset.view(n, 2, self.m).permute(0, 2, 1)  # (N, M, 2) as (dx, dy)
        pos = kpts[:, None, :] + offset
        wh = torch.tensor([w - 1, h - 1], device=fmap.device, dtype=fmap.dtype)
        grid = (2.0 * pos / wh - 1.0).reshape(1, n * self.m, 1, 2)
        feats = F.grid_sample(fmap[None], grid, mode="bilinear", align_corners=True)  # (1, C, N*M, 1)
        feats = feats.view(c, n, self.m, 1).permute(1, 0, 2, 3)  # (N, C, M, 1)
        feats = F.selu(self.sf_conv(feats)).squeeze(-1)  # (N, C, M)
        desc = torch.einsum("ncp,pcd->nd", feats, self.agg_weights)
        return F.normalize(desc, p=2, dim=1)


class ALIKEDNet(nn.Module):
    """The dense network of ALIKED; :attr:`desc_head` runs in the post-processing."""

    in_channels = 3

    def __init__(self, variant: str):
        super().__init__()
        c1, c2, c3, c4, dim, k, m = VARIANTS[variant]
        gate = nn.SELU(inplace=True)
        self.pool2 = nn.AvgPool2d(2, 2)
        self.pool4 = nn.AvgPool2d(4, 4)
        self.block1 = ConvBlock(3, c1, gate)
        self.block2 = ResBlock(c1, c2, gate, False)
        self.block3 = ResBlock(c2, c3, gate, True)
        self.block4 = ResBlock(c3, c4, gate, True)
        self.conv1 = nn.Conv2d(c1, dim // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(c2, dim // 4, 1, bias=False)
        self.conv3 = nn.Conv2d(c3, dim // 4, 1, bias=False)
        self.conv4 = nn.Conv2d(dim, dim // 4, 1, bias=False)
        self.gate = gate
        self.score_head = nn.Sequential(
            nn.Conv2d(dim, 8, 1, bias=False), gate, nn.Conv2d(8, 4, 3, padding=1, bias=False), gate,
            nn.Conv2d(4, 4, 3, padding=1, bias=False), gate, nn.Conv2d(4, 1, 3, padding=1, bias=False))
        self.desc_head = SDDH(dim, k, m, gate)

    def forward(self, image):
        x1 = self.block1(image)
        x2 = self.block2(self.pool2(x1))
        x3 = self.block3(self.pool4(x2))
        x4 = self.block4(self.pool4(x3))
        up = lambda t, s: F.interpolate(t, scale_factor=s, mode="bilinear", align_corners=True)  # noqa: E731
        x1 = self.gate(self.conv1(x1))
        x2 = up(self.gate(self.conv2(x2)), 2)
        x3 = up(self.gate(self.conv3(x3)), 8)
        x4 = up(self.gate(self.conv4(x4)), 32)
        x = torch.cat([x1, x2, x3, x4], dim=1)
        score_map = torch.sigmoid(self.score_head(x))
        return F.normalize(x, p=2, dim=1), score_map


def simple_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Keep local maxima of ``scores`` (B, 1, H, W) in a (2r+1) window, as in SuperPoint."""
    pool = lambda t: F.max_pool2d(t, 2 * radius + 1, stride=1, padding=radius)  # noqa: E731
    zeros = torch.zeros_like(scores)
    is_max = scores == pool(scores)
    for _ in range(2):
        suppressed = pool(is_max.float()) > 0
        s = torch.where(suppressed, zeros, scores)
        is_max = is_max | ((s == pool(s)) & ~suppressed)
    return torch.where(is_max, scores, zeros)


def soft_detect(score_map: torch.Tensor, radius: int, max_keypoints: int, threshold: float,
                temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable keypoint detection (DKD) at inference: NMS, top-k or threshold, then a
    soft-argmax over a (2r+1)^2 window.

    Args:
        score_map: (H, W) scores in [0, 1].
    Returns:
        keypoints (N, 2) pixels (x, y), scores (N,).
    """
    h, w = score_map.shape
    s = score_map[None, None]
    nms = simple_nms(s, radius)[0, 0]
    nms[:radius], nms[-radius:], nms[:, :radius], nms[:, -radius:] = 0, 0, 0, 0
    flat = nms.reshape(-1)
    if max_keypoints > 0:
        idx = torch.topk(flat, min(max_keypoints, flat.numel())).indices
        idx = idx[flat[idx] > 0]
    else:
        mask = flat > threshold
        if not mask.any():
            mask = flat > score_map.mean()
        idx = mask.nonzero()[:, 0]
    ks = 2 * radius + 1
    patches = F.unfold(s, ks, padding=radius)[0].t()[idx]  # (N, ks*ks)
    r = torch.linspace(-radius, radius, ks, device=s.device, dtype=s.dtype)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)  # (ks*ks, 2) as (x, y)
    e = ((patches - patches.max(dim=1, keepdim=True).values) / temperature).exp()
    residual = e @ grid / e.sum(dim=1, keepdim=True)
    xy = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=1).to(s.dtype) + residual
    wh = torch.tensor([w - 1, h - 1], device=s.device, dtype=s.dtype)
    g = (2.0 * xy / wh - 1.0).view(1, 1, -1, 2)
    scores = F.grid_sample(s, g, mode="bilinear", align_corners=True)[0, 0, 0]
    return xy, scores


@EXTRACTORS.register
class ALIKED(LearnedExtractor):
    """ALIKED keypoints and descriptors (64-d for t16, 128-d otherwise).

    Output: keypoints (N, 2) float32 pixels (OpenCV convention), descriptors (N, D) float32
    unit norm, scores (N,) float32 in [0, 1]; N <= max_keypoints.
    """

    name = "aliked"
    output_names = ("feature_map", "score_map")

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        variant: aliked-t16, aliked-n16, aliked-n16rot or aliked-n32.
        weights: weight file (default: ``<variant>.pth``).
        max_keypoints: top-k keypoints (<= 0: all above ``detection_threshold``).
        detection_threshold: score threshold when ``max_keypoints <= 0``.
        nms_radius: radius of the non-maximum suppression and of the soft-argmax window.
        resize_max: shrink images whose longer side exceeds this (0: never).
        (and the :class:`~global_loc.runtime.model.RuntimeOptions`)
        """

        variant: str = "aliked-n16"
        weights: str = ""
        max_keypoints: int = 4096
        detection_threshold: float = 0.2
        nms_radius: int = 2
        resize_max: int = 1600

    def __init__(self, conf=None, device="auto", models_dir=None, **kwargs):
        from ..config import from_dict
        from ..errors import ConfigError

        c = conf if isinstance(conf, self.Conf) else from_dict(self.Conf, conf, self.name)
        if c.variant not in VARIANTS:
            raise ConfigError(f"unknown ALIKED variant '{c.variant}'; use {', '.join(VARIANTS)}")
        if not c.weights:
            c.weights = f"{c.variant}.pth"
        super().__init__(c, device=device, models_dir=models_dir)

    @property
    def dim(self) -> int:
        return VARIANTS[self.conf.variant][4]

    def build_network(self):
        return ALIKEDNet(self.conf.variant)

    def load_weights(self, net, path: Path) -> None:
        state = load_torch_checkpoint(path, "ALIKED")
        if not isinstance(state, dict):
            raise WeightsError(f"{path} holds a {type(state).__name__}, not an ALIKED state dict")
        check_state_dict(state, net.state_dict(), path, f"ALIKED ({self.conf.variant})")
        net.load_state_dict(state, strict=True)

    def preprocess(self, image):
        h, w = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)[None]
        ph, pw = (-h) % 32, (-w) % 32
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        if ph or pw:
            x = F.pad(x, pad, mode="replicate")
        return x, pad

    def postprocess(self, outputs, pad, image_shape):
        fmap, score = outputs
        h, w = image_shape
        fmap = fmap[0, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w]
        score = score[0, 0, pad[2]:pad[2] + h, pad[0]:pad[0] + w]
        self._keep_dense(fmap, 1.0)
        with torch.inference_mode():
            kpts, scores = soft_detect(score, self.conf.nms_radius, self.conf.max_keypoints,
                                       self.conf.detection_threshold)
            desc = self.network.desc_head.to(fmap.device)(fmap, kpts)
        return self.to_numpy(kpts, desc, scores)
