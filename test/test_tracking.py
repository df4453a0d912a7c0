"""Tracking against the map between global queries (global_loc.tracking).

On the feature-level synthetic scene (exact ground truth): tracking from a good prior,
refusal from a wrong one (a kidnapping) with the global query taking over, and no pose from a
prior alone. On the mini world's query bag (real images, odometry in tf): the frame handler
tracks, re-localizes globally at its period, and recovers after the odometry jumps.
"""
import numpy as np
import pytest

from global_loc.config import TrackingConf
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.io.bags import BagReader
from global_loc.io.text import read_tum
from global_loc.localizer import Localizer, conf_for_map
from global_loc.map.builder import MapBuilder
from global_loc.map.storage import read_map
from global_loc.ros.frame_handler import FrameConfig, FrameHandler
from global_loc.tracking import MotionModel, PosePrior
from global_loc.types import LocalFeatures, Status
from scipy.spatial.transform import Rotation
from synthetic import FeatureScene, synthetic_conf

BLANK = np.zeros((480, 640), np.uint8)


def _moved(pose: Pose, dx=(0.0, 0.0, 0.0), rotvec_deg=(0.0, 0.0, 0.0)) -> Pose:
    """``pose`` with its camera moved by ``dx`` (world, metres) and turned (camera frame)."""
    R = Rotation.from_rotvec(np.radians(rotvec_deg)).as_matrix() @ pose.R
    return Pose(R, -R @ (pose.center + np.asarray(dx)))


# --- the motion model --------------------------------------------------------------------
def test_motion_model_predicts_from_odometry_and_constant_velocity():
    conf = TrackingConf(max_prior_age_s=1.0, max_prior_age_odometry_s=5.0)
    m = MotionModel(conf)
    assert m.predict(0.0) is None  # nothing localized yet

    def cam_at(t):  # the true camera: moving 1 m/s along x, turning 10 deg/s about its y axis
        return _moved(Pose.identity(), (t, 0.0, 0.0), (0.0, 10.0 * t, 0.0))

    m.update(0.0, cam_at(0.0))
    p = m.predict(0.1)
    assert p.source == "last_pose" and np.allclose(p.cam_from_world.matrix(), cam_at(0.0).matrix())
    m.update(0.1, cam_at(0.1))
    p = m.predict(0.3)
    assert p.source == "constant_velocity" and p.age_s == pytest.approx(0.2)
    dt, dr = pose_error(p.cam_from_world, cam_at(0.3))
    assert dt < 0.01 and dr < 0.1, (dt, dr)
    assert m.predict(1.2) is None  # too old without odometry
    assert m.predict(0.05) is None  # before the last pose

    # odometry with its own drifted frame: the prior is exact whatever the drift
    odom_from_world = _moved(Pose.identity(), (5.0, -2.0, 1.0), (0.0, 30.0, 0.0))
    m = MotionModel(conf)
    m.update(1.0, cam_at(1.0), odom_from_world * cam_at(1.0).inverse())
    p = m.predict(4.0, odom_from_world * cam_at(4.0).inverse())
    assert p.source == "odometry" and p.from_odometry
    dt, dr = pose_error(p.cam_from_world, cam_at(4.0))
    assert dt < 1e-9 and dr < 1e-6
    assert m.predict(7.0, odom_from_world * cam_at(7.0).inverse()) is None  # older than 5 s
    m.update(0.5, cam_at(0.5))  # time went backwards (a bag restarted): start again
    assert m.predict(0.6).source == "last_pose"


# --- the tracker on the synthetic scene -----------------------------------------------------
@pytest.fixture(scope="module")
def scene():
    return FeatureScene(num_points=4000, seed=1)


@pytest.fixture(scope="module")
def localizer(scene):
    builder = MapBuilder(synthetic_conf())
    for kf, feats in scene.keyframes(12):
        builder.add_keyframe(kf, features=feats)
    return Localizer(builder.build(), synthetic_conf())


