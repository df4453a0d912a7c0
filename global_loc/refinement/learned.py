"""Dense features from a learned local feature network, reused for refinement (DRAN).

Morlana and Montiel, "Reuse your features: unifying retrieval and feature-metric alignment"
(DRAN), ICRA 2023: the dense descriptor map a network computes anyway to describe keypoints is
the feature map that feature-metric alignment needs. A source here shares the preset's
extractor when it is the same network with the same options (no second forward pass: the
extractor keeps the map of the image it last described, see
:meth:`~global_loc.features.base.LocalFeatureExtractor.dense_map_for`), and otherwise runs its
own. Levels are the map average-pooled by ``2^k`` for each ``k`` of ``octaves``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..features import EXTRACTORS, create_extractor
from ..features.base import LocalFeatureExtractor
from ..runtime.model import identity_conf
from .base import DenseFeatures, FeatureLevel


def pool(fmap, factor: int) -> np.ndarray:
    """A (C, H, W) map (torch tensor or array) average-pooled by ``factor`` into a (C, H/f, W/f)
    float32 array (the last rows and columns that do not fill a block are dropped; pixel ``j``
    of the result covers ``factor*j .. factor*j + factor - 1``)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the learned extractors need torch
        torch = None
    if torch is not None and isinstance(fmap, torch.Tensor):
        with torch.inference_mode():
            t = fmap.detach().float()
            if factor > 1:
                t = torch.nn.functional.avg_pool2d(t[None], factor)[0]
            return t.cpu().contiguous().numpy()
    fmap = np.asarray(fmap, np.float32)
    if factor == 1:
        return np.ascontiguousarray(fmap)
    c, h, w = fmap.shape
    h2, w2 = h // factor, w // factor
    return fmap[:, : h2 * factor, : w2 * factor].reshape(c, h2, factor, w2, factor).mean(axis=(2, 4))


class NetworkDense(DenseFeatures):
    """Base of the learned sources: the dense descriptor map of extractor ``extractor_name``.

    Args:
        conf: ``Conf`` with ``extractor`` (the extractor's options, as in a preset's
            ``features`` section, without ``name``) and ``octaves`` (pooling levels, coarse first).
        device, models_dir: where its network runs and where its weights are, as for the
            extractor (used only when it does not share the preset's, see :meth:`share`).
    """

    extractor_name: ClassVar[str]
    default_extractor: ClassVar[dict] = {}

    @dataclass
    class Conf:
        """Attributes:
        extractor: the network's options, as in a preset's ``features`` section without
            ``name`` (those given must agree with the preset's extractor for it to be shared).
        octaves: average-pooling levels of its map, coarse first (``k``: pooled by ``2^k``).
        """

        extractor: dict = field(default_factory=dict)
        octaves: list[int] = field(default_factory=lambda: [2, 0])

    def __init__(self, conf=None, device: str = "auto", models_dir=None, **kwargs):
        super().__init__(conf)
        self.conf.extractor = {**self.default_extractor, **self.conf.extractor}
        self._device, self._models_dir = device, models_dir
        self._extractor: LocalFeatureExtractor | None = None
        cls, self._extractor_conf = EXTRACTORS.conf_from_dict({"name": self.extractor_name, **self.conf.extractor})

    def identity_conf(self) -> dict:
        return {"extractor": self.extractor.identity_conf(), "octaves": list(self.conf.octaves)}

    def share(self, extractor: LocalFeatureExtractor) -> bool:
        """Use ``extractor`` (the preset's) when it is this network and agrees with every option
        given in ``conf.extractor``: its maps are then reused, not recomputed. Returns whether
        it is shared."""
        if extractor.name != self.extractor_name:
            return False
        theirs = extractor.identity_conf()
        mine = identity_conf(self._extractor_conf)
        for key in self.conf.extractor:
            if key in mine and theirs.get(key) != mine[key]:
                return False
        self._extractor = extractor
        extractor.retain_dense = True
        return True

    @property
    def extractor(self) -> LocalFeatureExtractor:
        if self._extractor is None:
            self._extractor = create_extractor({"name": self.extractor_name, **self.conf.extractor},
                                               device=self._device, models_dir=self._models_dir)
            self._extractor.retain_dense = True
        return self._extractor

    @property
    def channels(self) -> list[int]:
        """The network's descriptor size at every level (its dense map is what its keypoint
        descriptors are sampled from)."""
        return [self.extractor.dim] * len(self.conf.octaves)

    def _extract(self, image: np.ndarray) -> list[FeatureLevel]:
        ext = self.extractor
        got = ext.dense_map_for(image)
        if got is None:  # not the image the extractor described last: run it
            ext.extract(image)
            got = ext.dense_map_for(image)
        fmap, scale = got
        return [FeatureLevel(pool(fmap, 2**k), scale * 2**k, channels_first=True) for k in self.conf.octaves]
