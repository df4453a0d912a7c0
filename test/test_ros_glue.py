"""The ROS 2 layer without ROS: parameters, config files, launch files, package metadata, and
the frame handler that turns a localized frame into REP-105 outputs."""
import ast
import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from global_loc.config import STREAM_KEYFRAME_DEFAULTS, get_key, resolve_conf, to_dict

from global_loc.errors import ConfigError
from global_loc.geometry.tf_tree import TransformBuffer
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.localizer import Localizer
from global_loc.map.builder import MapBuilder
from global_loc.ros import RCLPY_MODULES
from global_loc.ros.diagnostics import Diagnostics, StreamMonitor, diagnostic_level
from global_loc.ros.frame_handler import FrameConfig, FrameHandler
from global_loc.ros.params import LOCALIZER_PARAMS, MAP_INDEXER_PARAMS, NODES, params_yaml, validate
from synthetic import FeatureScene, synthetic_conf

ROOT = Path(__file__).resolve().parents[1]


# --- parameters and config files --------------------------------------------------------------
def test_validate_names_the_problem():
    ok = validate(LOCALIZER_PARAMS, {"map_path": "m.glmap", "rate_hz": 5})
    assert ok["rate_hz"] == 5.0 and ok["odom_frame"] == "odom"
    with pytest.raises(ConfigError, match="unknown parameter 'rate'"):
        validate(LOCALIZER_PARAMS, {"map_path": "m", "rate": 1.0})
    with pytest.raises(ConfigError, match=r"'min_inlier_ratio' = 1.5 is outside \[0.0, 1.0\]"):
        validate(LOCALIZER_PARAMS, {"map_path": "m", "min_inlier_ratio": 1.5})
    with pytest.raises(ConfigError, match="'min_inliers' must be int"):
        validate(LOCALIZER_PARAMS, {"map_path": "m", "min_inliers": 2.5})
    with pytest.raises(ConfigError, match="'device' = 'tpu' must be one of auto, cpu, cuda"):
        validate(LOCALIZER_PARAMS, {"map_path": "m", "device": "tpu"})
    with pytest.raises(ConfigError, match="'map_path' is required"):
        validate(MAP_INDEXER_PARAMS, {})


@pytest.mark.parametrize("node", list(NODES))
def test_config_files_document_every_parameter(node):
    path = ROOT / "config" / f"{node}.yaml"
    text = path.read_text()
    assert text == params_yaml(node), f"{path} is stale: python -m global_loc.ros.params config"
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    # a parameter that sets a preset value is documented, commented out: left unset, the preset
    # (and the map, and preset_overrides) decide
    assert list(values) == [s.name for s in NODES[node] if s.preset_key is None]
    commented = {m.group(1): yaml.safe_load(m.group(2)) for m in re.finditer(r"^    # (\w+): (.*)$", text, re.M)}
    preset_linked = {s.name: s for s in NODES[node] if s.preset_key is not None}
    assert set(commented) == set(preset_linked)
    resolved = to_dict(resolve_conf(None, (), defaults=STREAM_KEYFRAME_DEFAULTS if node == "map_indexer" else None))
    for name, spec in preset_linked.items():  # the value shown is the one the default preset gives
        assert commented[name] == get_key(resolved, spec.preset_key), name
    validate(NODES[node], {**values, **commented, "map_path": "x.glmap"})
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^    \w+:", line):
            assert lines[i - 1].strip().startswith("# "), f"{line.strip()} has no description"


# --- launch files, entry points, package.xml -----------------------------------------------------
def _setup_kwargs():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup":
            return {k.arg: k.value for k in node.keywords}


def entry_points() -> dict[str, str]:
    eps = ast.literal_eval(_setup_kwargs()["entry_points"])["console_scripts"]
    return dict(e.replace(" ", "").split("=") for e in eps)


