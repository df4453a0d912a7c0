"""MapBuilder and Localizer on a synthetic scene with exact ground truth."""
import copy

import numpy as np
import pytest

from global_loc.errors import EmptyMapError, ImageReadError, InputError, MapMismatchError
from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.localizer import STAGES, Localizer
from global_loc.map.builder import MapBuilder
from global_loc.types import Keyframe, LocalFeatures, Status
from synthetic import FeatureScene, synthetic_conf


@pytest.fixture(scope="module")
def scene():
    return FeatureScene(num_points=4000, seed=0)


@pytest.fixture(scope="module")
def built(scene):
    builder = MapBuilder(synthetic_conf())
    for kf, feats in scene.keyframes(12):
        assert builder.add_keyframe(kf, features=feats)
    return builder.build()


def test_map_points_match_the_scene(scene, built):
    m = built
    assert m.num_keyframes == 12
    assert m.num_points3D > 1000
    assert m.points_xyz.shape == (m.num_points3D, 3)
    assert m.points_error.max() <= 2.0
    # without keypoint noise, every map point is exactly a scene point
    b = MapBuilder(synthetic_conf())
    for kf, feats in FeatureScene(num_points=4000, seed=0).keyframes(12, pixel_noise=0.0):
        b.add_keyframe(kf, features=feats)
    exact = b.build()
    assert exact.num_points3D > 1000
    d = np.linalg.norm(exact.points_xyz[:, None] - scene.points[None], axis=2).min(axis=1)
    assert d.max() < 1e-4  # keypoints are float32: ~3e-5 px
    lengths = np.bincount(m.obs_point_index, minlength=m.num_points3D)
    assert lengths.min() >= 2
    # covisibility: neighbouring keyframes share points, opposite ones do not
    assert m.num_shared_points(0, 1) > 50
    assert m.num_shared_points(0, 6) == 0
    rows = [3, 0, 1, 6, 11]
    C = m.covisibility(rows)
    assert C.shape == (5, 5) and np.array_equal(C, C.T)
    for a, i in enumerate(rows):
        assert C[a, a] == len(m.points_of(i))
        for b, j in enumerate(rows[a + 1:], a + 1):
            assert C[a, b] == m.num_shared_points(i, j)
    assert m.covisibility([]).shape == (0, 0)
    # a keyframe that observes a point twice counts it once
    twice = copy.deepcopy(m)
    o = twice.obs_offsets[3]
    twice.obs_point_index[o + 1] = twice.obs_point_index[o]
    twice._point_sets = None  # the copy of a cache of the unchanged map
    C = twice.covisibility([3, 2, 4])
    assert C[0, 0] == len(twice.points_of(3)) == len(m.points_of(3)) - 1
    assert C[0, 1] == twice.num_shared_points(3, 2) and C[0, 2] == twice.num_shared_points(3, 4)


def test_localize_a_new_view(scene, built):
    loc = Localizer(built, synthetic_conf())
    pose = scene.pose_on_ring(2 * np.pi * 3.5 / 12)  # between keyframes 3 and 4
    feats, _ = scene.observe(pose)
    res = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
    assert res.status == Status.LOCALIZED, res.reason
    dt, dr = pose_error(res.cam_from_world, pose)
    assert dt < 0.01 and dr < 0.1
    assert res.num_inliers >= 50 and 0 < res.inlier_ratio <= 1
    assert res.covariance.shape == (6, 6)
    assert np.all(np.linalg.eigvalsh(res.covariance) > 0)
    assert set(res.timings) == set(STAGES)
    assert res.keyframes[0] in res.retrieved
    assert len(res.inlier_keypoints) == res.num_inliers


def test_localize_with_a_distorted_camera(scene, built):
    cam = Camera("OPENCV", 640, 480, [380, 385, 322, 238, -0.1, 0.02, 0.001, -0.002])
    loc = Localizer(built, synthetic_conf())
    pose = scene.pose_on_ring(2 * np.pi * 7.3 / 12)
    feats, _ = scene.observe(pose, camera=cam)
    res = loc.localize(np.zeros((480, 640), np.uint8), cam, features=feats)
    assert res.success, res.reason
    dt, dr = pose_error(res.cam_from_world, pose)
    assert dt < 0.01 and dr < 0.1


def test_unrelated_query_is_not_localized(scene, built):
    loc = Localizer(built, synthetic_conf())
    rng = np.random.default_rng(5)
    d = rng.normal(size=(800, 32)).astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    feats = LocalFeatures(rng.uniform(0, 600, (800, 2)), d, np.ones(800), (640, 480))
    res = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
    assert res.status == Status.NOT_LOCALIZED
    assert res.cam_from_world is None and res.covariance is None
    assert "min_inliers" in res.reason or "PnP" in res.reason


def test_query_without_features_says_so(scene, built):
    loc = Localizer(built, synthetic_conf())
    empty = LocalFeatures(np.zeros((0, 2)), np.zeros((0, 32)), np.zeros(0), (640, 480))
    res = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=empty)
    assert res.status == Status.NOT_LOCALIZED and "0 local features" in res.reason


def test_image_size_must_match_camera(scene, built):
    loc = Localizer(built, synthetic_conf())
    with pytest.raises(ImageReadError, match="480x640 but its camera is 640x480"):
        loc.localize(np.zeros((640, 480), np.uint8), scene.camera)


def test_models_must_match_the_map(built):
    with pytest.raises(MapMismatchError, match="built with local features 'synthetic32'"):
        Localizer(built, "sift")
    with pytest.raises(MapMismatchError, match="num_clusters"):
        Localizer(built, synthetic_conf(global_descriptor={"name": "vlad", "num_clusters": 8}))