def test_tracks_from_a_prior(scene, localizer):
    truth = scene.pose_on_ring(2 * np.pi * 4.3 / 12)
    feats, _ = scene.observe(truth)
    prior = PosePrior(_moved(truth, (0.03, -0.01, 0.02), (0.5, -0.8, 0.3)), "odometry", 0.1)
    res = localizer.localize(BLANK, scene.camera, features=feats, prior=prior)
    assert res.status == Status.LOCALIZED and res.mode == "tracking", res.reason
    assert res.tracking == "localized"
    dt, dr = pose_error(res.cam_from_world, truth)
    assert dt < 0.01 and dr < 0.1
    assert res.num_inliers >= 50 and res.covariance.shape == (6, 6)
    assert res.retrieved == []  # no global query ran
    assert res.timings["retrieval"] == 0.0 and res.timings["local_map"] > 0.0
    assert res.to_log()["mode"] == "tracking"


def test_a_wrong_prior_fails_and_the_global_query_recovers(scene, localizer):
    """A kidnapping: the prior says the opposite side of the room."""
    truth = scene.pose_on_ring(2 * np.pi * 7.6 / 12)
    feats, _ = scene.observe(truth)
    wrong = PosePrior(scene.pose_on_ring(2 * np.pi * 1.6 / 12), "odometry", 0.1)
    tracked = localizer.tracker.track(feats, scene.camera, wrong)
    assert tracked.status == Status.NOT_LOCALIZED and tracked.cam_from_world is None
    assert tracked.reason.startswith("tracking:")
    res = localizer.localize(BLANK, scene.camera, features=feats, prior=wrong)
    assert res.status == Status.LOCALIZED and res.mode == "global", res.reason
    assert res.tracking.startswith("tracking:")
    dt, dr = pose_error(res.cam_from_world, truth)
    assert dt < 0.01 and dr < 0.1


def test_a_prior_alone_never_makes_a_pose(scene, localizer):
    truth = scene.pose_on_ring(2 * np.pi * 2.2 / 12)
    prior = PosePrior(truth, "odometry", 0.1)  # a perfect prior
    rng = np.random.default_rng(5)
    feats, _ = scene.observe(truth)
    d = rng.normal(size=feats.descriptors.shape).astype(np.float32)  # nothing of the map in the image
    noise = LocalFeatures(feats.keypoints, d / np.linalg.norm(d, axis=1, keepdims=True), feats.scores,
                          feats.image_size)
    empty = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, scene.dim), np.float32), np.zeros(0),
                          feats.image_size)
    for f in (noise, empty):
        res = localizer.localize(BLANK, scene.camera, features=f, prior=prior)
        assert res.status == Status.NOT_LOCALIZED and res.cam_from_world is None, res.reason
        assert res.tracking.startswith("tracking:")
    # a pose farther from its prior than allowed is refused, although PnP found it
    far = PosePrior(_moved(truth, (0.0, 0.0, 0.04), (0.0, 1.0, 0.0)), "odometry", 0.1)
    strict = Localizer(localizer.map, synthetic_conf(tracking={"max_prior_deviation_m": 0.01}))
    res = strict.tracker.track(feats, scene.camera, far)
    assert res.status == Status.NOT_LOCALIZED and "from the odometry prior" in res.reason


def test_global_first_runs_the_global_query(scene, localizer):
    truth = scene.pose_on_ring(2 * np.pi * 9.5 / 12)
    feats, _ = scene.observe(truth)
    res = localizer.localize(BLANK, scene.camera, features=feats, prior=PosePrior(truth, "odometry", 0.1),
                             global_first=True)
    assert res.status == Status.LOCALIZED and res.mode == "global" and res.retrieved
    assert res.tracking == ""  # not needed


