"""GeM: generalized-mean pooling of CNN activations, "Fine-tuning CNN Image Retrieval with No
Human Annotation", Radenovic, Tolias and Chum, TPAMI 2018
(https://github.com/filipradenovic/cnnimageretrieval-pytorch, MIT).

VGG16 convolutional layers (with their last ReLU, without the last max-pool), GeM pooling with
a learned exponent ``p``, L2-normalisation, and an optional learned whitening (``whiten``).
Loads the published checkpoints: a dict with ``state_dict`` (``features.N.*``, ``pool.p``,
optionally ``whiten.*``) and ``meta`` (``mean``, ``std``), or a bare state dict.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nets.vgg import vgg16_features
from ..runtime.weights import WeightsError, check_state_dict, load_torch_checkpoint
from ..runtime.model import RuntimeOptions
from . import GLOBAL_MODELS
from .learned import LearnedGlobalModel

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class GeMPool(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * p)
        self.eps = eps

    def forward(self, x):
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1), keepdim=True).pow(1.0 / self.p)


class GeMNet(nn.Module):
    in_channels = 3

    def __init__(self, whiten: bool = False):
        super().__init__()
        self.features = vgg16_features(drop_last=1)
        self.pool = GeMPool()
        self.whiten = nn.Linear(512, 512, bias=True) if whiten else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN))
        self.register_buffer("std", torch.tensor(IMAGENET_STD))

    def forward(self, image):
        x = (image - self.mean.view(1, 3, 1, 1)) / self.std.view(1, 3, 1, 1)
        d = F.normalize(self.pool(self.features(x)).flatten(1), dim=1)
        if self.whiten is not None:
            d = F.normalize(self.whiten(d), dim=1)
        return d


@GLOBAL_MODELS.register
class GeM(LearnedGlobalModel):
    """VGG16-GeM, 512-d. Input RGB; output (512,) float32 unit norm."""

    name = "gem"
    in_channels = 3
    size_multiple = 16

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: e.g. ``retrievalSfM120k-vgg16-gem-b4dcdc6.pth``.
        whiten: the checkpoint has a learned whitening layer.
        resize_max: longer image side fed to the network (the authors use 1024).
        pca_dims: further PCA-whitening learned from the map (0: none).
        """

        weights: str = "retrievalSfM120k-vgg16-gem-b4dcdc6.pth"
        whiten: bool = False
        resize_max: int = 1024
        pca_dims: int = 0

    @property
    def raw_dim(self) -> int:
        return 512

    def build_network(self):
        return GeMNet(self.conf.whiten)

    def load_weights(self, net, path: Path) -> None:
        ck = load_torch_checkpoint(path, "GeM")
        if not isinstance(ck, dict):
            raise WeightsError(f"{path} holds a {type(ck).__name__}, not a GeM checkpoint")
        state = dict(ck.get("state_dict", ck))
        meta = ck.get("meta", {}) if isinstance(ck.get("meta", {}), dict) else {}
        state["mean"] = torch.tensor(meta.get("mean", IMAGENET_MEAN), dtype=torch.float32)
        state["std"] = torch.tensor(meta.get("std", IMAGENET_STD), dtype=torch.float32)
        check_state_dict(state, net.state_dict(), path, "GeM (VGG16)")
        net.load_state_dict(state, strict=True)
