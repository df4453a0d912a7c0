"""The process-wide runtime settings under the localizer: malloc thresholds and thread counts."""
import platform
import subprocess
import sys
import textwrap

import pytest

from global_loc.runtime.memory import retain_freed_memory
from global_loc.runtime.threads import MAX_POOL_THREADS, available_cores, resolve_threads, shared_thread_pool

# A "frame" allocates and touches 60 MiB in 5 MiB arrays, then frees them, as a query does with
# SIFT's scale space; the minor page faults of five frames after two warm-up frames are counted.
FRAMES = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from global_loc.runtime.memory import retain_freed_memory
    if sys.argv[1] != "0":
        assert retain_freed_memory(int(sys.argv[1]))
    def frame():
        arrays = [np.ones(5 << 18, np.float32) for _ in range(12)]
        del arrays
    frame(); frame()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        frame()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_retained_memory_is_not_faulted_in_again_every_frame():
    def faults(mib):
        out = subprocess.run([sys.executable, "-c", FRAMES, str(mib)], capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    # glibc's adaptive thresholds give the freed pages back and fault them in again (60 MiB is
    # 15,360 pages); kept, a frame reuses them
    assert faults(0) > 1000
    assert faults(256) < 50


def test_malloc_threshold_bounds_are_checked():
    assert retain_freed_memory(0) is False
    with pytest.raises(ValueError, match="malloc_trim_threshold_mib"):
        retain_freed_memory(-1)
    with pytest.raises(ValueError, match="malloc_trim_threshold_mib"):
        retain_freed_memory(4096)


def test_thread_counts():
    assert resolve_threads(3) == 3
    assert resolve_threads(0) == min(available_cores(), MAX_POOL_THREADS)
    with pytest.raises(ValueError, match="thread count"):
        resolve_threads(-2)
    pool = shared_thread_pool(2)
    assert pool is shared_thread_pool(2)
    assert sorted(pool.map(lambda x: x * x, range(5))) == [0, 1, 4, 9, 16]


def test_matching_inside_a_pool_thread_runs_there():
    """A matching called from one of the pool's own threads must not wait on the pool (with
    every thread doing so, none would be left to do the work)."""
    import numpy as np

    from global_loc.matching import match_descriptors
    from global_loc.runtime.threads import in_pool_thread

    rng = np.random.default_rng(0)
    db = rng.normal(size=(2000, 32)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[:600] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    pool = shared_thread_pool(2)
    assert not in_pool_thread()

    def nested(_):
        assert in_pool_thread()
        return len(match_descriptors(q, db, 0.8, True, threads=2))

    futures = [pool.submit(nested, k) for k in range(2)]  # both pool threads busy at once
    assert [f.result(timeout=30) for f in futures] == [len(match_descriptors(q, db, 0.8, True, threads=1))] * 2