def test_entry_points_name_existing_functions():
    eps = entry_points()
    assert {"global-loc", "localizer_node", "map_indexer_node"} <= set(eps)
    for target in eps.values():
        module, func = target.split(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        tree = ast.parse(Path(spec.origin).read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target


def _launch(path):
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]

    def kw(call, name):
        for k in call.keywords:
            if k.arg == name:
                return k.value

    nodes = [c for c in calls if getattr(c.func, "id", "") in ("Node", "LifecycleNode")]
    args = [c.args[0].value for c in calls if getattr(c.func, "id", "") == "DeclareLaunchArgument"]
    return tree, nodes, args, kw


@pytest.mark.parametrize("launch,executable,config,kind", [
    ("localize.launch.py", "localizer_node", "localizer.yaml", "Node"),
    ("index_map.launch.py", "map_indexer_node", "map_indexer.yaml", "Node"),
])
def test_launch_files_agree_with_setup_and_config(launch, executable, config, kind):
    path = ROOT / "launch" / launch
    tree, nodes, args, kw = _launch(path)
    assert len(nodes) == 1 and nodes[0].func.id == kind
    node = nodes[0]
    assert kw(node, "package").value == "global_loc"
    assert kw(node, "executable").value == executable and executable in entry_points()
    assert {"map", "params_file", "camera", "use_sim_time"} <= set(args)
    assert config in path.read_text() and (ROOT / "config" / config).exists()
    remap = kw(node, "remappings")
    if isinstance(remap, ast.Name):  # made in the launch function: the non-empty list assigned to it
        remap = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
                     and n.value.elts and any(getattr(x, "id", "") == remap.id for x in n.targets))
    remapped = {e.elts[0].value for e in remap.elts}
    assert {"image", "camera_info", "image/compressed"} <= remapped
    data_files = ast.unparse(_setup_kwargs()["data_files"])
    assert "launch/*.launch.py" in data_files and "config/*.yaml" in data_files


ROSDEP_OF_MODULE = {"tf2_ros": "tf2_ros_py", "yaml": "python3-yaml", "numpy": "python3-numpy",
                    "cv2": "python3-opencv", "psutil": "python3-psutil"}


def test_package_xml_declares_every_ros_import():
    deps = {e.text for e in ET.parse(ROOT / "package.xml").getroot().findall("exec_depend")}
    files = list((ROOT / "global_loc" / "ros").glob("*.py")) + list((ROOT / "launch").glob("*.py"))
    ros_packages = {"rclpy", "tf2_ros", "message_filters", "rcl_interfaces", "sensor_msgs", "geometry_msgs",
                    "nav_msgs", "diagnostic_msgs", "std_srvs", "lifecycle_msgs", "launch", "launch_ros",
                    "ament_index_python", "tf2_msgs", "rosgraph_msgs", "psutil"}
    for f in files:
        for n in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else (
                [n.module] if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top in ros_packages:
                    assert ROSDEP_OF_MODULE.get(top, top) in deps, f"{f.name} imports {top}"


def test_only_node_modules_import_rclpy():
    for f in (ROOT / "global_loc").rglob("*.py"):
        text = f.read_text()
        if re.search(r"^\s*(import|from)\s+rclpy", text, re.M):
            assert f.parent.name == "ros" and f.stem in RCLPY_MODULES, f


# --- the frame handler ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_localizer():
    scene = FeatureScene(num_points=4000, seed=7)
    b = MapBuilder(synthetic_conf())
    for kf, feats in scene.keyframes(12):
        b.add_keyframe(kf, features=feats)
    return scene, Localizer(b.build(), synthetic_conf())


BASE_FROM_CAM = Pose(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [0.2, 0.0, 0.5])


def robot_tf(map_from_base: Pose, stamp: float) -> TransformBuffer:
    """A tf tree with a drifted odometry: map -> odom is unknown to it, odom -> base known."""
    map_from_odom_true = Pose.from_qt([np.cos(0.1), 0, 0, np.sin(0.1)], [0.5, -0.3, 0.0])
    tf = TransformBuffer()
    tf.add("odom", "base_link", stamp, map_from_odom_true.inverse() * map_from_base)
    tf.add("base_link", "camera_optical", 0.0, BASE_FROM_CAM, static=True)
    return tf


def query(scene, angle):
    cam_from_world = scene.pose_on_ring(angle)
    feats, _ = scene.observe(cam_from_world)
    map_from_base = cam_from_world.inverse() * BASE_FROM_CAM.inverse()
    return feats, map_from_base


def test_map_to_odom_follows_rep105(scene_localizer):
    scene, loc = scene_localizer
    feats, map_from_base = query(scene, 2 * np.pi * 4.4 / 12)
    tf = robot_tf(map_from_base, 10.0)
    h = FrameHandler(loc, FrameConfig(), tf.lookup)
    pub = h.handle(np.zeros((480, 640), np.uint8), scene.camera, 10_000_000_000, "camera_optical",
                   features=feats)
    assert pub.localized and pub.pose_frame == "base_link" and pub.map_frame == "map"
    dt, dr = pose_error(pub.pose.inverse(), map_from_base.inverse())
    assert dt < 0.01 and dr < 0.1
    parent, child, map_from_odom = pub.transform
    assert (parent, child) == ("map", "odom")
    # map -> odom composed with the odometry gives the localized base pose
    odom_from_base = tf.lookup("odom", "base_link", 10.0)
    assert np.allclose((map_from_odom * odom_from_base).matrix(), pub.pose.matrix(), atol=1e-9)
    assert pub.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(pub.covariance) > 0)
    # without an odometry frame: map -> base_link
    h2 = FrameHandler(loc, FrameConfig(odom_frame=""), tf.lookup)
    pub2 = h2.handle(np.zeros((480, 640), np.uint8), scene.camera, 10_000_000_000, "camera_optical",
                     features=feats)
    assert pub2.transform[:2] == ("map", "base_link")
    assert np.allclose(pub2.transform[2].matrix(), pub2.pose.matrix())


