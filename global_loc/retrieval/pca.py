"""PCA-whitening of global descriptors (Jegou and Chum, ECCV 2012), as MobileNetVLAD's index
applies it to reduce NetVLAD descriptors to ``pca_dims``."""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ..errors import ConfigError


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` divided by its L2 norm along ``axis`` (zero vectors stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


@dataclass
class PCAWhitening:
    """``y = normalize(A @ x + b)``: projection onto the principal axes, scaled by the inverse
    square root of their variances.

    Attributes:
        A: (dim, in_dim) float32; b: (dim,) float32.
    """

    A: np.ndarray
    b: np.ndarray

    @property
    def dim(self) -> int:
        return self.A.shape[0]

    @property
    def in_dim(self) -> int:
        return self.A.shape[1]

    @classmethod
    def fit(cls, X: np.ndarray, dims: int) -> "PCAWhitening":
        """Learn from (K, D) float32 descriptors with faiss ``PCAMatrix`` (eigen power -0.5).

        Raises:
            ConfigError: when ``dims`` is not below both K and D.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        k, d = X.shape
        if not 0 < dims < d:
            raise ConfigError(f"pca_dims={dims} must be between 1 and the descriptor size {d - 1}")
        if dims >= k:
            raise ConfigError(
                f"pca_dims={dims} needs more than {dims} keyframes to learn from; this map has "
                f"{k}. Lower global_descriptor.pca_dims below {k} or set it to 0"
            )
        pca = faiss.PCAMatrix(d, dims, -0.5)
        pca.train(X)
        A = faiss.vector_to_array(pca.A).reshape(dims, d).astype(np.float32)
        b = faiss.vector_to_array(pca.b).astype(np.float32)
        return cls(A, b)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(N, in_dim) -> (N, dim) float32, L2-normalised."""
        return l2_normalize(np.asarray(X, np.float32) @ self.A.T + self.b)

    def state(self) -> dict[str, np.ndarray]:
        return {"pca_A": self.A, "pca_b": self.b}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> "PCAWhitening":
        return cls(np.asarray(state["pca_A"], np.float32), np.asarray(state["pca_b"], np.float32))
