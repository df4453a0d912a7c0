"""Bags: reading every format, poses from tf or a pose topic, errors, and the real T265 bag."""
import json

import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.config import load_preset
from global_loc.errors import EmptyMapError, InputError
from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.io.bags import BagReader, BagWriter, inspect_bag
from global_loc.io.text import read_tum
from global_loc.pipeline import index_bag
from global_loc.ros import conversions as conv
from global_loc.synthetic.world import IMAGE_TOPIC

T265 = "t265_ros1_bag/trimmed_locoffice.bag"


def frames_of(world, n=None):
    with BagReader(world.mapping.bag, world.mapping.image_topic) as r:
        out = []
        for f in r.frames():
            out.append((f.name, f.stamp_ns, f.camera, f.map_from_cam, f.image()))
            if n and len(out) >= n:
                break
        return out


def test_every_format_gives_the_same_frames(mini_world):
    ref = frames_of(mini_world[("mcap", False)], 40)
    for key in [("sqlite3", False), ("ros1", False)]:
        other = frames_of(mini_world[key], 40)
        assert [o[:2] for o in other] == [r[:2] for r in ref], key
        for (_, _, cam_a, pose_a, img_a), (_, _, cam_b, pose_b, img_b) in zip(ref, other):
            assert cam_a == cam_b
            assert np.allclose(pose_a.matrix(), pose_b.matrix(), atol=1e-12)
            assert np.array_equal(img_a, img_b)
    jpeg = frames_of(mini_world[("mcap", True)], 40)
    assert [j[1] for j in jpeg] == [r[1] for r in ref]
    assert np.mean([np.abs(j[4].astype(int) - r[4]).mean() for j, r in zip(jpeg, ref)]) < 4.0


def test_keyframe_poses_from_tf_and_from_the_pose_topic_match_ground_truth(mini_world):
    world = mini_world[("mcap", False)]
    gt = {round(t * 1e3): p for t, p in read_tum(world.mapping.ground_truth_tum)}
    with BagReader(world.mapping.bag, IMAGE_TOPIC) as tf_reader, \
            BagReader(world.mapping.bag, IMAGE_TOPIC, pose_topic="/ground_truth/odom") as topic_reader:
        assert topic_reader.body_frame == "base_link"
        for a, b in zip(tf_reader.frames(), topic_reader.frames()):
            truth = gt[round(a.stamp * 1e3)]
            for f in (a, b):  # map -> odom -> base_link -> camera_optical, and the pose topic
                dt, dr = pose_error(f.map_from_cam.inverse(), truth.inverse())
                assert dt < 5e-3 and dr < 0.2, (f.name, dt, dr)  # tf: 10 Hz map -> odom, interpolated


def test_inspect_lists_topics_types_counts_frames_and_tf(mini_world):
    info = inspect_bag(mini_world[("ros1", False)].mapping.bag)
    assert info.format == "ros1"
    topics = {t.name: t for t in info.topics}
    assert topics[IMAGE_TOPIC].msgtype == "sensor_msgs/msg/Image"
    assert topics[IMAGE_TOPIC].count == mini_world[("ros1", False)].mapping.frames
    assert topics["/ground_truth/odom"].frames == ["map", "child: base_link"]
    assert ("base_link", "camera_optical", True, 1) in info.tf_edges
    assert info.duration > 10
    text = info.format_text()
    assert "odom -> base_link" in text and "sensor_msgs/msg/CameraInfo" in text


def test_missing_topic_lists_the_bag_topics(mini_world):
    with pytest.raises(InputError, match=r"no image topic '/cam/nope'.*/camera/image_raw \(sensor_msgs/msg/Image\)"):
        BagReader(mini_world[("mcap", False)].mapping.bag, "/cam/nope")
    with pytest.raises(InputError, match="not in the map frame 'world'"):
        BagReader(mini_world[("mcap", False)].mapping.bag, IMAGE_TOPIC, map_frame="world",
                  pose_topic="/ground_truth/odom")
    with pytest.raises(InputError, match="not sensor_msgs/Image"):
        BagReader(mini_world[("mcap", False)].mapping.bag, "/ground_truth/odom")