def test_missing_transforms_are_reported_not_guessed(scene_localizer):
    scene, loc = scene_localizer
    feats, map_from_base = query(scene, 2 * np.pi * 8.6 / 12)
    only_static = TransformBuffer()
    only_static.add("base_link", "camera_optical", 0.0, BASE_FROM_CAM, static=True)
    h = FrameHandler(loc, FrameConfig(), only_static.lookup)
    pub = h.handle(np.zeros((480, 640), np.uint8), scene.camera, 5, "camera_optical", features=feats)
    assert pub.pose is not None and pub.transform is None and "odom -> base_link" in pub.note
    assert diagnostic_level(h.diagnostics)[0] == "WARN" and "is the odometry running" in diagnostic_level(h.diagnostics)[1]
    # without base_link -> camera_optical: no pose at all (never the camera's pose in the
    # robot's place), and the diagnostics say which transform is missing
    h = FrameHandler(loc, FrameConfig(), TransformBuffer().lookup)
    pub = h.handle(np.zeros((480, 640), np.uint8), scene.camera, 5, "camera_optical", features=feats)
    assert pub.localized and pub.map_from_cam is not None
    assert pub.pose is None and pub.transform is None and pub.pose_frame == "base_link"
    level, message = diagnostic_level(h.diagnostics)
    assert level == "ERROR" and "no transform base_link -> camera_optical" in message and "no pose published" in message
    # once the extrinsics arrive the problem clears and the robot's pose is published
    h.lookup = only_static.lookup
    h.frames = FrameConfig(odom_frame="")
    pub = h.handle(np.zeros((480, 640), np.uint8), scene.camera, 5, "camera_optical", features=feats)
    assert pub.pose is not None and diagnostic_level(h.diagnostics)[0] == "OK"
    dt, dr = pose_error(pub.pose.inverse(), map_from_base.inverse())
    assert dt < 0.01 and dr < 0.1


def test_diagnostics_name_every_problem_and_the_worst_sets_the_level():
    d = Diagnostics()
    assert diagnostic_level(d) == ("STALE", "no camera frame received yet")
    assert d.set_problem("tf_odom", "WARN", "no odometry")
    assert not d.set_problem("tf_odom", "WARN", "no odometry")  # the same again: no new log line
    assert d.set_problem("input", "ERROR", "unknown image encoding 'foo'")
    level, message = diagnostic_level(d)
    assert level == "ERROR" and message.startswith("unknown image encoding 'foo'") and "no odometry" in message
    assert d.clear_problem("input") and not d.clear_problem("input")
    assert diagnostic_level(d) == ("WARN", "no odometry")
    with pytest.raises(ValueError):
        d.set_problem("x", "OK", "not a problem")
    d.count("dropped_stale", 3)
    assert d.summary()["dropped_stale"] == 3


