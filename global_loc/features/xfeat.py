"""XFeat: "XFeat: Accelerated Features for Lightweight Image Matching", Potje et al., CVPR 2024
(https://github.com/verlab/accelerated_features, Apache-2.0), from its ONNX export.

The published ONNX graph takes a fixed (1, 3, 640, 640) RGB input (it converts to grey and
normalises itself) and returns dense descriptors (1, 64, 80, 80), keypoint logits
(1, 65, 80, 80) and reliability logits (1, 1, 80, 80). Images are scaled to fit 640x640 with
their aspect ratio kept and padded (edge pixels repeated); keypoints in the padding are
dropped. Selection follows the authors' sparse extraction: the 64 logits of each 8x8 cell are
turned by a softmax (over 65 with a "no keypoint" bin) into a full-resolution heatmap, 5x5
non-maximum suppression above ``detection_threshold``, score = heatmap x reliability,
top-k; descriptors are sampled bicubically from the L2-normalised dense map and normalised.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError
from ..runtime.backends import onnx_session, require_torch
from ..runtime.model import identity_conf
from ..runtime.weights import WeightsError, check_file, find_weights, source_hint
from . import EXTRACTORS
from .base import LocalFeatureExtractor

SIZE = 640


@EXTRACTORS.register
class XFeat(LocalFeatureExtractor):
    """XFeat keypoints and 64-d descriptors (ONNX Runtime; the post-processing in PyTorch).

    Output: keypoints (N, 2) float32 pixels (OpenCV convention), descriptors (N, 64) float32
    unit norm, scores (N,) float32; N <= max_keypoints.
    """

    name = "xfeat"
    wants_color = True

    @dataclass
    class Conf:
        """Attributes:
        weights: the ONNX file (default ``xfeat.onnx``).
        max_keypoints: top-k keypoints.
        detection_threshold: minimum heatmap value of a keypoint.
        nms_size: non-maximum suppression window, pixels (odd).
        resize_max: kept for the common interface; images are always fitted to 640x640.
        backend: ``onnxruntime`` (the only form of the published model).
        """

        weights: str = "xfeat.onnx"
        max_keypoints: int = 4096
        detection_threshold: float = 0.05
        nms_size: int = 5
        resize_max: int = 0
        backend: str = field(default="onnxruntime", metadata={"runtime": True})

    def __init__(self, conf=None, device: str = "auto", models_dir=None, **kwargs):
        super().__init__(conf)
        if self.conf.backend != "onnxruntime":
            raise ConfigError(f"XFeat runs from its ONNX file: backend must be onnxruntime, not '{self.conf.backend}'")
        self.torch = require_torch()
        self.weights_path = find_weights(self.conf.weights, models_dir)
        check_file(self.weights_path)
        self.session = onnx_session(self.weights_path, device)
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        if len(inputs) != 1 or list(inputs[0].shape) != [1, 3, SIZE, SIZE] or len(outputs) != 3:
            raise WeightsError(
                f"{self.weights_path} is not the XFeat ONNX export: expected one input (1, 3, 640, 640) "
                f"and three outputs, found inputs {[(i.name, i.shape) for i in inputs]} and outputs "
                f"{outputs}{source_hint(Path(self.weights_path).name)}"
            )
        by_channels = {s[1]: n for n, s in shapes.items()}
        try:
            self._names = (inputs[0].name, by_channels[64], by_channels[65], by_channels[1])
        except KeyError:
            raise WeightsError(f"{self.weights_path}: outputs {shapes} are not XFeat's (64, 65 and 1 "
                               "channels at 1/8 resolution)") from None
        self.last_timings: dict[str, float] = {}

    @property
    def dim(self) -> int:
        return 64

    def identity_conf(self) -> dict:
        return identity_conf(self.conf)

    def _extract(self, image):
        torch = self.torch
        F = torch.nn.functional
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        t0 = time.perf_counter()
        h, w = image.shape[:2]
        s = SIZE / max(h, w)
        nw, nh = min(SIZE, round(w * s)), min(SIZE, round(h * s))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        padded = cv2.copyMakeBorder(resized, 0, SIZE - nh, 0, SIZE - nw, cv2.BORDER_REPLICATE)
        x = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        t1 = time.perf_counter()
        name_in, name_d, name_k, name_r = self._names
        desc, logits, rel = self.session.run([name_d, name_k, name_r], {name_in: x})
        t2 = time.perf_counter()
        with torch.inference_mode():
            desc = F.normalize(torch.from_numpy(desc), dim=1)
            # the 1/8 map over the resized image (cells past it cover the padding)
            self._keep_dense(desc[0, :, : -(-nh // 8), : -(-nw // 8)], 8.0 * w / nw)
            logits, rel = torch.from_numpy(logits), torch.sigmoid(torch.from_numpy(rel))
            heat = F.softmax(logits, dim=1)[:, :64]
            g = heat.shape[-1]
            heat = heat.permute(0, 2, 3, 1).reshape(1, g, g, 8, 8).permute(0, 1, 3, 2, 4).reshape(1, 1, g * 8, g * 8)
            k = self.conf.nms_size
            peaks = (heat == F.max_pool2d(heat, k, stride=1, padding=k // 2)) & (heat > self.conf.detection_threshold)
            ys, xs = peaks[0, 0].nonzero(as_tuple=True)
            inside = (xs < nw) & (ys < nh)
            xs, ys = xs[inside], ys[inside]
            pos = torch.stack([xs, ys], dim=1).float()
            # positions to [-1, 1] as the authors do (grid of W-1, without align_corners)
            grid = (2.0 * pos / (SIZE - 1) - 1.0).view(1, -1, 1, 2)
            rel_at = F.grid_sample(rel, grid, mode="bilinear", align_corners=False)[0, 0, :, 0]
            scores = heat[0, 0, ys, xs] * rel_at
            order = torch.argsort(scores, descending=True)[: self.conf.max_keypoints]
            pos, scores, grid = pos[order], scores[order], grid[:, order]
            d = F.grid_sample(desc, grid, mode="bicubic", align_corners=False)[0, :, :, 0].t()
            d = F.normalize(d, dim=1)
        # from the 640x640 canvas back to the image (pixel centres, OpenCV convention)
        kpts = (pos.numpy() + 0.5) * np.array([w / nw, h / nh]) - 0.5
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2}
        return kpts.astype(np.float32), d.numpy(), scores.numpy()
