"""Thread counts of the numerical libraries under the pipeline.

numpy and scipy (OpenBLAS) and faiss (OpenMP and its own OpenBLAS) start one thread per core,
and those threads spin between calls. The localizer's calls are small and many (a GEMM of a
few hundred descriptors, a k-means assignment), so on a robot's few cores, shared with other
nodes, the spinning threads cost more than they give: measured on the robot world's query
run on 2 cores (``benchmarks/realtime.py``), one BLAS/OpenMP thread was both faster per frame
and used about half the CPU. OpenCV (SIFT) and PyTorch keep their own pools: their work per
call is large enough to use them.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)
_applied: int | None = None


def limit_blas_threads(num_threads: int) -> None:
    """Limit the BLAS thread pools (numpy, scipy, faiss) and faiss's OpenMP to
    ``num_threads``, process-wide, through ``threadpoolctl``; 0 leaves the libraries'
    defaults. Idempotent; later calls with another number change the limit again.

    Raises:
        ValueError: a negative number.
    """
    global _applied
    if num_threads < 0:
        raise ValueError(f"blas_threads must be 0 (library default) or positive, got {num_threads}")
    if num_threads == 0 or num_threads == _applied:
        return
    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=num_threads, user_api="blas")
    faiss.omp_set_num_threads(num_threads)
    _applied = num_threads
    logger.debug("BLAS and faiss OpenMP threads limited to %d", num_threads)
