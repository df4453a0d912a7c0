"""The keyframe retrieval index: exact inner-product search with faiss.

Global descriptors are L2-normalised, so the inner product is the cosine similarity. Where
faiss was built with GPU support and a GPU is visible, the index moves to it (faiss-gpu);
otherwise it stays on the CPU.
"""
from __future__ import annotations

import logging

import faiss
import numpy as np

logger = logging.getLogger(__name__)


def faiss_gpu_available() -> bool:
    """True where faiss has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class RetrievalIndex:
    """Top-k keyframe search by global descriptor.

    Args:
        descriptors: (K, D) float32, L2-normalised, one row per keyframe.
        device: ``cpu``, ``cuda`` or ``auto``; ``cuda`` and ``auto`` use a faiss GPU index
            when faiss-gpu is installed and a GPU is visible, and fall back to the CPU
            (logged) otherwise.
    """

    def __init__(self, descriptors: np.ndarray, device: str = "auto"):
        x = np.ascontiguousarray(descriptors, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"descriptors must be (K, D), got {x.shape}")
        self.size, self.dim = x.shape
        index = faiss.IndexFlatIP(self.dim)
        self.device = "cpu"
        if device in ("cuda", "auto") and faiss_gpu_available():
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
            self.device = "cuda"
        elif device == "cuda":
            logger.warning("faiss has no GPU support here; the retrieval index runs on the CPU")
        index.add(x)
        self._index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar keyframes of each query.

        Args:
            queries: (B, D) or (D,) float32, L2-normalised.
        Returns:
            ``(scores, indices)``, each (B, min(k, K)): cosine similarities (float32, best
            first) and keyframe row indices (int64).
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query descriptors are {q.shape[1]}-d, the index is {self.dim}-d")
        k = min(int(k), self.size)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores, idx = self._index.search(q, k)
        return scores, idx.astype(np.int64)