def test_a_problem_is_logged_when_it_starts_and_when_it_ends():
    """A condition reported on every frame (its figures changing) is one log line when it starts
    and one when it ends, with the count; a WARN and an ERROR, in either order, each get theirs."""
    lines = []
    d = Diagnostics(log=lambda level, message: lines.append((level, message)))
    for age in (12.3, 12.4, 12.5, 13.0):
        d.set_problem("clock", "WARN", f"camera frames are stamped {age:.1f} s before the node clock")
    assert lines == [("WARN", "camera frames are stamped 12.3 s before the node clock")]
    assert "13.0 s" in diagnostic_level(d)[1]  # /diagnostics carries the latest figures
    d.set_problem("camera", "ERROR", "no camera_info")
    d.set_problem("clock", "ERROR", "camera frames are stamped 14.0 s before the node clock")  # another level
    assert [level for level, _ in lines] == ["WARN", "ERROR", "ERROR"]
    d.set_problem("camera", "ERROR", "unknown image encoding 'foo'")  # another kind under the same key
    assert lines[-1] == ("ERROR", "unknown image encoding 'foo'")
    assert d.clear_problem("clock") is not None
    assert lines[-1][0] == "INFO" and lines[-1][1].startswith("resolved: camera frames are stamped 14.0 s")
    assert "reported 1 time(s)" in lines[-1][1]
    n = len(lines)
    assert d.clear_problem("clock") is None and len(lines) == n  # nothing to resolve: nothing logged


def test_clock_problem_says_to_pass_use_sim_time_for_a_bag():
    from global_loc.ros.diagnostics import SIM_TIME_HINT, clock_problem

    assert clock_problem(0.3, 1.0, False) is None and clock_problem(5.0, 1.0, False) is None  # a slow computer
    assert SIM_TIME_HINT == "pass use_sim_time:=true when playing a bag"
    assert SIM_TIME_HINT in clock_problem(3.2e7, 1.0, False)
    assert "is /clock published" in clock_problem(-1.7e9, 1.0, True)
    assert SIM_TIME_HINT not in clock_problem(3.2e7, 1.0, True)


def test_stream_monitor_waits_a_timeout_after_the_first_image_before_saying_camera_info_is_missing():
    now = [100.0]
    m = StreamMonitor("/camera/image_raw", "/camera/camera_info", timeout=3.0, clock=lambda: now[0])
    m.saw("image")  # the image subscription matched first; camera_info is still being matched
    now[0] = 101.0
    m.saw("image")
    assert m.problem() is None
    m.saw("info")
    m.saw("pair")
    now[0] = 103.5
    m.saw("image")
    assert m.problem() is None
    now[0] = 104.5  # camera_info stopped 3.5 s ago, images go on
    m.saw("image")
    assert "no camera_info" in m.problem()


def test_stream_monitor_says_which_input_is_missing():
    now = [0.0]
    m = StreamMonitor("/camera/image_raw", "/camera/camera_info", timeout=2.0, clock=lambda: now[0])
    assert m.problem() is None  # nothing arrives: a camera that is off is not an error
    for t in np.arange(0.0, 3.0, 0.1):
        now[0] = t
        m.saw("image")
    assert "no camera_info on /camera/camera_info" in m.problem()
    for t in np.arange(3.0, 6.0, 0.1):
        now[0] = t
        m.saw("image")
        m.saw("info")
    assert "never with stamps within sync_slop" in m.problem()
    m.saw("pair")
    assert m.problem() is None
    now[0] = 20.0
    assert m.problem() is None  # the camera stopped


