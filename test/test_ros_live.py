"""The nodes on a live ROS 2 graph, used as a robot user uses them: the package built with
``colcon build``, started with ``ros2 launch``, fed by ``global-loc replay`` from a bag, watched
by a listener node, stopped with Ctrl-C (SIGINT to the whole process group).

Needs the ROS 2 runtime (``make test`` installs it into .venv); skips with the reason where it
is absent, fails in CI.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from global_loc.cli.main import main as cli
from global_loc.io.text import read_tum
from global_loc.map.storage import read_map

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
GLOBAL_LOC = str(Path(sys.executable).parent / "global-loc")
BOUNDS = (0.25, 2.0)
CLEAN = "process has finished cleanly"


def replay(env, bag, *args, timeout=300):
    """``global-loc replay --bag BAG ARGS...``; returns its stdout (checked)."""
    out = subprocess.run([GLOBAL_LOC, "replay", "--bag", str(bag), *args], env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_clean_exit(launch, rc):
    out = launch.output
    assert rc == 0, out[-3000:]
    assert CLEAN in out and "process has died" not in out and "Traceback" not in out, out[-3000:]


def call_trigger(node, service, timeout=30.0):
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, service)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f"no service {service}"
        future = client.call_async(Trigger.Request())
        wait_until(future.done, timeout, f"the answer of {service}")
        return future.result()
    finally:
        node.destroy_client(client)


@pytest.fixture
def recorder(rclpy_context):
    """A listener node (images, ~/pose, /tf, /diagnostics), spun on a thread of its own."""
    from global_loc.ros.live import Recorder, Spinner

    node = Recorder(use_sim_time=True)
    spinner = Spinner(node)
    yield node
    spinner.stop()
    node.destroy_node()


# --- the localizer on the robot world ------------------------------------------------------------
def test_localize_launch_on_the_robot_world(colcon_env, robot_world, robot_world_map, recorder, capsys):
    """``ros2 launch global_loc localize.launch.py map:=... camera:=/camera use_sim_time:=true``
    while the query run plays at its recorded rate: poses and map -> odom against ground truth,
    diagnostics, the ~/localize service, latency, and a clean exit on Ctrl-C."""
    from global_loc.ros.live import evaluate_live
    from global_loc.ros.workspace import ros2_launch

    world = robot_world[("mcap", False)]
    args = {"map": str(robot_world_map), "camera": "/camera", "use_sim_time": "true"}
    with ros2_launch(colcon_env, "localize.launch.py", args) as launch:
        launch.wait_for(r"active: localizing", 120)
        played = replay(colcon_env, world.query.bag, "--wait-for", "/camera/image_raw:2", "/camera/camera_info")
        time.sleep(1.5)  # the last frame's pose
        recording = recorder.snapshot()
        answer = call_trigger(recorder, "/localizer/localize")
        status = wait_until(lambda: recorder.last_status("localizer"), 10, "/diagnostics")
        rc = launch.stop()
    assert_clean_exit(launch, rc)
    assert "/camera/image_raw: 300" in played
    report = evaluate_live(recording, read_tum(world.query.base_ground_truth_tum), [BOUNDS])
    with capsys.disabled():
        print(f"\nlocalize.launch.py, robot world query run replayed at 10 Hz:\n{report.format()}\n"
              f"  ~/localize: {answer.message}\n  /diagnostics: {status[0]} {status[1]}")
    assert report.frames == 300
    # a third of the frames at least (2 cores, the player and this listener beside the node)...
    assert report.poses >= 0.3 * report.frames
    # ... and every pose right: nothing wrong is published with confidence
    assert report.recall[0] * report.frames >= report.poses - 1
    assert report.map_odom_transforms >= report.poses - 1
    assert report.map_odom_recall[0] * report.frames >= report.poses - 2
    # latency bounded: drop-oldest queue, frames older than max_frame_age (1 s) dropped
    assert len(report.latency) == report.poses and report.latency.max() < 1.5
    assert answer.success and answer.message.startswith("base_link in map: t=["), answer.message
    level, message, values = status
    assert level == "OK" and int(values["localized"]) >= report.poses - 1, status


# --- a camera rig ------------------------------------------------------------------------------------
def test_localize_launch_with_two_cameras(colcon_env, two_camera_world, recorder, capsys):
    """``ros2 launch global_loc localize.launch.py camera:=/camera,/back_camera``: the node
    synchronises both cameras' frames and publishes one base_link pose per rig frame, right
    against ground truth; /diagnostics has a status per camera; when only one camera publishes,
    its status says that no rig frame forms; Ctrl-C exits cleanly."""
    from global_loc.ros.live import evaluate_live
    from global_loc.ros.workspace import ros2_launch

    world, path = two_camera_world
    args = {"map": str(path), "camera": "/camera,/back_camera", "use_sim_time": "true"}
    with ros2_launch(colcon_env, "localize.launch.py", args) as launch:
        launch.wait_for(r"active: localizing", 120)
        assert "a rig of 2 cameras" in launch.output
        played = replay(colcon_env, world.query.bag, "--wait-for", "/camera/image_raw:2", "/camera/camera_info",
                        "/back_camera/image_raw", "/back_camera/camera_info")
        time.sleep(1.5)  # the last frame's pose
        recording = recorder.snapshot()
        front = wait_until(lambda: recorder.last_status("localizer: camera /camera"), 10, "the front camera's status")
        back = wait_until(lambda: recorder.last_status("localizer: camera /back_camera"), 10, "the back camera's status")
        # the back camera stops: the front camera's frames wait for a partner that never comes
        image, info = _frame(world, 5)
        cam = CameraPublisher(recorder)
        cam.wait_matched()
        _send_for(cam, 5.0, image=image, info=info)
        alone = _status_with(recorder, "localizer: camera /camera", "no rig frame forms")
        rc = launch.stop()
    assert_clean_exit(launch, rc)
    assert f"/back_camera/image_raw: {world.query.frames}" in played
    report = evaluate_live(recording, read_tum(world.query.base_ground_truth_tum), [BOUNDS])
    with capsys.disabled():
        print(f"\nlocalize.launch.py camera:=/camera,/back_camera, two-camera world at 5 Hz:\n{report.format()}\n"
              f"  {front}\n  {back}")
    assert report.frames == world.query.frames
    assert report.poses >= 0.5 * report.frames
    assert report.recall[0] * report.frames >= report.poses - 1  # every pose right
    for level, message, values in (front, back):
        assert level == "OK" and int(values["frames"]) >= report.poses - 1, (level, message, values)
        assert float(values["inliers_median"]) >= 20, values
    assert alone[0] == "ERROR" and "/back_camera" in alone[1], alone


# --- Ctrl-C ------------------------------------------------------------------------------------------
def test_ctrl_c_finishes_the_localizer_cleanly_every_time(colcon_env, mini_world, mini_world_map):
    """Ctrl-C in a terminal signals launch and the node at once, then launch forwards another
    SIGINT: 6 times in a row, at random moments while frames are being localized, with one or
    two Ctrl-C, the node finishes cleanly (exit 0) and launch exits 0. (20 in a row:
    ``benchmarks/ctrl_c.py``.)"""
    from global_loc.ros.workspace import LaunchedProcess, ctrl_c_trials

    world = mini_world[("mcap", False)]
    player = LaunchedProcess([GLOBAL_LOC, "replay", "--bag", str(world.query.bag), "--loops", "0"], env=colcon_env)
    try:
        trials = ctrl_c_trials(colcon_env, "localize.launch.py", {"map": str(mini_world_map), "use_sim_time": "true"},
                               6, seed=1)
    finally:
        player.stop()
    assert [t for t in trials if not t["clean"]] == []
    assert {t["signals"] for t in trials} == {1, 2}


# --- the map indexer ---------------------------------------------------------------------------------
def test_index_map_launch_saves_what_it_indexed(colcon_env, mini_world, recorder, tmp_path, capsys):
    """``index_map.launch.py`` while the mapping run plays (3x its rate): autosaves every 15
    keyframes, extending the saved map once it holds 20; ``~/save_map`` writes the map on
    request; a double Ctrl-C during the save at shutdown loses nothing; the map it writes (built,
    then extended save by save) localizes the query run."""
    from global_loc.ros.workspace import ros2_launch

    world = mini_world[("mcap", False)]
    map_path = tmp_path / "live.glmap"
    params = tmp_path / "map_indexer.yaml"
    params.write_text((ROOT / "config" / "map_indexer.yaml").read_text()
                      .replace("autosave_every: 50", "autosave_every: 15")
                      .replace("incremental_save_after: 100", "incremental_save_after: 20"))
    args = {"map": str(map_path), "camera": "/camera", "use_sim_time": "true", "params_file": str(params)}
    with ros2_launch(colcon_env, "index_map.launch.py", args) as launch:
        launch.wait_for(r"indexing /camera/image_raw", 60)
        replay(colcon_env, world.mapping.bag, "--rate", "3", "--wait-for", "/camera/image_raw:2",
               "/camera/camera_info")
        time.sleep(1.0)
        saved = call_trigger(recorder, "/map_indexer/save_map")
        launch.interrupt(times=2, interval=0.3)  # the second one arrives while the map is written
        rc = launch.wait(300)
    assert_clean_exit(launch, rc)
    assert saved.success and "wrote" in saved.message, saved.message
    at_shutdown = launch.wait_for(r"\(at shutdown, (\d+) keyframes\)", 1)
    n = int(at_shutdown.group(1))
    m = read_map(map_path)
    assert m.num_keyframes == n >= 50
    extended = [e for e in m.metadata.get("edits", []) if e["op"] == "update"]
    assert len(extended) >= 2 and sum(e["added_keyframes"] for e in extended) < n  # saves after the first build
    out = tmp_path / "query.tum"
    assert cli(["-q", "localize", "--map", str(map_path), "--bag", str(world.query.bag), "--image-topic",
                world.query.image_topic, "--out", str(out)]) == 0
    from global_loc.evaluation import evaluate_trajectory

    report = evaluate_trajectory(read_tum(out), read_tum(world.query.ground_truth_tum),
                                 stamps=[t for t, _ in read_tum(world.query.ground_truth_tum)], thresholds=[BOUNDS])
    with capsys.disabled():
        print(f"\nindex_map.launch.py on the mini world at 3x: {n} keyframes saved at shutdown; "
              f"its map localizes {100 * report.recall[0]:.0f} % of the query run within {BOUNDS}")
    assert report.recall[0] >= 0.9


# --- bad input on a live graph ------------------------------------------------------------------------
class CameraPublisher:
    """Publishes hand-made camera frames from the test process."""

    def __init__(self, node, qos=None):
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import CameraInfo, Image

        qos = qos or QoSProfile(depth=5)
        self.image = node.create_publisher(Image, "/camera/image_raw", qos)
        self.info = node.create_publisher(CameraInfo, "/camera/camera_info", qos)

    def wait_matched(self, timeout=15.0):
        wait_until(lambda: self.image.get_subscription_count() and self.info.get_subscription_count(), timeout,
                   "the localizer's camera subscriptions")

    def send(self, stamp_ns, image_msg=None, info_msg=None):
        from global_loc.ros import conversions as conv

        for msg, pub in ((image_msg, self.image), (info_msg, self.info)):
            if msg is not None:
                msg.header = conv.make_header(conv.rclpy_types, "camera_optical", stamp_ns)
                pub.publish(msg)


def _frame(world, index, run="query"):
    """Image and camera_info of one frame of a run's bag, as rclpy messages."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    from global_loc.io.bags import open_bag

    reader = open_bag(getattr(world, run).bag)
    try:
        out = {}
        for topic, cls in (("/camera/image_raw", Image), ("/camera/camera_info", CameraInfo)):
            conns = [c for c in reader.connections if c.topic == topic]
            for k, (_, _, raw) in enumerate(reader.messages(connections=conns)):
                if k == index:
                    out[topic] = deserialize_message(bytes(raw), cls)
                    break
        return out["/camera/image_raw"], out["/camera/camera_info"]
    finally:
        reader.close()


