"""Network operations in plain PyTorch, exportable to ONNX (opset >= 16)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, padding: tuple[int, int] = (1, 1),
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deformable convolution (Dai et al., ICCV 2017; v2 with ``mask``), stride 1, dilation 1,
    one offset group, with the semantics of ``torchvision.ops.deform_conv2d``.

    Each kernel tap ``k`` of output pixel ``(i, j)`` samples the input at
    ``(i - pad_h + k_h + dy, j - pad_w + k_w + dx)`` with bilinear interpolation, zero outside
    the image, then the taps are combined by the convolution weights. Written with
    ``grid_sample`` (no compiled extension; no torchvision build exists for every machine).

    Args:
        x: (B, C, H, W) input.
        offset: (B, 2 * kh * kw, Ho, Wo); for tap ``k`` (row-major), channel ``2k`` is the
            vertical and ``2k + 1`` the horizontal offset, in input pixels.
        weight: (O, C, kh, kw); bias: (O,) or None.
        padding: (pad_h, pad_w).
        mask: (B, kh * kw, Ho, Wo) modulation, or None.
    Returns:
        (B, O, Ho, Wo).
    """
    b, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    k = kh * kw
    dev, dt = x.device, x.dtype
    ky, kx = torch.meshgrid(torch.arange(kh, device=dev, dtype=dt), torch.arange(kw, device=dev, dtype=dt),
                            indexing="ij")
    oy = torch.arange(ho, device=dev, dtype=dt) - padding[0]
    ox = torch.arange(wo, device=dev, dtype=dt) - padding[1]
    base_y = ky.reshape(k, 1, 1) + oy.view(1, ho, 1)  # (K, Ho, 1)
    base_x = kx.reshape(k, 1, 1) + ox.view(1, 1, wo)  # (K, 1, Wo)
    off = offset.view(b, k, 2, ho, wo)
    py = base_y.unsqueeze(0) + off[:, :, 0]  # (B, K, Ho, Wo)
    px = base_x.unsqueeze(0) + off[:, :, 1]
    # align_corners=True: -1 and 1 are the centres of the first and last pixels; the sizes are
    # taken as tensors so that an ONNX export keeps them dynamic
    size = torch._shape_as_tensor(x)[2:].to(dt)
    gy = 2.0 * py / (size[0] - 1).clamp(min=1) - 1.0
    gx = 2.0 * px / (size[1] - 1).clamp(min=1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).view(b, k * ho, wo, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.view(b, c, k, ho, wo)
    if mask is not None:
        sampled = sampled * mask.view(b, 1, k, ho, wo)
    out = torch.einsum("ock,bckhw->bohw", weight.reshape(o, c, k), sampled)
    if bias is not None:
        out = out + bias.view(1, o, 1, 1)
    return out
