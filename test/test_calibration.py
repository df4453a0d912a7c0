"""The map builder's principal-point check (global_loc.map.calibration) on scenes with exact
answers: a camera file whose principal point is off is found out by keyframes rolled against
each other, corrected in the map, and applied to queries with that camera."""
import numpy as np

from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.localizer import Localizer
from global_loc.map.builder import MapBuilder
from global_loc.map.calibration import estimate_principal_point_offsets, shifted_camera
from global_loc.types import Keyframe

from synthetic import FeatureScene, synthetic_conf

GIVEN = Camera("PINHOLE", 640, 480, [400.0, 400.0, 319.5, 239.5])
OFFSET = np.array([0.6, -0.4])  # what the camera file gets wrong
TRUE = shifted_camera(GIVEN, OFFSET)
ROLL = Pose(np.diag([-1.0, -1.0, 1.0]), np.zeros(3))  # 180 degrees about the optical axis


def _rolled_keyframes(scene, n=16):
    """A ring of keyframes, every other one rolled by 180 degrees (as the temple ring's second
    half), observed through the TRUE camera and labelled with the GIVEN one."""
    out = []
    for i in range(n):
        pose = scene.pose_on_ring(2 * np.pi * i / n)
        if i % 2:
            pose = ROLL * pose
        feats, _ = scene.observe(pose, pixel_noise=0.3, camera=TRUE)
        out.append((Keyframe(f"kf{i:03d}", GIVEN, pose, stamp=float(i)), feats))
    return out


def test_shifted_camera_moves_only_the_principal_point():
    cam = Camera("OPENCV", 640, 480, [500, 501, 320, 240, 0.1, -0.01, 0.001, 0.002])
    out = shifted_camera(cam, [0.5, -0.25])
    np.testing.assert_allclose(out.params, [500, 501, 320.5, 239.75, 0.1, -0.01, 0.001, 0.002])
    simple = shifted_camera(Camera("SIMPLE_RADIAL", 640, 480, [500, 320, 240, 0.01]), [1, 2])
    np.testing.assert_allclose(simple.params, [500, 321, 242, 0.01])


def test_the_offset_is_recovered_from_rolled_keyframes_and_used_for_queries():
    scene = FeatureScene(num_points=4000, seed=3)
    builder = MapBuilder(synthetic_conf())
    for kf, feats in _rolled_keyframes(scene):
        builder.add_keyframe(kf, features=feats)
    m = builder.build()
    (rec,) = m.metadata["camera_calibration"]
    np.testing.assert_allclose(rec["delta_px"], OFFSET, atol=0.05)
    assert max(rec["std_px"]) < 0.05 and rec["rmse_after_px"] < rec["rmse_before_px"]
    assert m.cameras == [Camera("PINHOLE", 640, 480, rec["corrected_params"])]
    np.testing.assert_allclose(m.cameras[0].params, shifted_camera(GIVEN, rec["delta_px"]).params, atol=1e-3)
    # a query through the true camera, labelled with the given one, is localized with the
    # corrected camera: as accurate as with the true one
    query = scene.pose_on_ring(0.4, yaw_offset=0.1)
    feats, _ = scene.observe(query, pixel_noise=0.3, camera=TRUE)
    loc = Localizer(m, synthetic_conf())
    assert loc.camera_corrections == {GIVEN: m.cameras[0]}
    res = loc.localize(np.zeros((480, 640), np.uint8), GIVEN, features=feats)
    assert res.success, res.reason
    dt, dr = pose_error(res.cam_from_world, query)
    assert dt < 0.01 and dr < 0.1, (dt, dr)
    off = Localizer(m, synthetic_conf(localization={"use_map_calibration": False}))
    assert off.camera_corrections == {}


def test_no_correction_where_the_camera_is_right_or_the_offset_unobservable():
    scene = FeatureScene(num_points=4000, seed=3)
    builder = MapBuilder(synthetic_conf())
    for kf, feats in scene.keyframes(12, pixel_noise=0.3):  # exact camera, one roll
        builder.add_keyframe(kf, features=feats)
    assert builder.build().metadata["camera_calibration"] == []
    builder = MapBuilder(synthetic_conf(mapping={"refine_principal_point": False}))
    for kf, feats in _rolled_keyframes(scene):
        builder.add_keyframe(kf, features=feats)
    m = builder.build()
    assert m.metadata["camera_calibration"] == [] and m.cameras == [GIVEN]


def test_estimator_standard_deviation_reflects_observability():
    """Keyframes with parallel optical axes (a camera sliding sideways) leave a shift of the
    principal point interchangeable with the points; a ring with rolled keyframes pins it down."""
    scene = FeatureScene(num_points=1500, seed=5)
    base = scene.pose_on_ring(0.0)
    sliding = [Pose(base.R, base.t - np.array([0.12 * i, 0.0, 0.0])) for i in range(8)]  # along camera x
    ring = [ROLL * p if i % 2 else p for i, p in enumerate(scene.pose_on_ring(2 * np.pi * i / 8) for i in range(8))]
    stds = {}
    for label, poses in (("parallel axes", sliding), ("rolled ring", ring)):
        obs_kf, obs_pt, px = [], [], []
        for i, pose in enumerate(poses):
            feats, idx = scene.observe(pose, pixel_noise=0.3, camera=TRUE)
            obs_kf.append(np.full(len(idx), i))
            obs_pt.append(idx)
            px.append(feats.keypoints)
        est = estimate_principal_point_offsets(
            scene.points + np.random.default_rng(0).normal(scale=0.01, size=scene.points.shape),
            np.concatenate(obs_kf), np.concatenate(obs_pt), np.concatenate(px).astype(np.float64),
            [GIVEN], poses, np.zeros(len(poses), int))
        stds[label] = est.std_px.max()
        if label == "rolled ring":
            np.testing.assert_allclose(est.delta_px[0], OFFSET, atol=0.05)
    assert stds["rolled ring"] < 0.05 and stds["parallel axes"] > 5 * stds["rolled ring"], stds