def test_empty_maps_are_refused(scene):
    with pytest.raises(EmptyMapError, match="no keyframes were added"):
        MapBuilder(synthetic_conf()).build()
    # two keyframes that see nothing in common give a map without points
    b = MapBuilder(synthetic_conf())
    for kf, feats in [scene.keyframes(12)[i] for i in (0, 6)]:
        b.add_keyframe(kf, features=feats)
    m = b.build()
    assert m.num_points3D == 0
    with pytest.raises(EmptyMapError, match="no triangulated 3D points"):
        Localizer(m, synthetic_conf())


def test_keyframe_selection_and_duplicates(scene):
    conf = synthetic_conf(mapping={"keyframe_min_distance_m": 0.5, "keyframe_min_rotation_deg": 20})
    b = MapBuilder(conf)
    p = scene.pose_on_ring(0.0)
    feats, _ = scene.observe(p)
    assert b.add_keyframe(Keyframe("a", scene.camera, p), features=feats)
    near = Pose(p.R, p.t + [0.1, 0, 0])
    assert not b.add_keyframe(Keyframe("b", scene.camera, near), features=feats)
    far = Pose(p.R, p.t + [0.6, 0, 0])
    assert b.add_keyframe(Keyframe("c", scene.camera, far), features=feats)
    turned = scene.pose_on_ring(0.0, yaw_offset=np.radians(30))
    turned = Pose(turned.R, -turned.R @ far.center)
    assert b.add_keyframe(Keyframe("d", scene.camera, turned), features=feats)
    assert b.num_keyframes == 3 and "b" in b.skipped
    with pytest.raises(InputError, match="'a' is used twice"):
        b.add_keyframe(Keyframe("a", scene.camera, far), features=feats)


def test_pca_whitened_global_descriptors_round_trip_through_the_map(scene, tmp_path):
    from global_loc.map.storage import read_map, write_map

    conf = synthetic_conf(global_descriptor={"name": "vlad", "num_clusters": 16, "pca_dims": 8})
    b = MapBuilder(conf)
    for kf, feats in scene.keyframes(12):
        b.add_keyframe(kf, features=feats)
    m = read_map(write_map(b.build(), tmp_path / "pca.glmap"))
    assert m.global_descriptors.shape == (12, 8)
    assert m.global_descriptor["dim"] == 8 and "pca_A" in m.global_state
    loc = Localizer(m, conf)
    assert loc.global_model.dim == 8
    pose = scene.pose_on_ring(2 * np.pi * 5.5 / 12)
    feats, _ = scene.observe(pose)
    res = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
    assert res.success, res.reason
    assert pose_error(res.cam_from_world, pose)[0] < 0.01
    # the top retrieved keyframe is one of the two neighbours of the query
    assert res.retrieved[0] in ("kf005", "kf006")


def test_localizer_limits_blas_threads(built):
    from threadpoolctl import threadpool_info

    from global_loc.runtime.threads import limit_blas_threads

    Localizer(built, synthetic_conf(blas_threads=1))
    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas and all(i["num_threads"] == 1 for i in blas)
    with pytest.raises(ValueError, match="blas_threads"):
        limit_blas_threads(-1)


def test_a_map_from_a_newer_release_with_unknown_preset_options_still_localizes(built, caplog):
    """Options a newer global_loc recorded in the map's preset are left out, with a warning."""
    import copy
    import logging

    from global_loc.localizer import conf_for_map

    newer = copy.copy(built)
    newer.metadata = copy.deepcopy(built.metadata)
    newer.metadata["preset"]["localization"]["option_of_the_future"] = 3
    newer.metadata["preset"]["section_of_the_future"] = {"a": 1}
    with caplog.at_level(logging.WARNING, logger="global_loc.localizer"):
        conf = conf_for_map(newer)
    assert conf.localization.min_inliers == built.metadata["preset"]["localization"]["min_inliers"]
    assert "localization.option_of_the_future, section_of_the_future" in caplog.text


def test_map_point_uncertainty_weighs_the_points_and_widens_the_covariance(scene, built):
    """With ``localization.map_point_uncertainty`` the pose is refined with the points weighed
    by their uncertainty (it stays well within its standard deviations of the unweighted one
    and no further from the truth than 1.5x), and the covariance is PnP's plus the map points'
    share; the noise behind it is the a-posteriori value of the map's residuals (the scene's
    keypoints have 0.3 px noise)."""
    pose = scene.pose_on_ring(2 * np.pi * 5.5 / 12)
    feats, _ = scene.observe(pose)
    out = {}
    for on in (False, True):
        conf = synthetic_conf()
        conf.localization.map_point_uncertainty = on
        res = Localizer(built, conf).localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
        assert res.status == Status.LOCALIZED, res.reason
        out[on] = res
    from global_loc.evaluation import mahalanobis_distance

    assert mahalanobis_distance(out[True].cam_from_world, out[False].cam_from_world, out[False].covariance) < 2.0
    assert pose_error(out[True].cam_from_world, pose)[0] < 1.5 * pose_error(out[False].cam_from_world, pose)[0] + 1e-4
    extra = out[True].covariance - out[False].covariance
    assert np.trace(extra[3:, 3:]) > 0.05 * np.trace(out[False].covariance[3:, 3:])
    assert 0.25 < built.point_noise_px < 0.36
    cov = built.point_covariances(out[True].inlier_point_rows)
    assert cov.shape == (out[True].num_inliers, 3, 3) and np.all(np.isfinite(cov))
