"""Camera rigs: several cameras, one pose (generalized PnP), and the fallback to one camera."""
from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from global_loc.errors import InputError
from global_loc.geometry.camera import Camera
from global_loc.geometry.rig import estimate_rig_absolute_pose
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.types import Status

CAM = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
# a rig (x forward, y left, z up) with a camera looking forward and one looking back
FRONT = Pose(np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float), [0.0, 0.0, -0.2])
BACK = Pose(np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], float), [0.0, 0.0, -0.2])


def _scene(rng, rig_from_world, n=80):
    kps, xyz = [], []
    for cam_from_rig in (FRONT, BACK):
        xc = np.c_[rng.uniform(-2, 2, (n, 2)), rng.uniform(3, 8, n)]
        xyz.append((cam_from_rig * rig_from_world).inverse().transform(xc))
        kps.append(CAM.project(xc))
    return kps, xyz


def test_rig_pose_and_covariance_agree_with_monte_carlo():
    """Two opposite cameras, 0.5 px noise, 20 % outliers (30-60 px off) in the back camera: the rig's pose is
    found with every outlier rejected, and its covariance matches the scatter of 100 solutions
    (variances within a factor 2)."""
    rng = np.random.default_rng(0)
    truth = Pose.from_qt([0.95, 0.05, -0.1, 0.2], [0.5, -1.0, 0.3])
    kps, xyz = _scene(rng, truth)
    outliers = rng.choice(80, 16, replace=False)
    samples, predicted = [], []
    for i in range(100):
        noisy = [k + rng.normal(scale=0.5, size=k.shape) for k in kps]
        angle = rng.uniform(0, 2 * np.pi, 16)  # moved 30-60 px: far beyond the 8 px threshold
        noisy[1][outliers] += rng.uniform(30, 60, (16, 1)) * np.c_[np.cos(angle), np.sin(angle)]
        r = estimate_rig_absolute_pose(noisy, xyz, [CAM, CAM], [FRONT, BACK], 8.0, seed=i)
        assert r.inliers_per_camera(2)[0] == 80 and not r.inliers[80 + outliers].any()
        d = r.rig_from_world * truth.inverse()
        samples.append(np.r_[Rotation.from_matrix(d.R).as_rotvec(), r.rig_from_world.t - truth.t])
        predicted.append(r.covariance)
    ratio = np.diag(np.cov(np.array(samples).T)) / np.diag(np.mean(predicted, axis=0))
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_a_rig_pins_what_one_camera_leaves_loose():
    """One camera with a 65-degree field of view confuses turning with sliding sideways (the
    rotation-translation ambiguity); a camera looking back sees the slide the other way: the
    rig's sideways position (y, z) is known several times better than the front camera's alone,
    by the covariances (1-sigma here: 0.5 mm against 3 mm)."""
    rng = np.random.default_rng(1)
    truth = Pose.from_qt([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    kps, xyz = _scene(rng, truth)
    noisy = [k + rng.normal(scale=0.5, size=k.shape) for k in kps]
    both = estimate_rig_absolute_pose(noisy, xyz, [CAM, CAM], [FRONT, BACK], 8.0, seed=0)
    front = estimate_rig_absolute_pose(noisy[:1], xyz[:1], [CAM], [FRONT], 8.0, seed=0)
    s_both, s_front = (np.sqrt(np.diag(_centre_covariance(r))) for r in (both, front))
    assert np.all(s_both[1:] < 0.3 * s_front[1:]), (s_both, s_front)
    assert pose_error(both.rig_from_world, truth)[0] < 0.005


def _centre_covariance(r):
    from global_loc.geometry.covariance import world_from_cam_covariance

    return world_from_cam_covariance(r.rig_from_world, r.covariance)[:3, :3]


def test_rig_inputs_are_checked():
    with pytest.raises(ValueError, match="different lengths"):
        estimate_rig_absolute_pose([np.zeros((4, 2))], [np.zeros((4, 3))], [CAM, CAM], [FRONT, BACK])
    with pytest.raises(ValueError, match="camera 0: 4 keypoints but 3 points"):
        estimate_rig_absolute_pose([np.zeros((4, 2))], [np.zeros((3, 3))], [CAM], [FRONT])
    assert estimate_rig_absolute_pose([np.zeros((2, 2))], [np.zeros((2, 3))], [CAM], [FRONT]) is None


@pytest.fixture(scope="module")
def temple_rig(temple_map, temple_split):
    """A rig of two temple query views seen from across the ring (11 and 35), their relative
    pose from the ground truth; the rig's frame is view 11's camera."""
    from global_loc.io.images import read_image
    from global_loc.io.text import read_cameras, read_poses
    from global_loc.localizer import Localizer
    from global_loc.map.storage import read_map
    from global_loc.rig_localizer import RigLocalizer

    poses = read_poses(temple_split["gt"])
    cams = read_cameras(temple_split["cameras"])
    names = ["templeR0011.png", "templeR0035.png"]
    rig_from_world = poses[names[0]]
    cams_from_rig = [Pose.identity(), poses[names[1]] * rig_from_world.inverse()]
    images = [read_image(temple_split["images"] / n) for n in names]
    loc = Localizer(read_map(temple_map))
    return RigLocalizer(loc, cams_from_rig), images, [cams[n] for n in names], rig_from_world, loc


@pytest.mark.slow
def test_a_temple_rig_localizes_and_falls_back_to_the_one_camera_that_sees(temple_rig):
    rig, images, cams, truth, loc = temple_rig
    r = rig.localize(images, cams)
    assert r.status == Status.LOCALIZED and r.mode == "rig" and r.rig["fallback"] is None, r.reason
    assert min(r.rig["inliers_per_camera"]) >= 50, r.rig
    dt, dr = pose_error(r.cam_from_world, truth)
    assert dt < 0.01 and dr < 1.0, (dt, dr)
    assert "rig" in r.to_log() and r.timings["total"] > 0
    # the second camera sees nothing (a lens cap; a grey image): the first one's own query answers
    grey = np.full_like(images[1], 128)
    r1 = rig.localize([images[0], grey], cams)
    assert r1.success and r1.rig["fallback"] == 0 and r1.rig["matches_per_camera"][1] == 0
    assert pose_error(r1.cam_from_world, truth)[0] < 0.01
    # only the second camera sees: its pose, carried to the rig's frame (view 11's camera)
    r2 = rig.localize([None, images[1]], cams)
    assert r2.success and r2.rig["fallback"] == 1, r2.reason
    dt, dr = pose_error(r2.cam_from_world, truth)
    assert dt < 0.01 and dr < 1.0, (dt, dr)
    alone = loc.localize(images[1], cams[1])
    assert np.allclose(r2.covariance, _rotated(rig.cams_from_rig[1].inverse(), alone.covariance))
    nothing = rig.localize([grey, grey], cams)
    assert nothing.status == Status.NOT_LOCALIZED and "no camera of the rig" in nothing.reason
    with pytest.raises(InputError, match="2 images and cameras"):
        rig.localize(images[:1], cams[:1])


def _rotated(a_from_b: Pose, cov):
    R = np.kron(np.eye(2), a_from_b.R)
    return R @ cov @ R.T


@pytest.mark.slow
def test_the_two_camera_robot_localizes_as_a_rig_better_than_either_camera(two_camera_world, tmp_path, capsys):
    from global_loc.cli.main import main
    from global_loc.io.bags import BagReader
    from global_loc.io.text import read_tum
    from global_loc.localizer import Localizer
    from global_loc.map.storage import read_map
    from global_loc.pipeline import localize_bag
    from global_loc.rig_localizer import RigLocalizer

    world, path = two_camera_world
    m = read_map(path)
    assert {n.split("_1")[0] for n in m.names} == {"camera_image_raw", "back_camera_image_raw"}
    gt = {round(t, 3): p for t, p in read_tum(world.query.base_ground_truth_tum)}

    def errors(poses):
        return np.array([pose_error(p.inverse(), gt[t].inverse()) for t, p in poses.items()])

    for tracking in ("off", "on"):  # global queries only, then tracked between them
        out = tmp_path / f"rig_{tracking}.tum"
        args = ["-q", "localize", "--map", str(path), "--bag", str(world.query.bag), "--out", str(out),
                "--tracking", tracking]
        for topic in world.query.image_topics:
            args += ["--image-topic", topic]
        assert main(args) == 0
        said = capsys.readouterr().out
        assert "from all cameras' matches" in said
        rig = {round(t, 3): p for t, p in read_tum(out)}
        assert len(rig) == world.query.frames
        e_rig = errors(rig)
        assert np.all(e_rig[:, 0] < 0.25) and np.all(e_rig[:, 1] < 2.0), (tracking, e_rig.max(axis=0))
        tracked = int(re.search(r"(\d+) tracked against the local map", said).group(1))
        assert (tracked == 0) if tracking == "off" else (tracked >= world.query.frames // 2), said
        if tracking == "off":
            e_global = e_rig
    e_rig = e_global
    conf = Localizer(m).conf
    conf.tracking.enabled = False
    for topic in world.query.image_topics:
        run = localize_bag(Localizer(m, conf), world.query.bag, topic)
        alone = errors({round(p.stamp_ns * 1e-9, 3): p.pose for p in run.publications if p.pose is not None})
        assert np.median(e_rig[:, 0]) < np.median(alone[:, 0]), (topic, np.median(e_rig[:, 0]), np.median(alone[:, 0]))
    # a frame where only the back camera sees the map (the front one covered) still localizes
    front, back = (BagReader(world.query.bag, t) for t in world.query.image_topics)
    with front, back:
        f, b = next(iter(front.frames())), next(iter(back.frames()))
        extrinsics = [r.lookup(x.frame_id, "base_link", f.stamp_ns * 1e-9) for r, x in ((front, f), (back, b))]
        covered = np.zeros_like(f.image())
        r = RigLocalizer(Localizer(m, conf), extrinsics).localize([covered, b.image()], [f.camera, b.camera])
    assert r.success and r.rig["fallback"] == 1, r.reason
    dt, dr = pose_error(r.cam_from_world, gt[round(f.stamp_ns * 1e-9, 3)].inverse())
    assert dt < 0.25 and dr < 2.0


@pytest.mark.slow
def test_a_temple_rig_is_tracked_from_its_prior_and_drops_a_wrong_one(temple_rig):
    """Tracking a rig: each camera matched against the local map of its own predicted pose, the
    matches pooled; the pose is solved from them (never the prior) and within the tracking gate.
    A prior 1 m off (a kidnap): tracking fails, the global query answers and rejects the prior."""
    from global_loc.tracking import PosePrior

    rig, images, cams, truth, _ = temple_rig
    nudged = Pose.from_qt([1.0, 0.0, 0.0, 0.0], [0.002, -0.001, 0.001]) * truth
    r = rig.localize(images, cams, prior=PosePrior(nudged, "odometry", 0.1))
    assert r.success and r.mode == "rig_tracking" and r.tracking == "localized", r.reason
    assert min(r.rig["inliers_per_camera"]) >= 30, r.rig
    dt, dr = pose_error(r.cam_from_world, truth)
    assert dt < 0.01 and dr < 1.0 and pose_error(r.cam_from_world, nudged)[0] > 1e-4
    assert r.timings["local_map"] > 0 and "global_descriptor" not in r.timings
    far = Pose.from_qt([1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0]) * truth
    k = rig.localize(images, cams, prior=PosePrior(far, "odometry", 0.1))
    assert k.success and k.mode == "rig" and k.prior_rejected and k.tracking != "localized", (k.mode, k.reason)
    assert pose_error(k.cam_from_world, truth)[0] < 0.01
    # the global query first (the periodic check): a right prior is kept
    g = rig.localize(images, cams, prior=PosePrior(nudged, "odometry", 0.1), global_first=True)
    assert g.success and g.mode == "rig" and not g.prior_rejected


@pytest.mark.slow
def test_the_rig_handler_names_a_blind_camera_and_one_without_extrinsics(two_camera_world):
    """The node's rig logic without ROS: a covered front camera for 25 frames, the rig localized by the
    back camera alone and the front camera's status warning that it sees nothing; then a camera
    frame with no base_link transform: that camera sits out, the problem names it, the other
    camera localizes."""
    from global_loc.io.bags import BagReader
    from global_loc.localizer import Localizer
    from global_loc.map.storage import read_map
    from global_loc.ros.frame_handler import FrameConfig
    from global_loc.ros.rig_handler import BLIND_FRAMES, RigFrameHandler

    world, path = two_camera_world
    m = read_map(path)
    front, back = (BagReader(world.query.bag, t, map_frame=m.frame_id) for t in world.query.image_topics)
    with front, back:
        handler = RigFrameHandler(Localizer(m), FrameConfig(map_frame=m.frame_id), front.lookup, ["/front", "/back"])
        pairs = list(zip(front.frames(), back.frames()))[:BLIND_FRAMES + 5]
        for f, b in pairs:
            covered = np.zeros_like(f.image())
            pub = handler.handle_rig([covered, b.image()], [f.camera, b.camera], f.stamp_ns, [f.frame_id, b.frame_id])
            assert pub.pose is not None and pub.result.rig["matches_per_camera"][0] == 0, pub.result.reason
        blind, seeing = handler.cameras
        assert blind.problem() is not None and "matched no map point" in blind.problem()[1]
        assert seeing.problem() is None and seeing.values()["inliers_median"] > 20
        assert blind.values()["frames"] == len(pairs) and seeing.answered_alone >= 1
        f, b = pairs[-1]
        pub = handler.handle_rig([f.image(), b.image()], [f.camera, b.camera], f.stamp_ns,
                                 ["no_such_frame", b.frame_id])
        problem = handler.diagnostics.problems["tf_rig_camera"].message
        assert "base_link -> no_such_frame" in problem and "sit out" in problem
        assert pub.pose is not None and pub.result.rig["matches_per_camera"][0] == 0
        assert blind.missing == 1
