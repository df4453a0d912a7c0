"""MobileNetVLAD (Sarlin et al., CoRL 2018; https://github.com/ethz-asl/hierarchical_loc) and
HF-Net (Sarlin et al., CVPR 2019; https://github.com/ethz-asl/hfnet) in PyTorch, with the
mapping from the variable names of their released TensorFlow 1 graphs.

Both take a grey image normalised as ``(x - 128) / 128`` of 0-255 pixels. Sides must be
multiples of 32 (the preprocessing crops), so that TensorFlow's ``SAME`` padding is exact.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from .mobilenet_v2 import HFNET_SPEC, V2_SPEC, MobileNetV2, SamePadConv, backbone_name_map, tf_to_torch_name
from .netvlad import SlimVLADLayer


class MobileNetVLADNet(nn.Module):
    """MobileNetV2 (layer_18) + VLAD + projection: image -> (B, reduction) global descriptor."""

    def __init__(self, depth_multiplier: float = 0.35, clusters: int = 64, reduction: int = 4096,
                 in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.backbone = MobileNetV2(depth_multiplier, V2_SPEC, in_channels)
        self.vlad = SlimVLADLayer(self.backbone.channels[17], clusters, reduction)

    def forward(self, image):
        (f,) = self.backbone((image * 255.0 - 128.0) / 128.0, (18,))
        return self.vlad(f)


class HFNetNet(nn.Module):
    """HF-Net: one MobileNetV2 (HF-Net's variant) with three outputs, computed in one pass:
    ``scores`` (B, 1, H, W) keypoint probabilities, ``descriptors`` (B, D, H/8, W/8)
    L2-normalised local descriptors, ``global_descriptor`` (B, reduction)."""

    def __init__(self, depth_multiplier: float = 0.75, clusters: int = 32, reduction: int = 4096,
                 descriptor_dim: int = 256, in_channels: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.backbone = MobileNetV2(depth_multiplier, HFNET_SPEC, in_channels)
        c7, c18 = self.backbone.channels[6], self.backbone.channels[17]
        self.desc_conv = SamePadConv(c7, descriptor_dim, 3, 1)
        self.desc_out = SamePadConv(descriptor_dim, descriptor_dim, 1, 1, bn=False, act=False, bias=True)
        self.det_conv = SamePadConv(c7, 128, 3, 1)
        self.det_out = SamePadConv(128, 65, 1, 1, bn=False, act=False, bias=True)
        self.vlad = SlimVLADLayer(c18, clusters, reduction)

    def forward(self, image):
        f7, f18 = self.backbone((image * 255.0 - 128.0) / 128.0, (7, 18))
        desc = F.normalize(self.desc_out(self.desc_conv(f7)), p=2, dim=1)
        logits = self.det_out(self.det_conv(f7))
        scores = F.pixel_shuffle(F.softmax(logits, dim=1)[:, :-1], 8)
        return scores, desc, self.vlad(f18)


def _vlad_names(vlad_scope: str, reduction_scope: str) -> dict[str, str]:
    names = {
        f"{vlad_scope}/memberships/weights": "vlad.memberships.weight",
        f"{vlad_scope}/memberships/BatchNorm/gamma": "vlad.memberships_bn.weight",
        f"{vlad_scope}/memberships/BatchNorm/beta": "vlad.memberships_bn.bias",
        f"{vlad_scope}/memberships/BatchNorm/moving_mean": "vlad.memberships_bn.running_mean",
        f"{vlad_scope}/memberships/BatchNorm/moving_variance": "vlad.memberships_bn.running_var",
        f"{vlad_scope}/clusters": "vlad.clusters",
        f"{reduction_scope}/weights": "vlad.reduction.weight",
        f"{reduction_scope}/biases": "vlad.reduction.bias",
    }
    return names


def tf_name_map(net: nn.Module) -> dict[str, str]:
    """TF variable name (without outer scopes) -> PyTorch state-dict name, for
    :class:`MobileNetVLADNet` or :class:`HFNetNet`."""
    names = backbone_name_map(net.backbone)
    if isinstance(net, HFNetNet):
        names.update(tf_to_torch_name("desc_conv", "local_head/descriptor/Conv"))
        names.update(tf_to_torch_name("desc_out", "local_head/descriptor/Conv_1"))
        names.update(tf_to_torch_name("det_conv", "local_head/detector/Conv"))
        names.update(tf_to_torch_name("det_out", "local_head/detector/Conv_1"))
        names.update(_vlad_names("global_head/vlad", "global_head/dimensionality_reduction"))
    else:
        names.update(_vlad_names("vlad", "dimensionality_reduction"))
    return names
