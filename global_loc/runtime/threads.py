"""Thread counts of the numerical libraries under the pipeline.

numpy and scipy (OpenBLAS) and faiss (OpenMP and its own OpenBLAS) start one thread per core,
and those threads spin between calls. The localizer's calls are small and many (a GEMM of a
few hundred descriptors, a k-means assignment), so on a robot's few cores, shared with other
nodes, the spinning threads cost more than they give: measured on the robot world's query
run on 2 cores (``benchmarks/realtime.py``), one BLAS/OpenMP thread was both faster per frame
and used about half the CPU. OpenCV (SIFT) and PyTorch keep their own pools: their work per
call is large enough to use them.

Work the pipeline splits itself (the row blocks of 2D-3D matching) runs on a pool of Python
threads instead (:func:`shared_thread_pool`): each calls single-threaded BLAS, numpy releases the
GIL inside, and the idle threads wait on a queue without spinning.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)
_applied: int | None = None

#: most threads ``0`` (one per core) stands for in :func:`resolve_threads`
MAX_POOL_THREADS = 8

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int) -> int:
    """A thread count from a setting: ``threads`` itself when positive, else (0) one per core
    of this process, at most :data:`MAX_POOL_THREADS`.

    Raises:
        ValueError: a negative count.
    """
    if threads < 0:
        raise ValueError(f"a thread count must be 0 (one per core) or positive, got {threads}")
    return int(threads) if threads > 0 else min(available_cores(), MAX_POOL_THREADS)


#: name prefix of the pools' threads (see :func:`in_pool_thread`)
POOL_THREAD_PREFIX = "global_loc_pool"


def in_pool_thread() -> bool:
    """Whether the calling thread is one of these pools' workers: work it splits must run in it,
    since waiting there for the pool's other threads could wait on itself."""
    return threading.current_thread().name.startswith(POOL_THREAD_PREFIX)


def shared_thread_pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` worker threads (made at the first request, then
    shared by every caller asking for that many; a forked child makes its own). Not to be
    waited on from one of its own threads (:func:`in_pool_thread`)."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix=POOL_THREAD_PREFIX)
        return pool


def _forget_pools_in_child() -> None:  # a forked child has none of its parent's threads
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


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
