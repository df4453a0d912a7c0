"""Parallel and distributed indexing (issue 10, part 3): worker processes and Ray tasks build
the same map as the single-process path, from one bag or several."""
import subprocess
import sys
import types

import numpy as np
import pytest

from global_loc.config import load_preset
from global_loc.errors import ConfigError, GlobalLocError, InputError
from global_loc.map.storage import read_map
from global_loc.map.workers import MIN_KEYFRAMES_FOR_PROCESSES, KeyframeExtractor, create_workers
from global_loc.pipeline import index_bag

ARRAYS = ["keyframe_ids", "stamps", "q_wxyz", "t", "global_descriptors", "obs_offsets", "obs_keypoints",
          "obs_descriptors", "obs_point_index", "point_ids", "points_xyz", "points_error", "point_features"]


def _conf():
    conf = load_preset("sift")
    conf.mapping.keyframe_min_distance_m = 0.2
    conf.mapping.keyframe_min_rotation_deg = 10.0
    return conf


def assert_same_map(a, b):
    assert a.names == b.names
    for name in ARRAYS:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.shape == y.shape, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    assert a.num_points3D > 100


@pytest.fixture(scope="module")
def two_bags(mini_world):
    """The mini world's mapping run in two formats (MCAP and ROS 1): two recordings of one map
    frame, as two robots' runs would be."""
    return [mini_world[("mcap", False)].mapping.bag, mini_world[("ros1", False)].mapping.bag]


@pytest.fixture(scope="module")
def inline_map(two_bags):
    return index_bag(two_bags, "/camera/image_raw", _conf(), workers=1)


def test_two_bags_make_one_map_with_consistent_ids(inline_map, two_bags):
    m = inline_map
    n = m.num_keyframes
    assert np.array_equal(m.keyframe_ids, np.arange(n))
    labels = [b.name for b in two_bags]
    first = [k for k in m.names if k.startswith(labels[0] + "_")]
    second = [k for k in m.names if k.startswith(labels[1] + "_")]
    # each bag selects its keyframes on its own: the same run gives the same keyframes twice
    assert len(first) == len(second) == n // 2 and m.names == first + second
    assert m.metadata["source"]["bags"] == [str(b) for b in two_bags]
    assert m.metadata["source"]["indexing"].items() >= {"engine": "inline", "workers": 1}.items()
    # points are seen from both recordings
    kf_of_obs = np.repeat(np.arange(n), np.diff(m.obs_offsets))
    seen = np.zeros((2, m.num_points3D), bool)
    seen[(kf_of_obs >= n // 2).astype(int), m.obs_point_index] = True
    assert seen.all(axis=0).mean() > 0.5


def test_worker_processes_build_the_same_map(inline_map, two_bags):
    m = index_bag(two_bags, "/camera/image_raw", _conf(), workers=2)
    assert m.metadata["source"]["indexing"].items() >= {"engine": "processes", "workers": 2}.items()
    assert_same_map(m, inline_map)


@pytest.mark.slow
def test_ray_builds_the_same_map(inline_map, two_bags, tmp_path):
    """Ray on this machine (a local instance with 2 CPUs; Ray 2.x no longer has a
    ``local_mode``): one task per chunk of keyframes, the results merged in order."""
    pytest.importorskip("ray", reason="pip install ray (make test installs it)")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        m = index_bag(two_bags, "/camera/image_raw", _conf(), workers=0, ray_address="local")
        # a task that fails reports its error here
        with create_workers(_conf(), ray_address="local") as pool:
            with pytest.raises(Exception, match="expected an \\(H, W\\) or \\(H, W, 3\\) uint8 image"):
                list(pool.map([[np.zeros((4, 4), np.float32)]]))
    finally:
        ray.shutdown()
    assert m.metadata["source"]["indexing"].items() >= {"engine": "ray", "workers": 2}.items()
    assert_same_map(m, inline_map)


def test_cli_indexes_several_bags_in_parallel(two_bags, inline_map, tmp_path):
    out = tmp_path / "two.glmap"
    args = ["-q", "index", "--bag", str(two_bags[0]), "--bag", str(two_bags[1]), "--image-topic",
            "/camera/image_raw", "--out", str(out), "--workers", "2"]
    proc = subprocess.run([sys.executable, "-m", "global_loc.cli.main", *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "keyframes/s, 2 processes worker(s)" in proc.stdout
    m = read_map(out)
    assert m.names == inline_map.names and m.num_points3D == inline_map.num_points3D
    bad = subprocess.run([sys.executable, "-m", "global_loc.cli.main", *args[:-1], "-1"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "--workers must be 0 (one per core) or positive" in bad.stderr


def test_engine_choice():
    with pytest.raises(ConfigError, match="workers must be 0"):
        create_workers(_conf(), -2)
    # by default, a few keyframes stay in this process (starting workers costs more)
    with create_workers(_conf(), 0, expected=MIN_KEYFRAMES_FOR_PROCESSES - 1) as w:
        assert w.kind == "inline"
    with create_workers(_conf(), 2, expected=3) as w:  # asked for: granted
        assert w.kind == "processes" and w.num_workers == 2
    # a network on the GPU batches there in one process instead of one model per worker
    extractor = KeyframeExtractor(_conf())
    extractor.extractor.runner = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"))
    with create_workers(_conf(), 0, extractor=extractor) as w:
        assert w.kind == "inline" and w.extractor is extractor


def test_a_missing_ray_cluster_is_named(monkeypatch):
    pytest.importorskip("ray", reason="pip install ray (make test installs it)")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(InputError, match="cannot join the Ray cluster 'auto'.*ray start --head"):
        create_workers(_conf(), ray_address="auto")


def test_a_dead_worker_is_reported():
    """A worker killed (as the kernel's out-of-memory killer would) ends indexing with an error
    that says what happened and what to do, not a hang."""
    import os
    import signal

    images = [np.zeros((48, 64, 3), np.uint8)] * 2
    with create_workers(_conf(), 2) as pool:
        assert len(list(pool.map([images]))) == 1  # the workers are up
        for pid in list(pool._pool._processes):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(GlobalLocError, match="an indexing worker process died.*fewer --workers"):
            list(pool.map([images, images]))
