"""NetVLAD: "NetVLAD: CNN architecture for weakly supervised place recognition", Arandjelovic et
al., CVPR 2016 (https://www.di.ens.fr/willow/research/netvlad/, MIT).

VGG16 up to conv5_3, L2-normalised features, a NetVLAD layer with 64 clusters, and the
PCA-whitening to 4096 dimensions of the released Pitts30k model. Weights come from the
published MatConvNet file in its struct form (``Pitts30K_struct.mat``, as hloc uses it):
``net.layers{i}.weights`` holds the conv filters (S x S x IN x OUT) and biases of the VGG layers
in order, layer 31 (1-based) the NetVLAD assignment weights and (negated) centres, layer 34 the
whitening; ``net.meta.normalization.averageImage`` the mean colour subtracted from 0-255 input.
A PyTorch state dict of this module (``.pth``) loads as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nets.netvlad import NetVLADLayer
from ..nets.vgg import vgg16_features
from ..runtime.weights import WeightsError, check_state_dict, load_torch_checkpoint, source_hint
from ..runtime.model import RuntimeOptions
from . import GLOBAL_MODELS
from .learned import LearnedGlobalModel

NETVLAD_LAYER, WHITEN_LAYER = 30, 33  # 0-based indices in net.layers


class NetVLADNet(nn.Module):
    in_channels = 3

    def __init__(self, clusters: int = 64, whiten: int = 4096):
        super().__init__()
        self.backbone = vgg16_features(drop_last=2)  # ends at conv5_3
        self.netvlad = NetVLADLayer(512, clusters)
        self.whiten = nn.Linear(512 * clusters, whiten) if whiten else None
        self.register_buffer("mean", torch.zeros(3))

    def forward(self, image):
        x = image * 255.0 - self.mean.view(1, 3, 1, 1)
        f = self.backbone(x)
        f = F.normalize(f.flatten(2), dim=1)
        d = self.netvlad(f)
        if self.whiten is not None:
            d = F.normalize(self.whiten(d), dim=1)
        return d


def state_from_mat(path: Path, net: NetVLADNet) -> dict:
    """PyTorch state of :class:`NetVLADNet` from the MatConvNet struct file.

    Raises:
        WeightsError: a file that is not that structure, naming what is missing.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), struct_as_record=False, squeeze_me=True)
        layers, meta = mat["net"].layers, mat["net"].meta
    except Exception as e:  # scipy raises ValueError, KeyError, AttributeError on other files
        raise WeightsError(f"cannot read the NetVLAD file {path} ({type(e).__name__}: {e}); it is truncated or "
                           f"not the NetVLAD MatConvNet struct file (net.layers, net.meta){source_hint(path.name)}"
                           ) from None
    state = {}
    try:
        for i, (module, layer) in enumerate(zip(net.backbone, layers)):
            if isinstance(module, nn.Conv2d):
                w, b = layer.weights[0], layer.weights[1]
                state[f"backbone.{i}.weight"] = torch.tensor(np.asarray(w, np.float32)).permute(3, 2, 0, 1)
                state[f"backbone.{i}.bias"] = torch.tensor(np.asarray(b, np.float32)).reshape(-1)
        score, centers = layers[NETVLAD_LAYER].weights[0], layers[NETVLAD_LAYER].weights[1]
        state["netvlad.score_proj.weight"] = torch.tensor(np.asarray(score, np.float32)).t().unsqueeze(-1)
        state["netvlad.centers"] = -torch.tensor(np.asarray(centers, np.float32))  # stored negated
        if net.whiten is not None:
            w, b = layers[WHITEN_LAYER].weights[0], layers[WHITEN_LAYER].weights[1]
            state["whiten.weight"] = torch.tensor(np.asarray(w, np.float32)).squeeze().t()
            state["whiten.bias"] = torch.tensor(np.asarray(b, np.float32)).reshape(-1)
        state["mean"] = torch.tensor(np.asarray(meta.normalization.averageImage, np.float32)).reshape(-1)[:3]
    except (IndexError, AttributeError, TypeError) as e:
        raise WeightsError(f"{path} does not have the layers of the released NetVLAD (VGG16 conv layers, "
                           f"NetVLAD at layer {NETVLAD_LAYER + 1}, whitening at {WHITEN_LAYER + 1}): "
                           f"{e}{source_hint(path.name)}") from None
    return state


@GLOBAL_MODELS.register
class NetVLAD(LearnedGlobalModel):
    """VGG16-NetVLAD (Pitts30k), 4096-d after whitening (32768-d without).

    Input: RGB; output (4096,) float32 unit norm.
    """

    name = "netvlad"
    in_channels = 3
    size_multiple = 16

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: ``Pitts30K_struct.mat`` (or a converted ``.pth``).
        clusters: NetVLAD clusters; whiten: whitening dimension (0: none).
        resize_max: longer image side fed to the network.
        pca_dims: further PCA-whitening learned from the map (0: none).
        """

        weights: str = "Pitts30K_struct.mat"
        clusters: int = 64
        whiten: int = 4096
        resize_max: int = 640
        pca_dims: int = 0

    @property
    def raw_dim(self) -> int:
        return self.conf.whiten or 512 * self.conf.clusters

    def build_network(self):
        return NetVLADNet(self.conf.clusters, self.conf.whiten)

    def load_weights(self, net, path: Path) -> None:
        if path.suffix == ".mat":
            state = state_from_mat(path, net)
        else:
            state = load_torch_checkpoint(path, "NetVLAD")
        check_state_dict(state, net.state_dict(), path, "NetVLAD (VGG16, Pitts30k)")
        net.load_state_dict(state, strict=True)
