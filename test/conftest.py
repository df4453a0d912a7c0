"""Shared fixtures.

Real data are read from ``../shared/data`` relative to the project root (never copied into
the repository). Where that folder is missing, the tests that need it skip with the reason;
where the environment variable ``CI`` is set, they fail instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLOBAL_LOC_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights"


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"{path} is missing (the shared data set lives beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have it")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def data_dir():
    return _require(DATA)


@pytest.fixture(scope="session")
def temple_dir():
    return _require(DATA / "temple_ring")


@pytest.fixture(scope="session")
def dino_dir():
    return _require(DATA / "dino_subset")


@pytest.fixture(scope="session")
def maupertuis_dir():
    return _require(DATA / "maupertuis_colmap")


@pytest.fixture(scope="session")
def temple_split(temple_dir, tmp_path_factory):
    """The temple ring split of the issue: even views make the map, odd views are queries.

    Returns a dict of paths: ``map_poses``, ``queries``, ``gt``, ``cameras``, ``images``.
    """
    out = tmp_path_factory.mktemp("temple_split")
    poses = (temple_dir / "poses_cam_from_world.txt").read_text().splitlines()
    cams = (temple_dir / "cameras.txt").read_text().splitlines()

    def number(line):
        return int(line.split()[0][len("templeR"):len("templeR") + 4])

    (out / "map_poses.txt").write_text("\n".join(l for l in poses if number(l) % 2 == 0) + "\n")
    (out / "queries.txt").write_text("\n".join(l for l in cams if number(l) % 2 == 1) + "\n")
    return {
        "dir": out,
        "map_poses": out / "map_poses.txt",
        "queries": out / "queries.txt",
        "gt": temple_dir / "poses_cam_from_world.txt",
        "cameras": temple_dir / "cameras.txt",
        "images": temple_dir / "images",
    }


@pytest.fixture
def temple_runs(temple_split, tmp_path):
    """The temple's map views as two recording runs: even views 2-22 and 24-46 (poses files)."""
    lines = temple_split["map_poses"].read_text().splitlines()
    run1, run2 = tmp_path / "run1.txt", tmp_path / "run2.txt"
    run1.write_text("\n".join(ln for ln in lines if int(ln[7:11]) <= 23) + "\n")
    run2.write_text("\n".join(ln for ln in lines if int(ln[7:11]) > 23) + "\n")
    return run1, run2


@pytest.fixture(scope="session")
def temple_map(temple_split):
    """The temple map, built once per session with ``global-loc index`` (default preset)."""
    from global_loc.cli.main import main

    path = temple_split["dir"] / "temple.glmap"
    rc = main(["-q", "index", "--images", str(temple_split["images"]), "--poses",
               str(temple_split["map_poses"]), "--cameras", str(temple_split["cameras"]),
               "--out", str(path)])
    assert rc == 0
    return path


WORLD_FORMATS = [("mcap", False), ("sqlite3", False), ("ros1", False), ("mcap", True)]


@pytest.fixture(scope="session")
def mini_world(data_dir, tmp_path_factory):
    """A small synthetic world (320x240, short runs) in every bag format, for fast tests."""
    from global_loc.synthetic.world import WorldConfig, generate_world

    config = WorldConfig(image_size=(320, 240), focal=210.0, speed=1.0, query_duration_s=6.0,
                         query_camera_rate_hz=5.0)
    out = tmp_path_factory.mktemp("mini_world")
    return generate_world(out, config, texture_dir=data_dir, formats=WORLD_FORMATS)


@pytest.fixture(scope="session")
def robot_world(data_dir, tmp_path_factory):
    """The default synthetic world of `make demo`, in every bag format (slow)."""
    from global_loc.synthetic.world import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("robot_world")
    return generate_world(out, WorldConfig(), texture_dir=data_dir, formats=WORLD_FORMATS)


@pytest.fixture(scope="session")
def two_camera_world(data_dir, tmp_path_factory):
    """The robot world with a front and a back camera (320x240, short runs), indexed from both
    topics with ``global-loc index``."""
    from global_loc.cli.main import main
    from global_loc.synthetic.world import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("two_cameras")
    config = WorldConfig(image_size=(320, 240), focal=210.0, speed=1.0, query_duration_s=8.0,
                         query_camera_rate_hz=5.0, cameras=("front", "back"))
    world = generate_world(out, config, texture_dir=data_dir)[("mcap", False)]
    assert world.query.image_topics == ["/camera/image_raw", "/back_camera/image_raw"]
    path = out / "rig.glmap"
    args = ["-q", "index", "--bag", str(world.mapping.bag), "--out", str(path)]
    for topic in world.mapping.image_topics:
        args += ["--image-topic", topic]
    assert main(args) == 0
    return world, path


@pytest.fixture(scope="session")
def weights_dir():
    return _require(WEIGHTS)


# --- ROS 2 ------------------------------------------------------------------------------------
def _ros2_missing() -> str | None:
    """Why the ROS 2 runtime cannot be used here, or None."""
    import importlib.util
    import shutil

    for module in ("rclpy", "tf2_ros", "message_filters", "launch_ros"):
        if importlib.util.find_spec(module) is None:
            return f"the ROS 2 Python package '{module}' is not installed"
    venv_bin = Path(sys.executable).parent
    for tool in ("ros2", "colcon"):
        if not (venv_bin / tool).exists() and shutil.which(tool) is None:
            return f"the '{tool}' command is not installed"
    return None


@pytest.fixture(scope="session")
def ros2_domain():
    """The ROS 2 runtime (``make test`` installs it), on a domain of this test session's own,
    discovery kept on this host. Skips with the reason where the runtime is absent, fails in CI.

    Returns the domain id (also set in ``os.environ`` for this process and its children).
    """
    why = _ros2_missing()
    if why is not None:
        msg = f"{why} (make test installs the ROS 2 runtime into .venv)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run the ROS tests")
        pytest.skip(msg)
    domain = 1 + os.getpid() % 100
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return domain


@pytest.fixture(scope="session")
def rclpy_context(ros2_domain):
    """rclpy initialised once for the session (nodes of the tests share it)."""
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture(scope="session")
def colcon_env(ros2_domain, tmp_path_factory):
    """The package built with ``colcon build`` in a temporary workspace; the environment of a
    shell that sourced its ``install/setup.bash``, on the session's ROS domain."""
    from global_loc.ros.workspace import colcon_build, ros_env

    return ros_env(colcon_build(tmp_path_factory.mktemp("colcon_ws")), ros2_domain)


def _index_mapping_run(world, folder) -> Path:
    """``global-loc index --bag`` of a world's mapping run into ``folder/map.glmap``."""
    from global_loc.cli.main import main

    path = folder / "map.glmap"
    assert main(["-q", "index", "--bag", str(world.mapping.bag), "--image-topic", world.mapping.image_topic,
                 "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def robot_world_map(robot_world, tmp_path_factory):
    """The map of the robot world's mapping run (MCAP), made with ``global-loc index --bag``."""
    return _index_mapping_run(robot_world[("mcap", False)], tmp_path_factory.mktemp("robot_world_map"))


@pytest.fixture(scope="session")
def mini_world_map(mini_world, tmp_path_factory):
    """The map of the mini world's mapping run (MCAP)."""
    return _index_mapping_run(mini_world[("mcap", False)], tmp_path_factory.mktemp("mini_world_map"))