def _small_bag(path, fmt, n=6, tf_from=2, corrupt=()):
    """A hand-written bag: n images (noise) with camera_info; odom -> camera only from frame
    ``tf_from`` on; frames in ``corrupt`` carry broken JPEG data."""
    rng = np.random.default_rng(0)
    cam = Camera("PINHOLE", 160, 120, [100, 100, 80, 60])
    with BagWriter(path, fmt) as bag:
        T = bag.types
        for k in range(n):
            ns = 1_000_000_000 + k * 100_000_000
            if k >= tf_from:
                tf = conv.make_transform_stamped(T, "map", "cam", ns, Pose(np.eye(3), [0.1 * k, 0, 0]))
                bag.write("/tf", "tf2_msgs/msg/TFMessage", ns, conv.make_tf_message(T, [tf]))
            img = (rng.uniform(0, 255, (120, 160)).astype(np.uint8))
            msg = conv.make_compressed_image(T, img, "cam", ns, "png")
            if k in corrupt:
                msg.data = msg.data[:40]
            bag.write("/cam/image/compressed", "sensor_msgs/msg/CompressedImage", ns, msg)
            bag.write("/cam/camera_info", "sensor_msgs/msg/CameraInfo", ns, conv.make_camera_info(T, cam, "cam", ns))
    return cam


@pytest.mark.parametrize("fmt", ["mcap", "sqlite3", "ros1"])
def test_frames_without_pose_and_corrupt_frames_are_skipped_and_counted(tmp_path, fmt):
    path = tmp_path / ("small.bag" if fmt == "ros1" else "small")
    _small_bag(path, fmt, n=8, tf_from=2, corrupt=(5,))
    with BagReader(path, "/cam/image/compressed") as r:
        frames = list(r.frames())
    assert len(frames) == 8
    assert [f.map_from_cam is None for f in frames] == [True, True] + [False] * 6
    assert "no transform map -> cam" in frames[0].reason or "span" in frames[0].reason
    conf = load_preset("sift", ["global_descriptor.num_clusters=8"])
    conf.mapping.keyframe_min_distance_m = 0.0
    m = index_bag(path, "/cam/image/compressed", conf)
    src = m.metadata["source"]
    assert (src["frames"], src["without_pose"], src["undecodable"]) == (8, 2, 1)
    assert m.num_keyframes == 5
    assert any("cannot be decoded" in v for v in m.metadata["skipped"].values())


def test_no_frame_with_a_pose_is_an_error(tmp_path):
    path = tmp_path / "nopose"
    _small_bag(path, "mcap", n=3, tf_from=99)
    with pytest.raises(EmptyMapError, match="none of the 3 frames offered could be indexed: 3 have no pose"):
        index_bag(path, "/cam/image/compressed", load_preset())


def test_t265_fisheye_images_are_read(data_dir):
    bag = data_dir / T265
    cam = Camera("OPENCV_FISHEYE", 848, 800, [285.7, 285.9, 424.3, 400.1, -0.006, 0.04, -0.037, 0.006])
    with BagReader(bag, "/camera/fisheye1/image_raw", camera=cam) as r:
        frames = list(r.frames())
        images = [f.image() for f in frames]
    assert len(frames) == 3
    assert all(im.shape == (800, 848) and im.dtype == np.uint8 for im in images)
    assert frames[0].frame_id == "camera_fisheye1_optical_frame"
    assert all(im.std() > 10 for im in images)  # real pictures, not blank buffers
    info = {t.name: t for t in inspect_bag(bag).topics}
    assert info["/camera/fisheye1/image_raw"].count == 3


