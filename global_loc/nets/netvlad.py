"""NetVLAD layers (Arandjelovic et al., CVPR 2016) in the two published flavours."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mobilenet_v2 import BN_EPS


class NetVLADLayer(nn.Module):
    """The layer of the original MATLAB NetVLAD as hloc converts it: soft-assignment by a 1x1
    projection without bias, residuals ``x - c``, intra-normalisation over the descriptor
    dimension, flattening as (D, K), L2-normalisation.

    Input (B, D, N) L2-normalised local features; output (B, D*K).
    """

    def __init__(self, dim: int = 512, clusters: int = 64):
        super().__init__()
        self.score_proj = nn.Conv1d(dim, clusters, 1, bias=False)
        self.centers = nn.Parameter(torch.zeros(dim, clusters))

    def forward(self, x):
        scores = F.softmax(self.score_proj(x), dim=1)  # (B, K, N)
        diff = x.unsqueeze(2) - self.centers.unsqueeze(0).unsqueeze(-1)  # (B, D, K, N)
        desc = (scores.unsqueeze(1) * diff).sum(dim=-1)  # (B, D, K)
        desc = F.normalize(desc, dim=1)
        return F.normalize(desc.reshape(desc.shape[0], -1), dim=1)


class SlimVLADLayer(nn.Module):
    """The VLAD layer of MobileNetVLAD and HF-Net (hfnet's ``vlad``): memberships from a 1x1
    convolution with batch norm, residuals ``c - x``, normalisation over the cluster axis as
    that implementation does, flattening as (K, D), L2-normalisation, then optionally a
    projection to ``reduction`` dimensions between two L2-normalisations.

    Input (B, D, H, W); output (B, K*D) or (B, reduction).
    """

    def __init__(self, dim: int, clusters: int, reduction: int = 0):
        super().__init__()
        self.memberships = nn.Conv2d(dim, clusters, 1, bias=False)
        self.memberships_bn = nn.BatchNorm2d(clusters, eps=BN_EPS)
        self.clusters = nn.Parameter(torch.zeros(clusters, dim))
        self.reduction = nn.Linear(clusters * dim, reduction) if reduction else None

    def forward(self, x):
        b, d, h, w = x.shape
        m = F.softmax(self.memberships_bn(self.memberships(x)), dim=1).reshape(b, -1, h * w)  # (B, K, N)
        feats = x.reshape(b, d, h * w)  # (B, D, N)
        # sum_n m_kn (c_k - x_n) = c_k sum_n m_kn - sum_n m_kn x_n
        desc = self.clusters.unsqueeze(0) * m.sum(-1, keepdim=True) - torch.bmm(m, feats.transpose(1, 2))
        desc = F.normalize(desc, dim=1)  # over the clusters, as the original
        desc = F.normalize(desc.reshape(b, -1), dim=1)
        if self.reduction is not None:
            desc = F.normalize(self.reduction(desc), dim=1)
        return desc
