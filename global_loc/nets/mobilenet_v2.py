"""MobileNetV2 (Sandler et al., CVPR 2018) as TF-slim builds it, for weights converted from the
TensorFlow checkpoints of MobileNetVLAD and HF-Net.

- Channels: ``depth_multiplier`` applied with slim's rounding to multiples of 8.
- Padding: TensorFlow ``SAME``; with inputs whose sides are multiples of 32 (the models'
  preprocessing guarantees it) every stride-2 layer pads one pixel at the bottom and right only.
- Batch norm epsilon 1e-3 (slim's default), ReLU6 activations, linear bottlenecks.
- Module names mirror the TF scopes (``MobilenetV2/expanded_conv_3/depthwise``) with ``/``
  replaced by ``.`` rules in :func:`tf_to_torch_name`.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3

# (kind, stride, outputs, expansion factor) of the released networks
V2_SPEC = [("conv", 2, 32, None), ("ir", 1, 16, 1), ("ir", 2, 24, 6), ("ir", 1, 24, 6), ("ir", 2, 32, 6),
           ("ir", 1, 32, 6), ("ir", 1, 32, 6), ("ir", 2, 64, 6), ("ir", 1, 64, 6), ("ir", 1, 64, 6),
           ("ir", 1, 64, 6), ("ir", 1, 96, 6), ("ir", 1, 96, 6), ("ir", 1, 96, 6), ("ir", 2, 160, 6),
           ("ir", 1, 160, 6), ("ir", 1, 160, 6), ("ir", 1, 320, 6)]
# HF-Net's variant: layer 7 (the local branch) has 128 channels at 1/8 resolution
HFNET_SPEC = [("conv", 2, 32, None), ("ir", 1, 16, 1), ("ir", 2, 24, 6), ("ir", 1, 24, 6), ("ir", 2, 32, 6),
              ("ir", 1, 64, 6), ("ir", 1, 128, 6), ("ir", 2, 64, 6), ("ir", 1, 64, 6), ("ir", 1, 64, 6),
              ("ir", 1, 64, 6), ("ir", 1, 96, 6), ("ir", 1, 96, 6), ("ir", 1, 96, 6), ("ir", 2, 160, 6),
              ("ir", 1, 160, 6), ("ir", 1, 160, 6), ("ir", 1, 320, 6)]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """TF-slim's channel rounding."""
    min_value = min_value or divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


class SamePadConv(nn.Module):
    """Convolution (and optional depthwise groups) with TensorFlow ``SAME`` padding for even
    inputs, followed by batch norm and ReLU6 where asked."""

    def __init__(self, cin, cout, k, stride, groups=1, bn=True, act=True, bias=False):
        super().__init__()
        self.stride, self.k = stride, k
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS) if bn else None
        self.act = act

    def forward(self, x):
        if self.k > 1:
            total = self.k - self.stride  # for even sizes
            x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu6(x) if self.act else x


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        inner = make_divisible(cin * expansion, 8 if expansion > 1 else 1)
        self.expand = SamePadConv(cin, inner, 1, 1) if inner > cin else None
        mid = inner if inner > cin else cin
        self.depthwise = SamePadConv(mid, mid, 3, stride, groups=mid)
        self.project = SamePadConv(mid, cout, 1, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """The encoder up to ``layer_18``; :meth:`forward` returns the asked endpoints.

    Args:
        depth_multiplier: width multiplier (0.35 for MobileNetVLAD, 0.75 for HF-Net).
        spec: :data:`V2_SPEC` or :data:`HFNET_SPEC`.
        in_channels: 1 (grey, HF-Net) or 3.
    """

    def __init__(self, depth_multiplier: float, spec=V2_SPEC, in_channels: int = 1):
        super().__init__()
        self.layers = nn.ModuleList()
        cin = in_channels
        self.channels = []
        for kind, stride, out, factor in spec:
            cout = make_divisible(out * depth_multiplier, 8)
            if kind == "conv":
                self.layers.append(SamePadConv(cin, cout, 3, stride))
            else:
                self.layers.append(InvertedResidual(cin, cout, stride, factor))
            self.channels.append(cout)
            cin = cout

    def forward(self, x, endpoints=(18,)):
        """Returns the outputs of the layers numbered in ``endpoints`` (1-based, as slim's
        ``layer_N``)."""
        out = {}
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            if i in endpoints:
                out[i] = x
            if i >= max(endpoints):
                break
        return [out[e] for e in endpoints]


def tf_to_torch_name(prefix: str, scope: str) -> dict[str, str]:
    """Map one slim op's variables to the PyTorch names of the module at ``prefix``.

    Returns ``{tf suffix: torch name}`` for weights, biases and batch norm variables.
    """
    return {
        f"{scope}/weights": f"{prefix}.conv.weight",
        f"{scope}/depthwise_weights": f"{prefix}.conv.weight",
        f"{scope}/biases": f"{prefix}.conv.bias",
        f"{scope}/BatchNorm/gamma": f"{prefix}.bn.weight",
        f"{scope}/BatchNorm/beta": f"{prefix}.bn.bias",
        f"{scope}/BatchNorm/moving_mean": f"{prefix}.bn.running_mean",
        f"{scope}/BatchNorm/moving_variance": f"{prefix}.bn.running_var",
    }


def backbone_name_map(net: MobileNetV2, tf_scope: str = "MobilenetV2", torch_prefix: str = "backbone") -> dict[str, str]:
    """TF variable name -> PyTorch parameter name for the encoder's layers."""
    names = {}
    for i, layer in enumerate(net.layers):
        if isinstance(layer, SamePadConv):
            names.update(tf_to_torch_name(f"{torch_prefix}.layers.{i}", f"{tf_scope}/Conv"))
            continue
        block = f"{tf_scope}/expanded_conv" + (f"_{i - 1}" if i > 1 else "")
        for part in ("expand", "depthwise", "project"):
            if getattr(layer, part) is not None:
                names.update(tf_to_torch_name(f"{torch_prefix}.layers.{i}.{part}", f"{block}/{part}"))
    return names
