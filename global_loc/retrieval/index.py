"""The keyframe retrieval index: exact or approximate inner-product search with faiss.

Global descriptors are L2-normalised, so the inner product is the cosine similarity.

- ``flat``: exact search (``IndexFlatIP``), for maps up to
  ``mapping.exact_retrieval_max_keyframes`` keyframes;
- ``ivfpq``: an inverted file over product-quantised codes (Jégou, Douze and Schmid, "Product
  Quantization for Nearest Neighbor Search", TPAMI 2011), 4-bit codes scanned with SIMD
  (André, Kermarrec and Le Scouarnec, "Cache Locality is not Enough: High-Performance Nearest
  Neighbor Search with Product Quantization Fast Scan", VLDB 2015; faiss ``IndexIVFPQFastScan``):
  the default above that size; ``m / 2`` bytes a keyframe; ``nprobe`` of its ``nlist`` cells are
  searched (a quarter, at least 16, by default);
- ``hnsw``: a hierarchical navigable small-world graph over 8-bit scalar-quantised descriptors
  (Malkov and Yashunin, TPAMI 2018; faiss ``IndexHNSWSQ``), about ``D + 8 M`` bytes a keyframe:
  fast on maps of some 100 k keyframes, weaker beyond (``benchmarks/results/scale.md``).

Approximate indexes are trained and filled when the map is built and stored in it; their
``rerank`` x k best candidates are re-ranked with the exact descriptors the map keeps (only those
rows are read).

Where faiss was built with GPU support and a GPU is visible, the index moves to it (faiss-gpu);
otherwise it stays on the CPU.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field

import faiss
import numpy as np

logger = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivfpq")


def faiss_gpu_available() -> bool:
    """True where faiss has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@dataclass
class TrainedIndex:
    """An approximate index trained and filled at indexing time, as a map stores it.

    Attributes:
        kind: ``"hnsw"`` or ``"ivfpq"``.
        params: what it was built with (``{"M", "ef_construction"}`` or ``{"nlist", "m",
            "nbits"}``, and ``"dim"``, ``"size"``).
        data: (B,) uint8 the faiss index (``faiss.serialize_index``).
    """

    kind: str
    params: dict = field(default_factory=dict)
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    def to_faiss(self) -> "faiss.Index":
        return faiss.deserialize_index(np.ascontiguousarray(self.data, np.uint8))

    def params_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


