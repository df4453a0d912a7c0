"""DISK: "DISK: Learning local features with policy gradient", Tyszkiewicz, Fua and Trulls,
NeurIPS 2020 (https://github.com/cvlab-epfl/disk; weights Apache-2.0).

The network is kornia's implementation (:class:`kornia.feature.DISK`, its U-Net), loaded from
the published checkpoint by path (``disk-depth-save.pth``: a dict whose ``extractor`` holds
the U-Net's ``state_dict``, keys ``unet.*``); kornia's own loader downloads and is not used.

Dense network: RGB in [0, 1] (B, 3, H, W), H and W multiples of 16 (the image is zero-padded at
the bottom and right, as kornia pads) -> ``descriptors`` (B, 128, H, W), not normalised, and
``heatmap`` (B, 1, H, W) detection logits. Post-processing (kornia's
``heatmap_to_keypoints``): strict local maxima of the heatmap in a ``nms_window`` window above
``detection_threshold``, the ``max_keypoints`` strongest; keypoints are integer pixels, their
descriptors the dense ones there, L2-normalised; scores are the heatmap logits. The settings
of hloc's ``disk`` configuration and of LightGlue's DISK evaluation (window 5, threshold 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.model import RuntimeOptions
from ..runtime.weights import WeightsError, check_state_dict, load_torch_checkpoint
from . import EXTRACTORS
from .learned import LearnedExtractor

#: descriptor dimension of the published DISK model
DIM = 128


def _kornia_disk():
    try:
        from kornia.feature import DISK as KorniaDISK
        from kornia.feature.disk.detector import heatmap_to_keypoints
    except ImportError as e:  # pragma: no cover - kornia is in the `learned` extra
        from ..errors import ConfigError

        raise ConfigError(f"DISK needs kornia ({e}); pip install 'global_loc[learned]' or kornia") from None
    return KorniaDISK, heatmap_to_keypoints


class DISKNet(nn.Module):
    """The DISK U-Net (kornia's), as a dense network with two outputs."""

    in_channels = 3

    def __init__(self, dim: int = DIM):
        super().__init__()
        KorniaDISK, _ = _kornia_disk()
        self.dim = dim
        self.unet = KorniaDISK(desc_dim=dim).unet

    def forward(self, x):
        out = self.unet(x)
        return out[:, : self.dim], out[:, self.dim:]


@EXTRACTORS.register
class DISK(LearnedExtractor):
    """DISK keypoints and descriptors.

    Output: keypoints (N, 2) float32 integer pixels (OpenCV convention), descriptors (N, 128)
    float32 unit norm, scores (N,) float32 heatmap logits; N <= max_keypoints.
    """

    name = "disk"
    output_names = ("descriptors", "heatmap")

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: weight file (the published ``disk-depth-save.pth``).
        max_keypoints: the strongest keypoints kept (<= 0: every local maximum above the threshold).
        detection_threshold: heatmap logit a keypoint must exceed.
        nms_window: side of the non-maximum suppression window, pixels (odd).
        resize_max: shrink images whose longer side exceeds this (0: never).
        (and the :class:`~global_loc.runtime.model.RuntimeOptions`)
        """

        weights: str = "disk-depth-save.pth"
        max_keypoints: int = 4096
        detection_threshold: float = 0.0
        nms_window: int = 5
        resize_max: int = 1600

    def __init__(self, conf=None, device="auto", models_dir=None, **kwargs):
        from ..config import from_dict
        from ..errors import ConfigError

        c = conf if isinstance(conf, self.Conf) else from_dict(self.Conf, conf, self.name)
        if c.nms_window < 1 or c.nms_window % 2 == 0:
            raise ConfigError(f"DISK nms_window must be a positive odd number of pixels, got {c.nms_window}")
        super().__init__(c, device=device, models_dir=models_dir)

    @property
    def dim(self) -> int:
        return DIM

    def build_network(self):
        return DISKNet(DIM)

    def load_weights(self, net, path: Path) -> None:
        ckpt = load_torch_checkpoint(path, "DISK")
        state = ckpt.get("extractor", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise WeightsError(f"{path} holds a {type(ckpt).__name__}, not a DISK checkpoint (a dict with "
                               "'extractor', the U-Net's state dict)")
        check_state_dict(state, net.state_dict(), path, "DISK")
        net.load_state_dict(state, strict=True)

    def preprocess(self, image):
        h, w = image.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)[None]
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
        return x, None

    def postprocess(self, outputs, ctx, image_shape):
        _, heatmap_to_keypoints = _kornia_disk()
        desc, heat = outputs
        h, w = image_shape
        desc, heat = desc[:, :, :h, :w], heat[:, :, :h, :w]
        self._keep_dense(desc[0], 1.0)
        c = self.conf
        with torch.inference_mode():
            kp = heatmap_to_keypoints(heat.float(), n=c.max_keypoints if c.max_keypoints > 0 else None,
                                      window_size=c.nms_window, score_threshold=c.detection_threshold)[0]
            xy = kp.xys.long()
            d = F.normalize(desc[0][:, xy[:, 1], xy[:, 0]].t().float(), dim=1)
        return self.to_numpy(kp.xys.float(), d, kp.detection_logp)
