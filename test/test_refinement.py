"""Feature-metric refinement: a rendered textured plane with exact poses, and the map format.

The scene: a plane 2 m in front of the cameras carrying a smooth random texture, rendered by a
homography (OpenCV ``warpPerspective``). Points on the plane have exact reference features
(sampled in a reference view at their exact projections), so the refined pose must land on the
true one.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.config import RefinementConf, from_dict, load_preset
from global_loc.errors import ConfigError, MapMismatchError
from global_loc.geometry.camera import Camera
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.localizer import Localizer
from global_loc.map.builder import MapBuilder
from global_loc.map.storage import read_map, write_map
from global_loc.refinement import create_dense_features, sample_bilinear, sample_pyramid
from global_loc.refinement.featuremetric import FeatureMetricRefiner
from global_loc.refinement.reference import robust_mean
from global_loc.types import Keyframe

from synthetic import look_at

CAM = Camera("PINHOLE", 640, 480, [500.0, 500.0, 319.5, 239.5])
PLANE_Z = 2.0
HALF = 2.0  # the plane spans [-HALF, HALF]^2 metres
TEX = 1024


def _texture(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = np.zeros((TEX, TEX), np.float32)
    for size, weight in ((8, 1.0), (32, 0.7), (128, 0.4)):
        noise = rng.normal(size=(size, size)).astype(np.float32)
        tex += weight * cv2.resize(noise, (TEX, TEX), interpolation=cv2.INTER_CUBIC)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return (tex * 200 + 28).astype(np.uint8)


def _render(tex: np.ndarray, pose: Pose, camera: Camera = CAM) -> np.ndarray:
    """The plane z = PLANE_Z (texture pixel (u, v) at x = -HALF + (u + 0.5) * 2 HALF / TEX)."""
    s = 2 * HALF / TEX
    corners_tex = np.array([[0, 0], [TEX - 1, 0], [TEX - 1, TEX - 1], [0, TEX - 1]], np.float64)
    corners_world = np.column_stack([-HALF + (corners_tex + 0.5) * s, np.full(4, PLANE_Z)])
    corners_img = camera.project(pose.transform(corners_world))
    H = cv2.getPerspectiveTransform(corners_tex.astype(np.float32), corners_img.astype(np.float32))
    return cv2.warpPerspective(tex, H, (camera.width, camera.height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)


def _points(n=400, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-0.9, 0.9, (n, 2))
    return np.column_stack([xy, np.full(n, PLANE_Z)])


def _perturb(pose: Pose, rot_deg: float, trans_m: float, rng) -> Pose:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    R = cv2.Rodrigues(axis * np.radians(rot_deg))[0]
    d = rng.normal(size=3)
    return Pose(R @ pose.R, pose.t + d / np.linalg.norm(d) * trans_m)


@pytest.fixture(scope="module")
def plane_scene():
    tex = _texture()
    dense = create_dense_features({"name": "gradients"})
    ref_pose = look_at([0.1, -0.05, 0.0], [0.0, 0.0, PLANE_Z])
    true = look_at([-0.05, 0.03, 0.05], [0.02, 0.01, PLANE_Z])
    X = _points()
    reference = sample_pyramid(dense.extract(_render(tex, ref_pose)), CAM.project(ref_pose.transform(X)))
    query = _render(tex, true)
    return {"tex": tex, "dense": dense, "true": true, "X": X, "reference": reference, "query": query,
            "levels": dense.extract(query), "keypoints": CAM.project(true.transform(X))}


def _refiner(**kw):
    return FeatureMetricRefiner(from_dict(RefinementConf, dict(method="featuremetric", **kw)))


def test_bilinear_sampling_and_its_gradient_are_exact_on_a_linear_map():
    h, w = 12, 16
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fmap = np.stack([2 * x + 3 * y, -x], axis=-1)
    pts = np.array([[3.25, 4.5], [0.0, 0.0], [14.9, 10.9], [15.0, 5.0], [-0.1, 2.0]])
    v, dx, dy, ok = sample_bilinear(fmap, pts, with_gradient=True)
    assert ok.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(v[ok], np.stack([2 * pts[ok, 0] + 3 * pts[ok, 1], -pts[ok, 0]], 1), atol=1e-4)
    np.testing.assert_allclose(dx[ok], [[2, -1]] * 3, atol=1e-5)
    np.testing.assert_allclose(dy[ok], [[3, 0]] * 3, atol=1e-5)


@pytest.mark.parametrize("rot_deg,trans_m", [(0.5, 0.01), (1.0, 0.02), (2.0, 0.04)])
def test_converges_to_the_true_pose_from_a_perturbed_start(plane_scene, rot_deg, trans_m):
    """Basin: starts up to 2 deg and 4 cm off (about 20 px of reprojection shift at f = 500 px)
    converge to within 1 mm and 0.02 deg of the true pose."""
    s = plane_scene
    rng = np.random.default_rng(int(rot_deg * 100))
    for _ in range(3):
        start = _perturb(s["true"], rot_deg, trans_m, rng)
        out = _refiner(max_step_sigma=0, min_inlier_fraction=0, max_rmse_increase_px=1e9).refine(
            s["levels"], CAM, start, s["X"], s["reference"])
        dt, dr = pose_error(out.cam_from_world, s["true"])
        assert out.accepted, out.reason
        assert dt < 1e-3 and dr < 0.02, (dt, dr, out.iterations)
        assert out.cost_after < out.cost_before


def test_refuses_to_move_when_the_features_carry_no_information(plane_scene):
    s = plane_scene
    blank = np.full((CAM.height, CAM.width), 128, np.uint8)
    start = _perturb(s["true"], 0.5, 0.01, np.random.default_rng(0))
    out = _refiner().refine(s["dense"].extract(blank), CAM, start, s["X"], s["reference"], s["keypoints"])
    assert not out.accepted and "no information" in out.reason
    assert out.cam_from_world is start


def test_noisy_starts_are_never_made_worse_by_more_than_their_stated_uncertainty(plane_scene):
    """Starts drawn from a stated covariance (0.3 deg, 1 cm), refined with the true features and
    with references of another texture (wrong map): an accepted refinement is never more than
    one standard deviation (Mahalanobis, under that covariance) worse than its start."""
    s = plane_scene
    sd = np.r_[np.full(3, np.radians(0.3)), np.full(3, 0.01)]
    cov = np.diag(sd**2)
    wrong = sample_pyramid(s["dense"].extract(_render(_texture(seed=5), s["true"])),
                           CAM.project(s["true"].transform(s["X"])))
    rng = np.random.default_rng(3)
    refiner = _refiner()
    worse = []
    for reference in (s["reference"], wrong):
        for _ in range(8):
            delta = rng.normal(size=6) * sd
            start = Pose(cv2.Rodrigues(delta[:3])[0] @ s["true"].R, s["true"].t + delta[3:])
            out = refiner.refine(s["levels"], CAM, start, s["X"], reference, s["keypoints"], cov)
            if not out.accepted:
                assert out.cam_from_world is start
                continue
            def mahalanobis(pose):
                e = np.r_[cv2.Rodrigues(pose.R @ s["true"].R.T)[0].ravel(), pose.t - s["true"].t]
                return float(np.sqrt(e @ np.linalg.solve(cov, e)))
            worse.append(mahalanobis(out.cam_from_world) - mahalanobis(start))
    assert worse and max(worse) <= 1.0, worse


def test_robust_mean_ignores_an_outlier_and_nan_rows():
    samples = np.array([[1.0, 1.0], [1.1, 0.9], [0.9, 1.1], [50.0, -50.0], [np.nan, 0.0], [3.0, 3.0]])
    points = np.array([0, 0, 0, 0, 1, 2])
    ref = robust_mean(samples, points, 4)
    np.testing.assert_allclose(ref[0], [1.0, 1.0], atol=0.2)
    assert np.isnan(ref[1]).all() and np.isnan(ref[3]).all()
    np.testing.assert_allclose(ref[2], [3.0, 3.0])


def test_unknown_refinement_method_is_a_config_error():
    with pytest.raises(ConfigError, match="refinement.method 'pixloc'"):
        load_preset("sift", ["refinement.method=pixloc"])


# --- through the map: MapBuilder, the file, the Localizer, the CLI ----------------------------
@pytest.fixture(scope="module")
def plane_map(tmp_path_factory):
    """A map of the plane from 9 rendered keyframes (default preset) and a rendered query."""
    tex = _texture()
    builder = MapBuilder(load_preset("sift"))
    k = 0
    for x in (-0.15, 0.0, 0.15):
        for y in (-0.1, 0.0, 0.1):
            pose = look_at([x, y, 0.0], [x * 0.3, y * 0.3, PLANE_Z])
            builder.add_keyframe(Keyframe(f"kf{k}.png", CAM, pose), _render(tex, pose))
            k += 1
    path = write_map(builder.build(), tmp_path_factory.mktemp("plane") / "plane.glmap")
    true = look_at([0.07, -0.04, 0.1], [0.03, 0.0, PLANE_Z])
    return path, _render(tex, true), true


def test_map_round_trips_reference_features_and_refinement_helps(plane_map):
    path, query, true = plane_map
    m = read_map(path)
    assert m.dense_features["name"] == "gradients" and m.point_features.shape == (m.num_points3D, 9)
    assert np.isfinite(m.point_features.astype(np.float32)).all(axis=1).mean() > 0.95
    conf = load_preset("sift", ["refinement.method=featuremetric"])
    plain = Localizer(m).localize(query, CAM)
    refined = Localizer(m, conf).localize(query, CAM)
    assert plain.success and refined.success
    assert refined.refinement["accepted"], refined.refinement
    assert refined.timings["refinement"] > 0 and plain.timings["refinement"] == 0
    log = refined.to_log()
    before = Pose.from_qt(log["refinement"]["q_wxyz_before"], log["refinement"]["t_before"])
    assert pose_error(before, plain.cam_from_world)[0] < 1e-9
    e_plain, e_ref = pose_error(plain.cam_from_world, true), pose_error(refined.cam_from_world, true)
    assert e_ref[0] < 2e-3 and e_ref[1] < 0.05, (e_plain, e_ref)
    assert e_ref[0] <= e_plain[0] + 2e-4, (e_plain, e_ref)


def test_a_map_without_reference_features_localizes_but_refuses_refinement_in_one_line(plane_map, tmp_path, capsys):
    path, query, _ = plane_map
    m = read_map(path)
    m.point_features, m.dense_features = None, {}
    old = write_map(m, tmp_path / "old.glmap", _version=1)  # what global_loc wrote before schema 2
    v1 = read_map(old)
    assert v1.point_features is None
    assert Localizer(v1).localize(query, CAM).success
    with pytest.raises(MapMismatchError, match="no reference features .* rebuild it"):
        Localizer(v1, load_preset("sift", ["refinement.method=featuremetric"]))
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "q.png"), query)
    (tmp_path / "q.txt").write_text("q.png PINHOLE 640 480 500 500 319.5 239.5\n")
    rc = main(["-q", "localize", "--map", str(old), "--images", str(images), "--queries", str(tmp_path / "q.txt"),
               "--out", str(tmp_path / "r.txt"), "--refine", "featuremetric"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "rebuild" in err[0]


def test_a_map_of_another_dense_source_configuration_is_refused(plane_map):
    path, _, _ = plane_map
    conf = load_preset("sift", ["refinement.method=featuremetric", "refinement.features.window_sigma=5.0"])
    with pytest.raises(MapMismatchError, match="refinement.features"):
        Localizer(read_map(path), conf)


def test_cli_logs_the_pose_before_and_after(plane_map, tmp_path, capsys):
    path, query, _ = plane_map
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "q.png"), query)
    (tmp_path / "q.txt").write_text("q.png PINHOLE 640 480 500 500 319.5 239.5\n")
    out = tmp_path / "r.txt"
    assert main(["-q", "localize", "--map", str(path), "--images", str(images), "--queries", str(tmp_path / "q.txt"),
                 "--out", str(out), "--refine", "featuremetric"]) == 0
    assert "feature-metric refinement: 1 of 1 poses refined" in capsys.readouterr().out
    entry = json.loads((tmp_path / "r_log.json").read_text())["queries"][0]
    assert entry["refinement"]["accepted"] and len(entry["refinement"]["q_wxyz_before"]) == 4
    assert entry["timings_ms"]["refinement"] > 0
    assert entry["q_wxyz"] != entry["refinement"]["q_wxyz_before"]


# --- learned dense sources (weights from ../shared/weights) ------------------------------------
def test_a_learned_source_reuses_the_extractors_map_without_a_second_forward_pass(weights_dir, temple_dir):
    """DRAN's reuse: the ALIKED source shares the preset's ALIKED extractor, and refining the
    image just described runs no network; its levels are the extractor's map, pooled."""
    pytest.importorskip("torch")
    from global_loc.features import create_extractor
    from global_loc.io.images import read_image

    ext = create_extractor({"name": "aliked", "variant": "aliked-t16"}, device="cpu", models_dir=str(weights_dir))
    dense = create_dense_features({"name": "aliked", "extractor": {"variant": "aliked-t16"}}, device="cpu",
                                  models_dir=str(weights_dir))
    assert dense.share(ext)
    assert not create_dense_features({"name": "aliked", "extractor": {"variant": "aliked-n16"}}).share(ext)
    image = read_image(temple_dir / "images" / "templeR0010.png")
    feats = ext.extract(image)
    calls = []
    runner = ext.runner
    ext.runner = lambda x: calls.append(1) or runner(x)
    levels = dense.extract(image)
    assert not calls, "the source ran the network again"
    assert [lv.channels for lv in levels] == [64, 64] and [lv.scale for lv in levels] == [4.0, 1.0]
    assert levels[1].features.shape == (64, 480, 640)
    # at the keypoints, the fine level is the map the extractor's descriptors come from: unit norm
    at = sample_pyramid(levels, feats.keypoints[:50])[:, 64:]
    np.testing.assert_allclose(np.linalg.norm(at, axis=1), 1.0, atol=0.05)
    other = image[::-1].copy()  # another image: the source runs the network itself
    dense.extract(other)
    assert calls