def ivfpq_params(num_keyframes: int, dim: int) -> dict:
    """Default IVF-PQ parameters for ``num_keyframes`` descriptors of ``dim`` dimensions:
    ``nlist`` a power of two near ``4 sqrt(K)`` (at most ``K / 39``, the training points faiss
    wants per cell), ``m`` sub-quantisers the largest of 64, 48, 32, 16, 8, 4, 2 that divides
    ``dim`` with at least 2 dimensions each, ``nbits`` 4 (faiss's SIMD "fast scan" codes: ``m / 2``
    bytes a keyframe, scanned about ten times faster than 8-bit codes, and the exact re-ranking
    makes up for their coarseness)."""
    nlist = 2 ** int(round(math.log2(max(4.0 * math.sqrt(num_keyframes), 1.0))))
    nlist = int(max(1, min(nlist, num_keyframes // 39, 65536)))
    m = next((c for c in (64, 48, 32, 16, 8, 4, 2) if dim % c == 0 and dim // c >= 2), 1)
    return {"nlist": nlist, "m": m, "nbits": 4}


def train_ivfpq(descriptors: np.ndarray, params: dict | None = None, max_training: int = 262144,
                seed: int = 0) -> TrainedIndex:
    """Train and fill an IVF-PQ index (inner product) on (K, D) float32 descriptors.

    Args:
        descriptors: the map's global descriptors, L2-normalised.
        params: ``{"nlist", "m", "nbits"}`` (``nbits`` 4: fast-scan codes, 8: classic PQ);
            missing ones from :func:`ivfpq_params`.
        max_training: at most this many rows (a seeded sample) train the quantisers.
    Raises:
        ValueError: fewer descriptors than ``nlist`` or ``2^nbits``, ``m`` not dividing ``D``,
            ``nbits`` not 4 or 8.
    """
    x = np.ascontiguousarray(descriptors, np.float32)
    k, d = x.shape
    p = {**ivfpq_params(k, d), **(params or {})}
    nlist, m, nbits = int(p["nlist"]), int(p["m"]), int(p["nbits"])
    if k < max(nlist, 2**nbits) or d % m or nbits not in (4, 8):
        raise ValueError(f"IVF-PQ needs at least max(nlist={nlist}, 2^nbits={2**nbits}) descriptors (got {k}), "
                         f"m={m} dividing their {d} dimensions and nbits 4 or 8 (got {nbits})")
    factory = f"IVF{nlist},PQ{m}x4fs" if nbits == 4 else f"IVF{nlist},PQ{m}"
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = seed
    # a small map (ivfpq forced on it) trains on fewer points than faiss's rule of thumb; it
    # still works (every cell is searched), so its warning per sub-quantiser is left out
    ivf.cp.min_points_per_centroid = 1
    faiss.downcast_index(ivf).pq.cp.min_points_per_centroid = 1
    rng = np.random.default_rng(seed)
    index.train(x if k <= max_training else x[np.sort(rng.choice(k, max_training, replace=False))])
    index.add(x)
    return TrainedIndex("ivfpq", {"nlist": nlist, "m": m, "nbits": nbits, "dim": d, "size": k},
                        faiss.serialize_index(index))


def train_hnsw(descriptors: np.ndarray, params: dict | None = None, max_training: int = 262144,
               seed: int = 0) -> TrainedIndex:
    """Build an HNSW graph (inner product) over 8-bit scalar-quantised (K, D) float32
    descriptors.

    Args:
        descriptors: the map's global descriptors, L2-normalised.
        params: ``{"M": graph degree (32), "ef_construction": (40)}``.
        max_training: at most this many rows (a seeded sample) fit the scalar quantiser's ranges.
    """
    x = np.ascontiguousarray(descriptors, np.float32)
    k, d = x.shape
    p = {"M": 32, "ef_construction": 40, **(params or {})}
    index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, int(p["M"]), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(p["ef_construction"])
    rng = np.random.default_rng(seed)
    index.train(x if k <= max_training else x[np.sort(rng.choice(k, max_training, replace=False))])
    index.add(x)
    return TrainedIndex("hnsw", {"M": int(p["M"]), "ef_construction": int(p["ef_construction"]), "dim": d,
                                 "size": k}, faiss.serialize_index(index))


def train_index(kind: str, descriptors: np.ndarray, params: dict | None = None) -> TrainedIndex | None:
    """An approximate index of ``kind`` (``hnsw``, ``ivfpq``) for ``descriptors``, or None for
    ``flat``.

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "flat":
        return None
    if kind == "hnsw":
        return train_hnsw(descriptors, params)
    if kind == "ivfpq":
        return train_ivfpq(descriptors, params)
    raise ValueError(f"unknown retrieval index '{kind}'; use one of {', '.join(KINDS)}")


class RetrievalIndex:
    """Top-k keyframe search by global descriptor.

    Args:
        descriptors: (K, D) float32, L2-normalised, one row per keyframe (may be a read-only
            or memory-mapped array: only re-ranked rows are read by ``ivfpq``).
        device: ``cpu``, ``cuda`` or ``auto``; ``cuda`` and ``auto`` use a faiss GPU index
            when faiss-gpu is installed and a GPU is visible, and fall back to the CPU
            (logged) otherwise.
        trained: an approximate index built for these descriptors (:func:`train_ivfpq`, as the
            map stores it), or None for exact search.
        nprobe: IVF cells searched per query (``localization.retrieval_nprobe``; 0: a quarter
            of them, and at least 16).
        ef_search: HNSW's search queue length (``localization.retrieval_ef_search``; at least
            the number of candidates).
        rerank: candidates re-ranked exactly, as a multiple of k (``localization.retrieval_rerank``).
    Raises:
        ValueError: descriptors that are not (K, D), or a trained index of another size or
            dimension.
    """

    def __init__(self, descriptors: np.ndarray, device: str = "auto", trained: TrainedIndex | None = None,
                 nprobe: int = 0, rerank: int = 10, ef_search: int = 128):
        if np.ndim(descriptors) != 2:
            raise ValueError(f"descriptors must be (K, D), got {np.shape(descriptors)}")
        self.size, self.dim = descriptors.shape
        self.kind = "flat" if trained is None else trained.kind
        self.rerank = max(1, int(rerank))
        self.device = "cpu"
        self._matrix = None
        gpu = device in ("cuda", "auto") and faiss_gpu_available()
        if trained is None and not gpu and isinstance(descriptors, np.ndarray) and not descriptors.flags.writeable \
                and descriptors.dtype == np.float32 and descriptors.flags.c_contiguous:
            # a memory-mapped map's descriptors: searched where they lie (one GEMV, as IndexFlatIP
            # does), not copied into faiss, so that the pages are held once
            self._matrix, self._descriptors = descriptors, None
            self._index = None
            return
        if trained is None:
            x = np.ascontiguousarray(descriptors, dtype=np.float32)
            index = faiss.IndexFlatIP(self.dim)
            index.add(x)
            self._descriptors = None
        else:
            if trained.kind not in KINDS:
                raise ValueError(f"unknown retrieval index kind '{trained.kind}'; this release knows {KINDS}")
            index = trained.to_faiss()
            if index.ntotal != self.size or index.d != self.dim:
                raise ValueError(f"the map's retrieval index holds {index.ntotal} {index.d}-d descriptors, the map "
                                 f"{self.size} {self.dim}-d ones; rebuild the map")
            if trained.kind == "ivfpq":
                ivf = faiss.extract_index_ivf(index)
                ivf.nprobe = int(nprobe) if nprobe > 0 else max(ivf.nlist // 4, min(ivf.nlist, 16))
            else:
                index.hnsw.efSearch = int(ef_search)
            self._descriptors = descriptors
        if device in ("cuda", "auto") and faiss_gpu_available():
            try:
                self._res = faiss.StandardGpuResources()
                index = faiss.index_cpu_to_gpu(self._res, 0, index)
                self.device = "cuda"
            except RuntimeError as e:  # e.g. a PQ size the GPU kernels lack
                logger.warning("the %s retrieval index stays on the CPU: %s", self.kind, e)
        elif device == "cuda":
            logger.warning("faiss has no GPU support here; the retrieval index runs on the CPU")
        self._index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar keyframes of each query.

        Args:
            queries: (B, D) or (D,) float32, L2-normalised.
        Returns:
            ``(scores, indices)``, each (B, min(k, K)): cosine similarities (float32, best
            first) and keyframe row indices (int64; -1 where an approximate index found fewer).
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise ValueError(f"query descriptors are {q.shape[1]}-d, the index is {self.dim}-d")
        k = min(int(k), self.size)
        if k <= 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if self._matrix is not None:
            s = q @ self._matrix.T  # (B, K)
            idx = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < self.size else np.tile(np.arange(self.size), (len(q), 1))
            part = np.take_along_axis(s, idx, axis=1)
            order = np.argsort(-part, axis=1, kind="stable")
            return np.take_along_axis(part, order, axis=1).astype(np.float32), np.take_along_axis(idx, order, axis=1)
        if self._descriptors is None:
            scores, idx = self._index.search(q, k)
            return scores, idx.astype(np.int64)
        _, cand = self._index.search(q, min(self.size, k * self.rerank))
        scores = np.full((len(q), k), -np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        for b in range(len(q)):  # exact scores of the candidates, from the map's descriptors
            c = cand[b][cand[b] >= 0]
            if not len(c):
                continue
            order = np.sort(c)  # sorted rows read a memory-mapped array front to back
            s = np.asarray(self._descriptors[order], np.float32) @ q[b]
            best = np.argsort(-s, kind="stable")[:k]
            scores[b, :len(best)], out[b, :len(best)] = s[best], order[best]
        return scores, out