def test_not_localized_publishes_nothing_and_diagnostics_count(scene_localizer):
    scene, loc = scene_localizer
    rng = np.random.default_rng(1)
    d = rng.normal(size=(500, 32)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    from global_loc.types import LocalFeatures

    junk = LocalFeatures(rng.uniform(0, 600, (500, 2)), d, np.ones(500), (640, 480))
    h = FrameHandler(loc, FrameConfig(), TransformBuffer().lookup)
    assert diagnostic_level(h.diagnostics)[0] == "STALE"
    for _ in range(10):
        pub = h.handle(np.zeros((480, 640), np.uint8), scene.camera, 1, "camera_optical", features=junk)
        assert pub.pose is None and pub.transform is None
    level, message = diagnostic_level(h.diagnostics)
    assert level == "WARN" and "not localized for 10 frames" in message
    s = h.diagnostics.summary()
    assert s["frames"] == 10 and s["localized"] == 0 and s["success_ratio"] == 0.0
    assert "latency_total_ms" in s and "latency_matching_ms" in s


def test_rclpy_localizer_node_configures(scene_localizer, tmp_path, rclpy_context):
    """With rclpy: the lifecycle node loads a map in on_configure with the shipped parameter
    file (whose empty list ROS 2 leaves uninitialised), and refuses a missing map, saying why
    in its diagnostics."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from global_loc.map.storage import write_map
    from global_loc.ros.localizer_node import LocalizerNode

    _, loc = scene_localizer
    path = write_map(loc.map, tmp_path / "m.glmap")
    args = ["--ros-args", "--params-file", str(ROOT / "config" / "localizer.yaml")]
    node = LocalizerNode(cli_args=args, parameter_overrides=[Parameter("map_path", value=str(path))])
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.handler is not None and node.handler.frames.map_frame == "map"
        assert node.params["preset_overrides"] == [] and node.params["image_qos"] == "reliable"
        tc = node.handler.localizer.conf.tracking
        assert tc.enabled and tc.global_period_s == 2.0  # the shipped defaults
    finally:
        node.destroy_node()
    off = LocalizerNode(cli_args=args, parameter_overrides=[
        Parameter("map_path", value=str(path)), Parameter("tracking", value=False),
        Parameter("global_period", value=5.0)])
    try:
        assert off.trigger_configure() == TransitionCallbackReturn.SUCCESS
        tc = off.handler.localizer.conf.tracking
        assert not tc.enabled and tc.global_period_s == 5.0
    finally:
        off.destroy_node()
    bad = LocalizerNode(cli_args=args, parameter_overrides=[Parameter("map_path", value=str(tmp_path / "no.glmap"))])
    try:
        assert bad.trigger_configure() == TransitionCallbackReturn.FAILURE
        level, message = diagnostic_level(bad.diagnostics)
        assert level == "ERROR" and "cannot configure" in message and "no.glmap" in message
    finally:
        bad.destroy_node()


def test_drop_oldest_worker_never_blocks_and_keeps_the_newest():
    import threading
    import time

    from global_loc.ros.worker import DropOldestWorker

    gate = threading.Event()
    seen = []

    def handler(item):
        if item == "boom":
            raise RuntimeError("a bug in one frame")
        gate.wait(5)
        seen.append(item)

    w = DropOldestWorker(handler, maxlen=2)
    w.start()
    w.put("boom")  # the worker survives a failing item
    w.put(0)
    time.sleep(0.2)  # the worker now waits inside handler(0)
    t = time.perf_counter()
    for i in range(1, 6):
        w.put(i)  # never blocks, even while the worker is busy
    assert time.perf_counter() - t < 0.05
    assert w.pending == 2 and w.dropped == 3 and w.latest == 5
    gate.set()
    deadline = time.time() + 5
    while w.pending and time.time() < deadline:
        time.sleep(0.01)
    w.stop()
    assert seen == [0, 4, 5]  # the oldest frames were dropped, the newest handled


def test_drop_oldest_worker_drains_on_request():
    import threading

    from global_loc.ros.worker import DropOldestWorker

    gate, seen = threading.Event(), []
    w = DropOldestWorker(lambda item: (gate.wait(5), seen.append(item)), maxlen=10)
    w.start()
    for i in range(5):
        w.put(i)
    threading.Timer(0.2, gate.set).start()
    w.stop(timeout=5, drain=True)  # the map indexer's keyframes waiting at shutdown
    assert seen == [0, 1, 2, 3, 4] and w.dropped == 0


def test_keyframe_selection_runs_ahead_of_extraction():
    """The map indexer selects keyframes against the last *selected* pose, so selection keeps
    up with the camera while extraction (and autosaves) lag behind."""
    from global_loc.map.incremental import IncrementalIndexer, Offer

    conf = synthetic_conf()
    conf.mapping.keyframe_min_distance_m, conf.mapping.keyframe_min_rotation_deg = 0.2, 10.0
    idx = IncrementalIndexer(conf)
    poses = [Pose.from_qt([1, 0, 0, 0], [0.15 * k, 0.0, 0.0]) for k in range(6)]
    got = [idx.select(f"f{k}", p) for k, p in enumerate(poses)]
    assert got == [Offer.ADDED, Offer.NOT_SELECTED, Offer.ADDED, Offer.NOT_SELECTED, Offer.ADDED,
                   Offer.NOT_SELECTED]
    assert idx.select("nopose", None, "no transform map -> camera") == Offer.NO_POSE
    assert idx.counts == {"added": 0, "not_selected": 3, "no_pose": 1, "bad_image": 0}  # added: after extraction


def test_node_parameters_override_only_what_they_set(scene_localizer, tmp_path, rclpy_context):
    """The documented ``preset_overrides: ['localization.num_retrieved=20']`` takes effect, a
    map's recorded min_inliers is kept while the parameter is unset, and a parameter that is set
    wins over both."""
    import copy

    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from global_loc.map.storage import write_map
    from global_loc.ros.localizer_node import LocalizerNode

    _, loc = scene_localizer
    recorded = copy.copy(loc.map)
    recorded.metadata = copy.deepcopy(loc.map.metadata)
    recorded.metadata["preset"]["localization"]["min_inliers"] = 25
    path = write_map(recorded, tmp_path / "m.glmap")
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    preset_overrides: ['localization.num_retrieved=20']\n")
    args = ["--ros-args", "--params-file", str(ROOT / "config" / "localizer.yaml"), "--params-file", str(params)]
    for extra, inliers, retrieved in (([], 25, 20), ([Parameter("min_inliers", value=40),
                                                      Parameter("num_retrieved", value=7)], 40, 7)):
        node = LocalizerNode(cli_args=args, parameter_overrides=[Parameter("map_path", value=str(path)), *extra])
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            lc = node.handler.localizer.conf.localization
            assert (lc.min_inliers, lc.num_retrieved) == (inliers, retrieved)
        finally:
            node.destroy_node()


def test_map_indexer_parameters_override_only_what_they_set(tmp_path, rclpy_context):
    """Keyframe selection of the map indexer: 0.2 m / 10 deg where nothing says otherwise,
    ``preset_overrides`` when given, the parameter when set."""
    from rclpy.parameter import Parameter

    from global_loc.ros.map_indexer_node import MapIndexerNode

    args = ["--ros-args", "--params-file", str(ROOT / "config" / "map_indexer.yaml")]
    cases = (([], (0.2, 10.0)),
             ([Parameter("preset_overrides", value=["mapping.keyframe_min_distance_m=1.5"])], (1.5, 10.0)),
             ([Parameter("preset_overrides", value=["mapping.keyframe_min_distance_m=1.5"]),
               Parameter("keyframe_min_distance", value=0.5), Parameter("keyframe_min_rotation", value=5.0)],
              (0.5, 5.0)))
    for extra, expected in cases:
        node = MapIndexerNode(cli_args=args, parameter_overrides=[
            Parameter("map_path", value=str(tmp_path / "m.glmap")), *extra])
        try:
            m = node.indexer.builder.conf.mapping
            assert (m.keyframe_min_distance_m, m.keyframe_min_rotation_deg) == expected
        finally:
            node.shutdown()
            node.destroy_node()


def test_a_camera_clock_that_goes_back_does_not_stall_the_synchroniser(rclpy_context):
    """message_filters drops the oldest stamp of a full queue: after a camera's clock goes back,
    every new message would be dropped on arrival and no pair made again. The messages stamped
    after the new one are forgotten first, and pairs are made again."""
    from message_filters import ApproximateTimeSynchronizer, SimpleFilter
    from sensor_msgs.msg import CameraInfo, Image

    from global_loc.ros import conversions as conv
    from global_loc.ros.node_utils import forget_newer

    inputs = [SimpleFilter(), SimpleFilter()]
    sync = ApproximateTimeSynchronizer(inputs, queue_size=10, slop=0.01)
    pairs = []
    sync.registerCallback(lambda a, b: pairs.append(conv.stamp_to_ns(a.header.stamp)))

    def send(stamp_ns, with_info=True, forget=True):
        msgs = [Image(), CameraInfo()]
        for m in msgs:
            m.header = conv.make_header(conv.rclpy_types, "cam", stamp_ns)
        for f, m in zip(inputs, msgs if with_info else msgs[:1]):
            if forget:
                forget_newer(sync, stamp_ns)
            f.signalMessage(m)

    now = 1_000 * 10**9
    for k in range(12):  # images without camera_info fill the image queue
        send(now + k * 10**8, with_info=False)
    for forget in (False, True):
        pairs.clear()
        for k in range(5):  # the clock went back 100 s
            send(now - 100 * 10**9 + k * 10**8, forget=forget)
        assert len(pairs) == (5 if forget else 0)
        for k in range(12):
            send(now + k * 10**8, with_info=False, forget=False)


def test_diagnostics_count_frames_refused_as_ambiguous():
    from global_loc.ros.frame_handler import Publication
    from global_loc.types import LocalizationResult, Status

    d = Diagnostics()
    r = LocalizationResult(status=Status.NOT_LOCALIZED, reason="ambiguous: places a and b both fit")
    r.ambiguity = {"places": [["a"], ["b"]]}
    d.update(Publication(1, r))
    d.update(Publication(2, LocalizationResult(status=Status.NOT_LOCALIZED, reason="3 inliers")))
    s = d.summary()
    assert s["ambiguous"] == 1 and s["frames"] == 2 and s["localized"] == 0