def test_bad_input_is_named_in_diagnostics_and_nothing_crashes(colcon_env, mini_world, mini_world_map, recorder):
    """On a live graph: no base -> camera transform, an unknown encoding, an image whose size
    disagrees with camera_info, images without camera_info, a best-effort camera: the node
    keeps running and /diagnostics names each problem."""
    from rclpy.qos import qos_profile_sensor_data

    from global_loc.ros.workspace import ros2_launch

    world = mini_world[("mcap", False)]
    image, info = _frame(world, 10)

    def diagnosis(text, level="ERROR", timeout=15):
        def seen():
            s = recorder.last_status("localizer")
            return s if s and s[0] == level and text in s[1] else None
        try:
            return wait_until(seen, timeout, f"/diagnostics saying {level} '{text}'")
        except AssertionError:
            raise AssertionError(f"last status: {recorder.last_status('localizer')}") from None

    cam = CameraPublisher(recorder)
    args = {"map": str(mini_world_map), "use_sim_time": "false"}
    with ros2_launch(colcon_env, "localize.launch.py", args) as launch:
        launch.wait_for(r"active: localizing", 60)
        cam.wait_matched()
        # 1. a good frame of the map's world, but no tf at all: localized, not published
        poses_before = len(recorder.snapshot().poses)
        for _ in range(5):
            cam.send(time.time_ns(), image, info)
            time.sleep(0.3)
        level, message, _ = diagnosis("no transform base_link -> camera_optical")
        assert "no pose published" in message and len(recorder.snapshot().poses) == poses_before
        assert "base_link -> camera_optical" in launch.output  # and in its log
        # 2. an unknown encoding
        bad = _frame(world, 10)[0]
        bad.encoding = "foo_bar8"
        cam.send(time.time_ns(), bad, info)
        diagnosis("unknown image encoding 'foo_bar8'")
        # 3. an image whose size disagrees with camera_info
        small = _frame(world, 10)[0]
        small.width, small.height, small.step = 160, 120, 480
        small.data = bytes(160 * 120 * 3)
        cam.send(time.time_ns(), small, info)
        diagnosis("the query image is 160x120 but its camera is 320x240")
        # 4. images without camera_info
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:
            cam.send(time.time_ns(), image, None)
            time.sleep(0.1)
        diagnosis("no camera_info on /camera/camera_info")
        # 5. a best-effort camera against the reliable subscription
        be = CameraPublisher(recorder, qos_profile_sensor_data)
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            be.send(time.time_ns(), image, info)
            time.sleep(0.1)
        diagnosis("QoS is incompatible")
        assert launch.proc.poll() is None, "the node must keep running"
        answer = call_trigger(recorder, "/localizer/localize")  # its latest frame is the small one
        assert not answer.success and "the query image is 160x120" in answer.message, answer.message
        rc = launch.stop()
    assert_clean_exit(launch, rc)


