"""Freed heap memory kept in the process between frames (glibc's malloc).

A query allocates the same large temporaries every frame: OpenCV's SIFT scale space (about
70 MB for a 640x480 image with its doubled first octave) and the similarity blocks of 2D-3D
matching. glibc returns freed memory at the top of the heap to the kernel once it exceeds the
trim threshold, and serves allocations above the mmap threshold with fresh mappings; both
thresholds adapt to the sizes the process happened to free last (``mallopt(3)``, "dynamic mmap
threshold"). With the wrong history, every frame gives its pages back and faults them in again:
measured on the temple queries by ``benchmarks/side_by_side.py`` (2 cores), 17,352 minor page
faults per query and the query 38 % slower (108.7 against 78.9 ms p50), against 35 faults per
query with the thresholds fixed; a robot-world mapping keyframe faulted 19,000 pages, half of
its extraction time. Real-time practice is the same: no page faults in the loop (ros-realtime's
``minimal_memory_lock`` example), and glibc told not to give the heap back (the Linux
Foundation's real-time wiki, "Memory for Real-time Applications", dynamic memory allocation).

:func:`retain_freed_memory` fixes both thresholds, once per process. The cost is that memory a
peak freed stays counted in the process's resident size, up to the trim threshold.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: the largest mmap threshold glibc accepts on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``)
MMAP_THRESHOLD_MAX = 32 << 20

_applied: int | None = None


def retain_freed_memory(trim_threshold_mib: int) -> bool:
    """Keep up to ``trim_threshold_mib`` MiB of freed memory at the top of the heap instead of
    returning it to the kernel (``M_TRIM_THRESHOLD``), and serve allocations up to 32 MiB from
    the heap (``M_MMAP_THRESHOLD``), process-wide; this also turns glibc's dynamic thresholds off.

    Args:
        trim_threshold_mib: MiB; 0 changes nothing: glibc's adaptive thresholds stay, or the
            ones an earlier call set (they are not undone).
    Returns:
        True when the thresholds are set (now or by an earlier call with the same value); False
        with 0, or where the C library is not glibc (musl, macOS: nothing to tune here).
    Raises:
        ValueError: a negative size, or one of 2 GiB or more (``mallopt`` takes an ``int``).
    """
    global _applied
    if trim_threshold_mib < 0 or trim_threshold_mib >= 2048:
        raise ValueError(f"malloc_trim_threshold_mib must be in [0, 2048), got {trim_threshold_mib}")
    if trim_threshold_mib == 0:
        return False
    if _applied == trim_threshold_mib:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        logger.debug("not glibc: the malloc thresholds are left to the C library")
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold_mib) << 20) == 1
    ok = ok and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    if not ok:
        logger.warning("glibc refused the malloc thresholds; frames may fault their memory in again")
        return False
    _applied = trim_threshold_mib
    logger.debug("malloc: trim threshold %d MiB, mmap threshold %d MiB", trim_threshold_mib, MMAP_THRESHOLD_MAX >> 20)
    return True
