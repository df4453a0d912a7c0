"""VLAD over local descriptors, with a vocabulary learned from the map itself.

Jegou, Douze, Schmid and Perez, "Aggregating local descriptors into a compact image
representation", CVPR 2010; intra-normalisation from Arandjelovic and Zisserman, "All about
VLAD", CVPR 2013. The vocabulary is learned with faiss k-means at indexing time and stored in
the map, so this global descriptor needs no weights.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import faiss
import numpy as np

from ..errors import EmptyMapError, MapMismatchError
from ..types import LocalFeatures
from . import GLOBAL_MODELS
from .base import GlobalDescriptorModel
from .pca import l2_normalize

logger = logging.getLogger(__name__)


#: faiss's k-means asks for this many training points per centroid (and prints a warning below)
FAISS_MIN_POINTS_PER_CENTROID = 39


@GLOBAL_MODELS.register
class VLAD(GlobalDescriptorModel):
    """VLAD: the sum of residuals to the nearest visual word, per word.

    Output: (num_clusters * D,) float32, each word's block L2-normalised (intra-norm), then
    the whole vector (or its PCA-whitened projection to ``pca_dims``) L2-normalised.
    """

    name = "vlad"
    requires_fit = True

    @dataclass
    class Conf:
        """Attributes:
        num_clusters: visual words k.
        kmeans_iterations: Lloyd iterations of faiss k-means.
        max_training_descriptors: descriptors sampled from the map to learn the words.
        power_norm: signed square root before intra-normalisation.
        seed: seed of the sampling and of k-means.
        pca_dims: PCA-whiten to this size (0: no PCA).
        """

        num_clusters: int = 64
        kmeans_iterations: int = 20
        max_training_descriptors: int = 200_000
        power_norm: bool = False
        seed: int = 0
        pca_dims: int = 0

    def __init__(self, conf=None, **kwargs):
        super().__init__(conf)
        self.centroids: np.ndarray | None = None
        self._index: faiss.Index | None = None

    @property
    def raw_dim(self) -> int:
        if self.centroids is None:
            raise RuntimeError("VLAD has no vocabulary yet: call fit() or load_state() first")
        return self.centroids.size

    @property
    def is_fitted(self) -> bool:
        return self.centroids is not None

    def fit(self, features: Sequence[LocalFeatures]) -> None:
        """Learn ``num_clusters`` words from the descriptors of the map's keyframes.

        Raises:
            EmptyMapError: with fewer descriptors than words.
        """
        descs = [f.descriptors for f in features if len(f)]
        total = sum(len(d) for d in descs)
        k = self.conf.num_clusters
        if total < k:
            raise EmptyMapError(
                f"VLAD needs at least {k} local descriptors to learn its vocabulary; the map's "
                f"keyframes have {total}. Add keyframes or lower global_descriptor.num_clusters"
            )
        X = np.concatenate(descs).astype(np.float32)
        rng = np.random.default_rng(self.conf.seed)
        if len(X) > self.conf.max_training_descriptors:
            X = X[rng.choice(len(X), self.conf.max_training_descriptors, replace=False)]
        if len(X) < FAISS_MIN_POINTS_PER_CENTROID * k:  # said once here, not by faiss on stderr
            logger.warning("the VLAD vocabulary of %d words is learned from %d local descriptors only (%d or more "
                           "give stable words): retrieval may be weak; a map of more keyframes, or "
                           "--set global_descriptor.num_clusters=%d, would do better", k, len(X),
                           FAISS_MIN_POINTS_PER_CENTROID * k, max(1, len(X) // FAISS_MIN_POINTS_PER_CENTROID))
        km = faiss.Kmeans(
            X.shape[1], k, niter=self.conf.kmeans_iterations, seed=self.conf.seed,
            max_points_per_centroid=max(256, len(X) // k + 1), min_points_per_centroid=1, verbose=False,
        )
        km.train(np.ascontiguousarray(X))
        self._set_centroids(km.centroids)
        logger.debug("VLAD vocabulary: %d words from %d descriptors", k, len(X))

    def _set_centroids(self, centroids: np.ndarray) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self._index = faiss.IndexFlatL2(self.centroids.shape[1])
        self._index.add(self.centroids)

    def _state(self) -> dict[str, np.ndarray]:
        return {"vlad_centroids": self.centroids}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        if "vlad_centroids" not in state:
            raise MapMismatchError("the map holds no VLAD vocabulary (vlad_centroids)")
        c = state["vlad_centroids"]
        if c.shape[0] != self.conf.num_clusters:
            raise MapMismatchError(
                f"the map's VLAD vocabulary has {c.shape[0]} words, the configuration asks for "
                f"{self.conf.num_clusters}"
            )
        self._set_centroids(c)

    def _describe(self, image, features: LocalFeatures) -> np.ndarray:
        k, d = self.centroids.shape
        vlad = np.zeros((k, d), np.float32)
        if len(features):
            x = np.ascontiguousarray(features.descriptors, dtype=np.float32)
            if x.shape[1] != d:
                raise MapMismatchError(
                    f"VLAD vocabulary is {d}-d but the local descriptors are {x.shape[1]}-d"
                )
            _, assign = self._index.search(x, 1)
            assign = assign[:, 0]
            np.add.at(vlad, assign, x - self.centroids[assign])
        if self.conf.power_norm:
            vlad = np.sign(vlad) * np.sqrt(np.abs(vlad))
        vlad = l2_normalize(vlad, axis=1)
        return l2_normalize(vlad.reshape(-1))
