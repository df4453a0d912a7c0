"""The global descriptor interface."""
from __future__ import annotations

import abc
from typing import ClassVar, Sequence

import numpy as np

from ..errors import MapMismatchError
from ..registry import ConfiguredModel
from ..types import LocalFeatures
from .pca import PCAWhitening


class GlobalDescriptorModel(ConfiguredModel, abc.ABC):
    """Maps an image (and its local features) to one L2-normalised vector for retrieval.

    Two kinds exist: aggregations of the local descriptors whose parameters are learned from
    the map itself (VLAD: :attr:`requires_fit` is True; :meth:`fit` runs at indexing time and
    :meth:`state` is stored in the map), and networks with weights from a file.

    An optional PCA-whitening to ``pca_dims`` (as in MobileNetVLAD's index) is learned from
    the map's descriptors by :meth:`fit_pca` and stored in the map with the model's state.

    Subclasses set ``name``, ``Conf`` and implement :meth:`_describe` and :attr:`raw_dim`.
    """

    requires_fit: ClassVar[bool] = False

    def __init__(self, conf=None, **kwargs):
        super().__init__(conf)
        self.pca: PCAWhitening | None = None

    # --- sizes and identity ----------------------------------------------------------------
    @property
    @abc.abstractmethod
    def raw_dim(self) -> int:
        """Dimension before PCA."""

    @property
    def dim(self) -> int:
        """Dimension of the descriptors this model returns (after PCA, where fitted)."""
        return self.pca.dim if self.pca is not None else self.raw_dim

    @property
    def is_fitted(self) -> bool:
        return True

    # --- learned state -----------------------------------------------------------------------
    def fit(self, features: Sequence[LocalFeatures]) -> None:
        """Learn the model's parameters from the map's local features (no-op by default)."""

    def fit_pca(self, raw_descriptors: np.ndarray) -> None:
        """Learn PCA-whitening to ``conf.pca_dims`` from (K, raw_dim) map descriptors."""
        dims = getattr(self.conf, "pca_dims", 0)
        self.pca = PCAWhitening.fit(raw_descriptors, dims) if dims else None

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to store in the map (vocabulary, PCA)."""
        out = self._state()
        if self.pca is not None:
            out.update(self.pca.state())
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned, as read from a map.

        Raises:
            MapMismatchError: when the arrays do not fit this model's configuration.
        """
        self._load_state({k: v for k, v in state.items() if not k.startswith("pca_")})
        self.pca = PCAWhitening.from_state(state) if "pca_A" in state else None
        if self.pca is not None and self.pca.in_dim != self.raw_dim:
            raise MapMismatchError(
                f"the map's PCA takes {self.pca.in_dim}-d descriptors but {self.name} "
                f"gives {self.raw_dim}-d ones"
            )

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        pass

    # --- description -------------------------------------------------------------------------
    @abc.abstractmethod
    def _describe(self, image: np.ndarray | None, features: LocalFeatures) -> np.ndarray:
        """(raw_dim,) float32 L2-normalised descriptor of one image."""

    def describe_raw(self, image: np.ndarray | None, features: LocalFeatures) -> np.ndarray:
        """(raw_dim,) float32 descriptor before PCA."""
        return self._describe(image, features)

    def __call__(self, image: np.ndarray | None, features: LocalFeatures) -> np.ndarray:
        """Global descriptor of one image.

        Args:
            image: (H, W) or (H, W, 3) uint8 (unused by aggregation models; may be None).
            features: the image's local features.
        Returns:
            (dim,) float32, unit L2 norm (all zeros when the image has no features).
        """
        d = self._describe(image, features)
        return self.pca.transform(d[None])[0] if self.pca is not None else d