# --- the frame handler on real images with odometry ------------------------------------------
def _run(world, map_index, jump_at=None, **tracking):
    """Localize the mini world's query run through a FrameHandler; the odometry jumps by 2 m
    and 60 deg (a kidnapping it does not explain) from frame ``jump_at`` on."""
    conf = conf_for_map(map_index)
    for k, v in tracking.items():
        setattr(conf.tracking, k, v)
    loc = Localizer(map_index, conf)
    jump = _moved(Pose.identity(), (2.0, 0.0, 0.0), (0.0, 0.0, 60.0))
    out = []
    with BagReader(world.query.bag, world.query.image_topic) as reader:
        frames = list(reader.frames())
        t_jump = frames[jump_at].stamp_ns * 1e-9 if jump_at is not None else np.inf

        def lookup(target, source, t):
            pose = reader.lookup(target, source, t)
            return jump * pose if target == "odom" and t >= t_jump else pose

        handler = FrameHandler(loc, FrameConfig(map_frame=map_index.frame_id), lookup)
        for f in frames:
            out.append((f.stamp_ns * 1e-9, handler.handle(f.image(), f.camera, f.stamp_ns, f.frame_id)))
    gt = dict((round(t, 6), p) for t, p in read_tum(world.query.ground_truth_tum))
    errors = [pose_error(p.map_from_cam.inverse(), gt[round(t, 6)].inverse()) if p.localized else None
              for t, p in out]
    return out, errors


@pytest.fixture(scope="module")
def mini(mini_world, mini_world_map):
    return mini_world[("mcap", False)], read_map(mini_world_map)


def test_frame_handler_tracks_and_relocalizes_at_its_period(mini):
    world, map_index = mini
    off, err_off = _run(world, map_index, enabled=False)
    on, err_on = _run(world, map_index, global_period_s=1.0)
    modes = [p.result.mode for _, p in on if p.localized]
    assert len(modes) - modes.count("global") >= len(on) // 2, modes
    assert modes.count("tracking") and modes.count("flow"), modes
    # optical flow re-anchors to the map's descriptors after flow_max_interval_s (or
    # flow_max_frames): at 5 Hz, one flow frame between two anchors
    tc = conf_for_map(map_index).tracking
    frame_dt = np.median(np.diff([t for t, _ in on]))
    flow_runs = "".join("f" if m == "flow" else "." for m in modes).split(".")
    assert max(len(r) for r in flow_runs) == min(tc.flow_max_frames, int(tc.flow_max_interval_s / frame_dt + 1e-6)) == 1
    assert all(p.result.mode == "global" for _, p in off)

    def recall(errs):
        return np.mean([e is not None and e[0] <= 0.25 and e[1] <= 2.0 for e in errs])

    # at 320x240 some frames are near 2 deg in either mode: one frame of slack
    assert recall(err_on) >= recall(err_off) - 1.0 / len(on) and recall(err_off) >= 0.9
    med_on = np.median([e[0] for e in err_on if e is not None])
    med_off = np.median([e[0] for e in err_off if e is not None])
    assert med_on <= 1.5 * med_off + 0.01, (med_on, med_off)
    assert all(e[0] <= 0.5 and e[1] <= 5.0 for e in err_on if e is not None)
    # a global query ran at least once a second of image time
    stamps = [t for t, p in on if p.result.mode == "global" or p.result.retrieved]
    frame_dt = np.median(np.diff([t for t, _ in on]))
    assert np.max(np.diff(stamps)) <= 1.0 + frame_dt + 1e-6


def test_frame_handler_recovers_after_a_kidnapping(mini):
    world, map_index = mini
    jump_at = 12
    out, errors = _run(world, map_index, jump_at=jump_at, global_period_s=100.0)
    # before the jump the handler tracks; at the jump tracking fails and a global query answers
    assert any(p.result.mode in ("tracking", "flow") for _, p in out[:jump_at])
    _, at = out[jump_at]
    assert at.result.tracking.startswith("tracking:"), at.result.tracking
    assert at.localized and at.result.mode == "global"
    # then tracking resumes from the new odometry frame
    assert any(p.result.mode in ("tracking", "flow") for _, p in out[jump_at + 1:])
    # and no pose anywhere is wrong
    assert all(e[0] <= 0.5 and e[1] <= 5.0 for e in errors if e is not None), errors
    assert sum(e is not None for e in errors) >= 0.9 * len(errors)