def test_xfeat_map_references_round_trip_and_refine(weights_dir, plane_map, tmp_path):
    """A map whose references are XFeat's 1/8 map (shared with the xfeat preset's extractor):
    stored as 64 values per point, refused for a localizer asking for gradients, and usable."""
    pytest.importorskip("onnxruntime")
    _, query, true = plane_map
    tex = _texture()
    conf = load_preset("xfeat", ["refinement.features.name=xfeat"])
    conf.models_dir = str(weights_dir)
    builder = MapBuilder(conf)
    assert builder.dense.share(builder.extractor) and builder.dense._extractor is builder.extractor
    for k, (x, y) in enumerate([(-0.15, 0), (0, 0), (0.15, 0), (0, -0.1), (0, 0.1)]):
        pose = look_at([x, y, 0.0], [x * 0.3, y * 0.3, PLANE_Z])
        builder.add_keyframe(Keyframe(f"kf{k}.png", CAM, pose), _render(tex, pose))
    m = read_map(write_map(builder.build(), tmp_path / "xfeat.glmap"))
    assert m.dense_features["name"] == "xfeat" and m.point_features.shape[1] == 64
    conf.refinement.method = "featuremetric"
    res = Localizer(m, conf).localize(query, CAM)
    assert res.success and res.refinement, res.reason
    assert res.refinement["num_points"] >= 12
    grad = load_preset("xfeat", ["refinement.method=featuremetric"])
    grad.models_dir = str(weights_dir)
    with pytest.raises(MapMismatchError, match="'xfeat'.*'gradients'"):
        Localizer(m, grad)