def test_t265_inspect_command(data_dir, capsys):
    assert main(["inspect", "--bag", str(data_dir / T265)]) == 0
    out = capsys.readouterr().out
    for text in ("(ros1)", "/camera/fisheye1/image_raw", "sensor_msgs/msg/Image", "nav_msgs/msg/Odometry",
                 "camera_fisheye1_optical_frame", "child: camera_pose_frame", "0.090 s", "tf tree: none"):
        assert text in out, text
    assert "/camera/odom/sample" in out and " 19 " in out


def test_t265_index_without_cameras_says_what_is_missing(data_dir, tmp_path, capsys):
    rc = main(["-q", "index", "--bag", str(data_dir / T265), "--image-topic", "/camera/fisheye1/image_raw",
               "--pose-topic", "/camera/odom/sample", "--map-frame", "camera_odom_frame",
               "--out", str(tmp_path / "t265.glmap")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no camera information for '/camera/fisheye1/image_raw'" in err
    assert "no sensor_msgs/CameraInfo topic" in err and "--cameras" in err and "OPENCV_FISHEYE" in err
    assert len(err.strip().splitlines()) == 1


def test_t265_with_cameras_needs_the_extrinsics(data_dir, tmp_path, capsys):
    """The bag has no tf: with --cameras the next missing piece, the camera extrinsics, is named."""
    cams = tmp_path / "t265.txt"
    cams.write_text("/camera/fisheye1/image_raw OPENCV_FISHEYE 848 800 285.7 285.9 424.3 400.1 "
                    "-0.006 0.04 -0.037 0.006\n")
    rc = main(["-q", "index", "--bag", str(data_dir / T265), "--image-topic", "/camera/fisheye1/image_raw",
               "--cameras", str(cams), "--pose-topic", "/camera/odom/sample", "--map-frame",
               "camera_odom_frame", "--out", str(tmp_path / "t265.glmap")])
    err = capsys.readouterr().err
    assert rc == 2 and "have no pose" in err and "camera_pose_frame -> camera_fisheye1_optical_frame" in err


def test_localize_bag_writes_tum_log_and_node_outputs(mini_world, tmp_path, capsys):
    world = mini_world[("mcap", False)]
    mp, tum, out_bag = tmp_path / "m.glmap", tmp_path / "q.tum", tmp_path / "out"
    assert main(["-q", "index", "--bag", str(world.mapping.bag), "--image-topic", IMAGE_TOPIC, "--out", str(mp)]) == 0
    assert main(["-q", "localize", "--map", str(mp), "--bag", str(world.query.bag), "--image-topic", IMAGE_TOPIC,
                 "--out", str(tum), "--out-bag", str(out_bag)]) == 0
    log = json.loads((tmp_path / "q_log.json").read_text())
    assert len(log["queries"]) == world.query.frames
    est = read_tum(tum)
    assert len(est) == sum(q["status"] == "localized" for q in log["queries"]) >= 0.9 * world.query.frames
    info = {t.name: t for t in inspect_bag(out_bag).topics}
    assert info["/global_loc/pose"].msgtype == "geometry_msgs/msg/PoseWithCovarianceStamped"
    assert info["/global_loc/pose"].frames == ["map"]
    assert info["/tf"].count == len(est)
    assert [e[:2] for e in inspect_bag(out_bag).tf_edges] == [("map", "odom")]
    # tracking by default, a global query per frame with --tracking off; each entry says its mode
    assert {q["mode"] for q in log["queries"] if q["status"] == "localized"} == {"global", "tracking", "flow"}
    assert "tracked" in capsys.readouterr().out
    assert main(["-q", "localize", "--map", str(mp), "--bag", str(world.query.bag), "--image-topic", IMAGE_TOPIC,
                 "--out", str(tmp_path / "off.tum"), "--every", "3", "--tracking", "off"]) == 0
    off = json.loads((tmp_path / "off_log.json").read_text())["queries"]
    assert off and all(q["mode"] == "global" and "tracking" not in q for q in off)


def test_incremental_indexer_autosaves_so_nothing_is_lost(mini_world, tmp_path):
    """What the map indexer node does: frames offered one by one, the map written every N
    keyframes and on request; a map file on disk always holds what was indexed up to then."""
    from global_loc.map.incremental import IncrementalIndexer, Offer
    from global_loc.map.storage import read_map

    world = mini_world[("mcap", False)]
    conf = load_preset()
    conf.mapping.keyframe_min_distance_m, conf.mapping.keyframe_min_rotation_deg = 0.5, 20.0
    path = tmp_path / "live.glmap"
    idx = IncrementalIndexer(conf, path, autosave_every=10)
    outcomes = []
    with BagReader(world.mapping.bag, IMAGE_TOPIC) as r:
        for k, f in enumerate(r.frames()):
            outcomes.append(idx.offer(f.name, f.stamp, f.camera, f.map_from_cam, f.image, f.reason))
            if outcomes.count(Offer.ADDED) == 10 and outcomes[-1] == Offer.ADDED:
                assert read_map(path).num_keyframes == 10  # autosaved, before any request
            if k == 120:
                break
    added = outcomes.count(Offer.ADDED)
    assert 10 < added < 121 and Offer.NOT_SELECTED in outcomes
    m = idx.save()
    saved = read_map(path)
    assert saved.num_keyframes == m.num_keyframes == added
    assert saved.metadata["source"]["frames"] == 121
    assert saved.metadata["source"]["not_selected"] == 121 - added


def test_index_bag_set_wins_over_a_flags_default_and_an_explicit_flag_over_set(mini_world, tmp_path):
    """``--set mapping.keyframe_min_distance_m`` is not undone by --min-distance's default; an
    explicit --min-distance wins over --set. The map records the selection it used."""
    from global_loc.map.storage import read_map

    world = mini_world[("mcap", False)]
    counts = {}
    for name, extra in (("default", []), ("set", ["--set", "mapping.keyframe_min_distance_m=1.0"]),
                        ("flag", ["--set", "mapping.keyframe_min_distance_m=1.0", "--min-distance", "0.5"])):
        out = tmp_path / f"{name}.glmap"
        assert main(["-q", "index", "--bag", str(world.mapping.bag), "--image-topic", IMAGE_TOPIC, "--out", str(out),
                     "--min-rotation", "90", *extra]) == 0
        m = read_map(out)
        counts[name] = (m.metadata["preset"]["mapping"]["keyframe_min_distance_m"], m.num_keyframes)
    assert [counts[k][0] for k in ("default", "set", "flag")] == [0.2, 1.0, 0.5]
    assert counts["default"][1] > counts["flag"][1] > counts["set"][1] > 0


def test_t265_bag_of_one_keyframe_makes_no_map_and_says_what_to_record(data_dir, tmp_path, capfd):
    """3 frames over 0.09 s: one keyframe, no 3D point. No map is written (exit 2), the error
    says what to record; the few descriptors for VLAD are one warning line, not faiss's raw one."""
    cams = tmp_path / "t265.txt"
    cams.write_text("/camera/fisheye1/image_raw OPENCV_FISHEYE 848 800 285.7 285.9 424.3 400.1 "
                    "-0.006 0.04 -0.037 0.006\n")
    out = tmp_path / "t265.glmap"
    rc = main(["-q", "index", "--bag", str(data_dir / T265), "--image-topic", "/camera/fisheye1/image_raw",
               "--cameras", str(cams), "--pose-topic", "/camera/odom/sample", "--map-frame", "camera_odom_frame",
               "--camera-frame", "camera_pose_frame", "--out", str(out)])
    err = capfd.readouterr().err  # the file descriptor: faiss prints from C++
    assert rc == 2 and not out.exists()
    assert "the map would hold no 3D point (1 keyframe(s)" in err and "Record keyframes that see the same scene" in err
    assert "please provide at least" not in err