@pytest.mark.parametrize("case", ["missing", "truncated", "other_version"])
def test_a_map_that_cannot_load_fails_configure_with_the_reason(case, colcon_env, mini_world_map, recorder, tmp_path):
    """A missing, truncated or newer-version map: configure fails, the log and /diagnostics
    say why, the node keeps running (and answers Ctrl-C cleanly)."""
    from global_loc.ros.workspace import ros2_launch

    path = tmp_path / "map.glmap"
    if case == "truncated":
        data = mini_world_map.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        expected = "truncated"
    elif case == "other_version":
        shutil.copy(mini_world_map, path)
        with open(path, "r+b") as f:
            f.seek(8)
            f.write(np.uint32(7).tobytes())
        expected = "schema version 7"
    else:
        expected = "does not exist"
    with ros2_launch(colcon_env, "localize.launch.py", {"map": str(path)}) as launch:
        m = launch.wait_for(r"cannot configure: (.*)", 60)
        assert expected in m.group(1), m.group(1)

        def seen():
            s = recorder.last_status("localizer")
            return s if s and s[0] == "ERROR" and expected in s[1] else None
        wait_until(seen, 10, "/diagnostics naming the map problem")
        assert launch.proc.poll() is None
        rc = launch.stop()
    assert_clean_exit(launch, rc)


