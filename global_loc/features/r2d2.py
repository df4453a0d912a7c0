"""R2D2: "R2D2: Repeatable and Reliable Detector and Descriptor", Revaud et al., NeurIPS 2019
(https://github.com/naver/r2d2; the weights are CC BY-NC-SA 3.0, non-commercial).

Loads the published checkpoints: a dict with ``net``, a constructor string such as
``Quad_L2Net_ConfCFS(mchan=6)``, and ``state_dict`` (keys may carry a ``module.`` prefix). The
string is parsed against a whitelist of architectures and keyword arguments, never evaluated.

Dense network: ImageNet-normalised RGB (B, 3, H, W) -> ``descriptors`` (B, 128, H, W)
L2-normalised, ``reliability`` and ``repeatability`` (B, 1, H, W) in [0, 1]. Post-processing:
local maxima of the repeatability (3x3) above both thresholds, scored by
reliability x repeatability, over an image pyramid (scale factor 2^(1/4) between
``min_size`` and ``max_size``, as the authors extract), top-k.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.weights import WeightsError, check_state_dict, load_torch_checkpoint, source_hint
from ..runtime.model import RuntimeOptions
from . import EXTRACTORS
from .learned import LearnedExtractor

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: architectures of the published checkpoints and the keyword arguments they may take
ARCHITECTURES = {
    "Quad_L2Net_ConfCFS": {"dim", "mchan", "relu22", "dilated", "dilation", "bn", "bn_affine"},
    "Fast_Quad_L2Net_ConfCFS": {"dim", "mchan", "relu22", "dilated", "dilation", "bn", "bn_affine",
                                "downsample_factor"},
}


def parse_net_string(text: str) -> tuple[str, dict]:
    """``"Quad_L2Net_ConfCFS(mchan=6)"`` -> ``("Quad_L2Net_ConfCFS", {"mchan": 6})``.

    Only whitelisted names with literal keyword arguments pass.

    Raises:
        WeightsError: anything else.
    """
    try:
        node = ast.parse(str(text).strip(), mode="eval").body
    except SyntaxError:
        raise WeightsError(f"R2D2 checkpoint names the network '{text}', which is not a constructor call") from None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args):
        raise WeightsError(f"R2D2 checkpoint network '{text}' is not of the form Name(key=value, ...)")
    name = node.func.id
    if name not in ARCHITECTURES:
        raise WeightsError(f"R2D2 checkpoint network '{name}' is not one of {', '.join(ARCHITECTURES)}")
    kwargs = {}
    for kw in node.keywords:
        if kw.arg not in ARCHITECTURES[name]:
            raise WeightsError(f"R2D2 network {name} does not take '{kw.arg}'")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise WeightsError(f"R2D2 network argument {kw.arg} must be a literal") from None
    return name, kwargs


class R2D2Net(nn.Module):
    """Quad_L2Net_ConfCFS and its fast variant; module order and names follow the published
    ``ops`` list so that the state dicts load."""

    in_channels = 3

    def __init__(self, arch: str = "Quad_L2Net_ConfCFS", dim: int = 128, mchan: int = 4, relu22: bool = False,
                 dilated: bool = True, dilation: int = 1, bn: bool = True, bn_affine: bool = False,
                 downsample_factor: int = 2):
        super().__init__()
        self.ops = nn.ModuleList()
        self._cur, self._dil = 3, dilation
        self._dilated, self._bn, self._bn_affine = dilated, bn, bn_affine
        fast = arch == "Fast_Quad_L2Net_ConfCFS"
        self._add(8 * mchan)
        self._add(8 * mchan)
        if fast:
            self._add(16 * mchan, pool=downsample_factor)
        else:
            self._add(16 * mchan, stride=2)
        self._add(16 * mchan)
        self._add(32 * mchan, stride=2)
        self._add(32 * mchan)
        self._add(32 * mchan, k=2, stride=2, relu=relu22)
        self._add(32 * mchan, k=2, stride=2, relu=relu22)
        self._add(dim, k=2, stride=2, bn=False, relu=False)
        if fast:
            self.ops.append(nn.Upsample(scale_factor=downsample_factor, mode="bilinear", align_corners=False))
        self.clf = nn.Conv2d(dim, 2, 1)
        self.sal = nn.Conv2d(dim, 1, 1)

    def _add(self, out, k=3, stride=1, bn=True, relu=True, pool=1):
        # the dilated network keeps full resolution: a stride becomes dilation of later layers
        d = self._dil
        if self._dilated:
            self.ops.append(nn.Conv2d(self._cur, out, k, padding=((k - 1) * d) // 2, dilation=d, stride=1))
            self._dil *= stride
        else:
            self.ops.append(nn.Conv2d(self._cur, out, k, padding=((k - 1) * d) // 2, dilation=d, stride=stride))
        if bn and self._bn:
            self.ops.append(nn.BatchNorm2d(out, affine=self._bn_affine))
        if relu:
            self.ops.append(nn.ReLU(inplace=True))
        self._cur = out
        if pool > 1:
            self.ops.append(nn.AvgPool2d(pool))

    def forward(self, x):
        for op in self.ops:
            x = op(x)
        reliability = F.softmax(self.clf(x ** 2), dim=1)[:, 1:2]
        r = F.softplus(self.sal(x ** 2))
        repeatability = r / (1 + r)
        return F.normalize(x, p=2, dim=1), reliability, repeatability


@EXTRACTORS.register
class R2D2(LearnedExtractor):
    """R2D2 keypoints and 128-d descriptors.

    Output: keypoints (N, 2) float32 pixels (OpenCV convention), descriptors (N, 128) float32
    unit norm, scores (N,) float32 (reliability x repeatability); N <= max_keypoints.
    """

    name = "r2d2"
    output_names = ("descriptors", "reliability", "repeatability")

    @dataclass
    class Conf(RuntimeOptions):
        """Attributes:
        weights: r2d2_WASF_N16.pt (the localization model), r2d2_WAF_N16.pt,
            r2d2_WASF_N8_big.pt or faster2d2_WASF_N16.pt.
        max_keypoints: top-k over all scales.
        reliability_threshold, repeatability_threshold: detection thresholds.
        multiscale: extract over the pyramid (else at the input scale only).
        scale_factor, min_size, max_size: the pyramid.
        resize_max: shrink images whose longer side exceeds this before (0: never).
        (and the :class:`~global_loc.runtime.model.RuntimeOptions`)
        """

        weights: str = "r2d2_WASF_N16.pt"
        max_keypoints: int = 4096
        reliability_threshold: float = 0.7
        repeatability_threshold: float = 0.7
        multiscale: bool = True
        scale_factor: float = 2 ** 0.25
        min_size: int = 256
        max_size: int = 1024
        resize_max: int = 0

    @property
    def dim(self) -> int:
        return 128

    def _batchable(self) -> bool:
        return not self.conf.multiscale

    def _read_checkpoint(self, path: Path):
        ck = load_torch_checkpoint(path, "R2D2")
        if not isinstance(ck, dict) or "net" not in ck or "state_dict" not in ck:
            keys = list(ck)[:4] if isinstance(ck, dict) else type(ck).__name__
            raise WeightsError(f"{path} is not an R2D2 checkpoint: expected a dict with 'net' and "
                               f"'state_dict', found {keys}{source_hint(path.name)}")
        return ck

    def build_network(self):
        arch, kwargs = parse_net_string(self._read_checkpoint(self.weights_path)["net"])
        return R2D2Net(arch, **kwargs)

    def load_weights(self, net, path: Path) -> None:
        state = {k.replace("module.", "", 1) if k.startswith("module.") else k: v
                 for k, v in self._read_checkpoint(path)["state_dict"].items()}
        check_state_dict(state, net.state_dict(), path, "R2D2")
        net.load_state_dict(state, strict=True)

    def preprocess(self, image):
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)[None]
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        return (x - mean) / std, None

    def _extract(self, image):
        if not self.conf.multiscale:
            return super()._extract(image)
        import time

        c = self.conf
        x0, _ = self.preprocess(image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2))
        h, w = x0.shape[-2:]
        kps, descs, scores = [], [], []
        t_net = t_post = 0.0
        s = 1.0
        while s + 0.001 >= max(0.0, c.min_size / max(h, w)):
            if s - 0.001 <= min(1.0, c.max_size / max(h, w)):
                nh, nw = round(h * s), round(w * s)
                x = x0 if (nh, nw) == (h, w) else F.interpolate(x0, (nh, nw), mode="bilinear",
                                                               align_corners=False, antialias=True)
                t = time.perf_counter()
                out = self.runner(x)
                t_net += time.perf_counter() - t
                if (nh, nw) == (h, w):
                    self._keep_dense(out[0][0], 1.0)
                t = time.perf_counter()
                k, d, sc = self._detect(out)
                # pixel centres of this level in the original image (OpenCV convention)
                scale = torch.tensor([w / nw, h / nh], device=k.device)
                k = (k + 0.5) * scale - 0.5
                kps.append(k), descs.append(d), scores.append(sc)
                t_post += time.perf_counter() - t
            s /= c.scale_factor
        kp, de, sc = torch.cat(kps), torch.cat(descs), torch.cat(scores)
        if c.max_keypoints > 0 and len(sc) > c.max_keypoints:
            top = torch.topk(sc, c.max_keypoints).indices
            kp, de, sc = kp[top], de[top], sc[top]
        self.last_timings = {"network": t_net, "postprocess": t_post}
        return self.to_numpy(kp, de, sc)

    def _detect(self, outputs):
        desc, rel, rep = outputs
        with torch.inference_mode():
            is_max = rep == F.max_pool2d(rep, 3, stride=1, padding=1)
            keep = is_max & (rep >= self.conf.repeatability_threshold) & (rel >= self.conf.reliability_threshold)
            y, x = keep[0, 0].nonzero(as_tuple=True)
            scores = rel[0, 0, y, x] * rep[0, 0, y, x]
            d = desc[0, :, y, x].t()
            return torch.stack([x, y], dim=1).float(), d, scores

    def postprocess(self, outputs, context, image_shape):
        self._keep_dense(outputs[0][0], 1.0)
        k, d, s = self._detect(outputs)
        if self.conf.max_keypoints > 0 and len(s) > self.conf.max_keypoints:
            top = torch.topk(s, self.conf.max_keypoints).indices
            k, d, s = k[top], d[top], s[top]
        return self.to_numpy(k, d, s)
