"""The base of learned local feature extractors: a dense network run by a backend
(:class:`~global_loc.runtime.backends.DenseRunner`) and a post-processing in PyTorch.

Options every learned extractor has (see each model's ``Conf``): ``weights``, the weight file
by published name or path (found as described in :mod:`global_loc.runtime.weights`), the
:class:`~global_loc.runtime.model.RuntimeOptions` (``backend``, ``precision``, ``onnx``), and
``max_keypoints``, ``resize_max``.
"""
from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from ..runtime.model import LearnedModel
from .base import LocalFeatureExtractor


class LearnedExtractor(LearnedModel, LocalFeatureExtractor):
    """Subclasses implement :meth:`build_network`, :meth:`load_weights`,
    :meth:`preprocess` and :meth:`postprocess`; :attr:`output_names` names the dense outputs.

    Args:
        conf: the model's ``Conf`` (or a dict).
        device: ``auto``, ``cpu`` or ``cuda``.
        models_dir: where to look for the weights (also ``$GLOBAL_LOC_MODELS``).
    """

    output_names: ClassVar[tuple[str, ...]] = ()
    wants_color = True

    def __init__(self, conf=None, device: str = "auto", models_dir=None, **kwargs):
        LocalFeatureExtractor.__init__(self, conf)
        self._load(device, models_dir, self.output_names)
        self.last_timings: dict[str, float] = {}

    # --- to implement ---------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray):
        """(H, W, 3) uint8 RGB -> ``(tensor (1, C, H', W'), context)``."""
        raise NotImplementedError

    def postprocess(self, outputs, context, image_shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense outputs -> keypoints (N, 2) pixels of the input image, descriptors (N, D),
        scores (N,)."""
        raise NotImplementedError

    # --- extraction ------------------------------------------------------------------------------
    def _extract(self, image):
        if image.ndim == 2 and self.wants_color:
            image = np.repeat(image[:, :, None], 3, axis=2)
        t0 = time.perf_counter()
        x, ctx = self.preprocess(image)
        t1 = time.perf_counter()
        outputs = self.runner(x)
        t2 = time.perf_counter()
        result = self.postprocess(outputs, ctx, image.shape[:2])
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": t1 - t0, "network": t2 - t1, "postprocess": t3 - t2}
        return result

    def extract_batch(self, images):
        """Images of equal size after preparation share one network run."""
        torch = self.torch
        prepared = [self._prepare(im) for im in images]
        out: list = [None] * len(images)
        groups: dict = {}
        for i, (p, _, _) in enumerate(prepared):
            groups.setdefault(p.shape, []).append(i)
        for idx in groups.values():
            if not self._batchable() or len(idx) == 1:
                for i in idx:
                    out[i] = self._extract_prepared(images[i], *prepared[i])  # keeps its dense map when asked
                continue
            inputs, ctxs = [], []
            for i in idx:
                p = prepared[i][0]
                x, ctx = self.preprocess(np.repeat(p[:, :, None], 3, axis=2) if p.ndim == 2 and self.wants_color else p)
                inputs.append(x)
                ctxs.append(ctx)
            outputs = self.runner(torch.cat(inputs))
            for j, i in enumerate(idx):
                p, sx, sy = prepared[i]
                res = self.postprocess(tuple(o[j:j + 1] for o in outputs), ctxs[j], p.shape[:2])
                out[i] = self._finish(images[i], res, sx, sy)
        return out

    def _batchable(self) -> bool:
        return True

    @staticmethod
    def to_numpy(*tensors):
        return tuple(t.detach().float().cpu().numpy() for t in tensors)