# --- global-loc replay ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["mcap", "sqlite3", "ros1"])
def test_replay_publishes_every_bag_format(fmt, colcon_env, mini_world, rclpy_context):
    """``global-loc replay`` plays ROS 2 (MCAP, sqlite3) and ROS 1 bags: every image with its
    recorded stamp, /tf, /clock; a second lap shifted by the run's length; /tf_static latched
    for a subscriber that comes later."""
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from rosgraph_msgs.msg import Clock
    from tf2_msgs.msg import TFMessage

    from global_loc.io.bags import BagReader
    from global_loc.ros.live import Recorder, Spinner
    from global_loc.ros.workspace import LaunchedProcess

    world = mini_world[(fmt, False)]
    with BagReader(world.query.bag, world.query.image_topic) as reader:
        stamps = [f.stamp_ns for f in reader.frames()]
    node = Recorder(image_topic=world.query.image_topic)
    clock, statics = [], []
    node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec * 10**9 + m.clock.nanosec),
                             QoSProfile(depth=100))
    with Spinner(node):
        player = LaunchedProcess([GLOBAL_LOC, "replay", "--bag", str(world.query.bag), "--rate", "4", "--loops",
                                  "2", "--wait-for", world.query.image_topic], env=colcon_env)
        player.wait_for(r"playing", 30)
        time.sleep(1.0)  # a subscriber that comes late still gets the latched /tf_static
        late = rclpy_context.create_node("late_tf_static_listener")
        late.create_subscription(TFMessage, "/tf_static", statics.append,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        with Spinner(late):
            assert player.wait(60) == 0, player.output
        time.sleep(0.5)
        rec = node.snapshot()
    node.destroy_node()
    late.destroy_node()
    out = player.output
    assert f"{world.query.image_topic}: {2 * len(stamps)}" in out and "2 lap(s)" in out, out
    got = sorted(rec.images)
    period = got[len(stamps)] - got[0]
    assert got[: len(stamps)] == stamps
    assert got[len(stamps):] == [s + period for s in stamps] and period > stamps[-1] - stamps[0]
    assert any(child == "base_link" for _, child, _, _ in rec.tf)
    assert len(clock) > 10 and clock == sorted(clock)  # sim time only moves forward
    assert len(statics) >= 1 and statics[0].transforms[0].child_frame_id == "camera_optical"


# --- a WARN and an ERROR from the same place, in either order ----------------------------------------
def _send_for(cam, seconds, stamp_offset_s=0.0, with_info=True, image=None, info=None, before_send=None):
    """Frames at 10 Hz for ``seconds``, stamped ``stamp_offset_s`` from now."""
    t_end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < t_end:
        stamp = time.time_ns() + int(stamp_offset_s * 1e9)
        if before_send is not None:
            before_send(stamp, k)
        cam.send(stamp, image, info if with_info else None)
        k += 1
        time.sleep(0.1)


def _status_with(recorder, node, text, timeout=15):
    def seen():
        s = recorder.last_status(node)
        return s if s and text in s[1] else None
    try:
        return wait_until(seen, timeout, f"/diagnostics of {node} saying '{text}'")
    except AssertionError:
        raise AssertionError(f"last status: {recorder.last_status(node)}") from None


def test_a_warning_then_an_error_and_the_reverse_never_kill_the_localizer(colcon_env, mini_world, mini_world_map,
                                                                        recorder, capsys):
    """Field case: camera clock skew (frames stamped 100 s before the node clock: the WARN that
    says to pass use_sim_time:=true), then a driver restart without camera_info (ERROR), and the
    reverse order. The node keeps running, logs each problem once when it starts and once when
    it ends, and publishes poses again as soon as the frames are good."""
    from tf2_ros import StaticTransformBroadcaster

    from global_loc.geometry.transforms import Pose
    from global_loc.ros import conversions as conv
    from global_loc.ros.diagnostics import SIM_TIME_HINT
    from global_loc.ros.workspace import ros2_launch

    world = mini_world[("mcap", False)]
    image, info = _frame(world, 10)
    static = StaticTransformBroadcaster(recorder)  # base_link = the camera: poses can be published
    static.sendTransform(conv.make_transform_stamped(conv.rclpy_types, "base_link", "camera_optical", 0,
                                                     Pose.identity()))
    cam = CameraPublisher(recorder)
    with ros2_launch(colcon_env, "localize.launch.py", {"map": str(mini_world_map), "use_sim_time": "false"}) as launch:
        launch.wait_for(r"active: localizing", 60)
        cam.wait_matched()
        poses = []
        for order in (("clock", "camera"), ("camera", "clock")):
            for what in order:
                if what == "clock":
                    _send_for(cam, 2.0, -100.0, image=image, info=info)
                    _status_with(recorder, "localizer", SIM_TIME_HINT)
                else:
                    _send_for(cam, 4.5, with_info=False, image=image, info=info)
                    _status_with(recorder, "localizer", "no camera_info on /camera/camera_info")
            assert launch.proc.poll() is None, launch.output[-3000:]
            before = len(recorder.snapshot().poses)
            _send_for(cam, 3.0, image=image, info=info)  # good frames again
            wait_until(lambda: len(recorder.snapshot().poses) > before, 10, "poses after the problems")
            poses.append(len(recorder.snapshot().poses) - before)
        out = launch.output
        rc = launch.stop()
    assert_clean_exit(launch, rc)
    assert "Logger severity cannot be changed" not in out and "[FATAL]" not in out
    # each problem: one line when it starts and one when it ends, in each of the two rounds
    assert out.count(SIM_TIME_HINT) == 4, out[-4000:]
    assert out.count("but no camera_info on /camera/camera_info") == 4, out[-4000:]
    assert out.count("resolved: camera frames are stamped") == 2
    with capsys.disabled():
        print(f"\nlocalizer after WARN -> ERROR and ERROR -> WARN: alive, {poses} poses in the 3 s of good frames "
              "after each; each problem logged once when it started and once when it ended")


def test_a_warning_then_an_error_and_the_reverse_never_kill_the_map_indexer(colcon_env, mini_world, recorder,
                                                                          tmp_path, capsys):
    """The map indexer: frames without a pose in tf (WARN), then images without camera_info
    (ERROR), and the reverse; it keeps running and indexes keyframes once both are back."""
    from tf2_ros import TransformBroadcaster

    from global_loc.io.text import read_tum
    from global_loc.ros import conversions as conv
    from global_loc.ros.workspace import ros2_launch

    world = mini_world[("mcap", False)]
    truth = read_tum(world.mapping.ground_truth_tum)
    frames = [(_frame(world, k, "mapping"), truth[k][1]) for k in range(0, len(truth), max(1, len(truth) // 12))][:12]
    tf = TransformBroadcaster(recorder)
    cam = CameraPublisher(recorder)
    state = {"next": 0}

    def posed(stamp, _k):  # the next keyframe, its pose on /tf at its stamp
        (image, info), map_from_cam = frames[state["next"] % len(frames)]
        state["next"] += 1
        tf.sendTransform(conv.make_transform_stamped(conv.rclpy_types, "map", "camera_optical", stamp, map_from_cam))
        cam.image.publish(_stamped(image, stamp))
        cam.info.publish(_stamped(info, stamp))

    image, info = frames[0][0]
    args = {"map": str(tmp_path / "live.glmap"), "use_sim_time": "false"}
    with ros2_launch(colcon_env, "index_map.launch.py", args) as launch:
        launch.wait_for(r"indexing /camera/image_raw", 60)
        cam.wait_matched()
        indexed = []
        for order in (("tf", "camera"), ("camera", "tf")):
            for what in order:
                if what == "tf":
                    _send_for(cam, 2.0, image=image, info=info)  # no pose in tf
                    _status_with(recorder, "map_indexer", "frames without a pose")
                else:
                    _send_for(cam, 4.5, with_info=False, image=image, info=info)
                    _status_with(recorder, "map_indexer", "no camera_info on /camera/camera_info")
            assert launch.proc.poll() is None, launch.output[-3000:]
            before = int(recorder.last_status("map_indexer")[2]["keyframes"])
            t_end = time.monotonic() + 4.0
            while time.monotonic() < t_end:
                posed(time.time_ns(), 0)
                time.sleep(0.25)
            wait_until(lambda: int(recorder.last_status("map_indexer")[2]["keyframes"]) > before, 15,
                       "keyframes after the problems")
            indexed.append(int(recorder.last_status("map_indexer")[2]["keyframes"]) - before)
        out = launch.output
        rc = launch.stop()
    assert_clean_exit(launch, rc)
    assert "Logger severity cannot be changed" not in out and "[FATAL]" not in out
    assert out.count("but no camera_info on /camera/camera_info") == 4, out[-4000:]
    with capsys.disabled():
        print(f"\nmap indexer after WARN -> ERROR and ERROR -> WARN: alive, {indexed} keyframes indexed after each")


def _stamped(msg, stamp_ns):
    from global_loc.ros import conversions as conv

    msg.header = conv.make_header(conv.rclpy_types, "camera_optical", stamp_ns)
    return msg


# --- the ros2 command lines the README shows ------------------------------------------------------------
def _readme_ros2_lines():
    from test_docs import shown_commands

    return [c for c in shown_commands(ROOT / "README.md") if c.startswith("ros2 ") and not c.startswith("ros2 launch")
            and not c.startswith("ros2 bag")]


def test_every_ros2_command_the_readme_shows_answers(colcon_env, mini_world_map, tmp_path, capsys):
    """The README's ``ros2 service call``, ``ros2 lifecycle``, ``ros2 param`` lines, run as a
    user runs them, against both nodes started by their launch files."""
    from global_loc.ros.workspace import ros2_launch

    lines = _readme_ros2_lines()
    verbs = {" ".join(c.split()[:2]) for c in lines}
    assert {"ros2 service", "ros2 lifecycle", "ros2 param"} <= verbs, lines
    expected = {  # what each answer must say
        "ros2 service call /map_indexer/save_map std_srvs/srv/Trigger": "response:",
        "ros2 service call /localizer/localize std_srvs/srv/Trigger": "no camera frame received yet",
        "ros2 lifecycle get /localizer": "active [3]",
        "ros2 param list /localizer": "map_path",
        "ros2 param get /localizer map_path": f"String value is: {mini_world_map}",
    }
    assert set(lines) == set(expected), f"README ros2 lines changed: {lines}"
    answers = {}
    with ros2_launch(colcon_env, "localize.launch.py", {"map": str(mini_world_map)}) as loc, \
            ros2_launch(colcon_env, "index_map.launch.py", {"map": str(tmp_path / "new.glmap")}) as idx:
        loc.wait_for(r"active: localizing", 60)
        idx.wait_for(r"indexing /camera/image_raw", 60)
        try:
            for line in lines:
                # discovery is eventually consistent: on a loaded machine the ros2 daemon may not
                # see a node yet ("Node not found"), so each line gets a few tries, as a user would
                # ("Node not found", or once a call that hung on the daemon: then it is restarted)
                for attempt in range(8):
                    try:
                        out = subprocess.run(line.split(), env=colcon_env, capture_output=True, text=True, timeout=20)
                    except subprocess.TimeoutExpired as e:
                        out = subprocess.CompletedProcess(e.cmd, 124, e.stdout or "", "timed out")
                        subprocess.run(["ros2", "daemon", "stop"], env=colcon_env, capture_output=True, timeout=30)
                    if out.returncode == 0 and expected[line] in (out.stdout or ""):
                        break
                    time.sleep(2.0)
                answers[line] = out.stdout.strip() + (f"  ({attempt + 1} tries)" if attempt else "")
                assert out.returncode == 0 and expected[line] in out.stdout, f"`{line}`:\n{out.stdout}\n{out.stderr}"
        finally:
            subprocess.run(["ros2", "daemon", "stop"], env=colcon_env, capture_output=True, timeout=30)
        rc_loc, rc_idx = loc.stop(), idx.stop()
    assert_clean_exit(loc, rc_loc)
    assert_clean_exit(idx, rc_idx)
    with capsys.disabled():
        print("\nthe README's ros2 lines, answered on a live graph:")
        for line, answer in answers.items():
            print(f"  $ {line}\n    " + "\n    ".join(answer.splitlines()[-3:]))