def test_optical_flow_follows_the_next_frame_and_refuses_a_jump(mini):
    """Flow from one real frame to the next gives a right pose; to a frame seconds later, which
    the prior does not explain (a kidnapping in the images), it gives none, and the local map
    or the global query answers instead."""
    world, map_index = mini
    loc = Localizer(map_index, conf_for_map(map_index))
    gt = dict((round(t, 6), p.inverse()) for t, p in read_tum(world.query.ground_truth_tum))
    with BagReader(world.query.bag, world.query.image_topic) as reader:
        frames = list(reader.frames())
        # 4 -> 5: driving straight (in turns at 5 Hz the image moves by a third of its width,
        # and flow refuses); 19: 3 s later
        f0, f1, far = frames[4], frames[5], frames[4 + len(frames) // 2]
        images = {id(f): f.image() for f in (f0, f1, far)}
    truth = lambda f: gt[round(f.stamp_ns * 1e-9, 6)]  # noqa: E731 - cam_from_world
    r0 = loc.localize(images[id(f0)], f0.camera)
    assert r0.success and r0.mode == "global", r0.reason
    ref = loc.flow.reference(images[id(f0)], r0)
    assert ref is not None and len(ref.keypoints) == r0.num_inliers and ref.frames_since_anchor == 0
    prior = PosePrior(r0.cam_from_world, "last_pose", 0.1)
    res = loc.flow.track(images[id(f1)], f1.camera, prior, ref)
    assert res.success and res.mode == "flow", res.reason
    dt, dr = pose_error(res.cam_from_world, truth(f1))
    assert dt <= 0.25 and dr <= 2.0, (dt, dr)
    assert res.num_inliers >= 0.5 * r0.num_inliers
    assert loc.flow.reference(images[id(f1)], res, ref).frames_since_anchor == 1
    # the jump: few points survive the forward-backward check, and what survives disagrees
    # with the prior
    jumped = loc.flow.track(images[id(far)], far.camera, prior, ref)
    assert not jumped.success and jumped.cam_from_world is None and jumped.reason.startswith("flow:")
    # the Localizer: flow only follows its previous call's frame, and the jump is answered by
    # descriptors
    loc.localize(images[id(f0)], f0.camera)
    res = loc.localize(images[id(far)], far.camera, prior=prior)
    assert res.success and res.mode == "global", res.reason
    dt, dr = pose_error(res.cam_from_world, truth(far))
    assert dt <= 0.25 and dr <= 2.0, (dt, dr)
    failed = loc.localize(np.zeros_like(images[id(f1)]), f1.camera, prior=prior)
    assert not failed.success and loc._flow_ref is None  # nothing to follow after a failure


def test_flow_never_uses_the_grey_of_a_refilled_buffer():
    """A caller that refills one image buffer with each new frame: a reference is always made
    from its own frame's pixels, also after a frame that flow followed but that failed."""
    from global_loc.config import LocalizationConf
    from global_loc.geometry.camera import Camera
    from global_loc.tracking import FlowTracker
    from global_loc.types import LocalizationResult

    flow = FlowTracker(TrackingConf(), LocalizationConf())
    camera = Camera("PINHOLE", 64, 48, np.array([50.0, 50.0, 32.0, 24.0]))
    buf = np.zeros((48, 64), np.uint8)
    done = LocalizationResult(status=Status.LOCALIZED, cam_from_world=Pose.identity(), num_inliers=20,
                              inlier_keypoints=np.full((20, 2), 20.0, np.float32), inlier_points3D=np.ones((20, 3)))
    failed = LocalizationResult(status=Status.NOT_LOCALIZED, reason="no")
    prior = PosePrior(Pose.identity(), "last_pose", 0.1)
    ref = flow.reference(buf, done)
    assert ref.grey.max() == 0
    buf[:] = 100  # frame 2: flow follows it (and fails: a flat image), the frame is not localized
    assert not flow.track(buf, camera, prior, ref).success
    assert flow.reference(buf, failed) is None
    buf[:] = 200  # frame 3, in the same buffer, localized by a global query
    assert flow.reference(buf, done).grey.min() == 200
