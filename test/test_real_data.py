"""The acceptance criteria of the foundation issue, on real photos with real ground truth."""
import json

import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.config import load_preset
from global_loc.geometry.transforms import pose_error
from global_loc.io.colmap import read_colmap_model
from global_loc.io.images import read_image
from global_loc.io.text import read_cameras, read_poses
from global_loc.localizer import Localizer
from global_loc.map.storage import read_map, write_map
from global_loc.pipeline import index_colmap_model, index_image_folder, localize_image_folder
from global_loc.types import Status

pytestmark = pytest.mark.slow


def test_temple_ring_even_map_odd_queries(temple_map, temple_split, tmp_path, capsys):
    """All 24 odd views within (1 cm, 1 deg); median <= 1 mm and <= 0.1 deg; and, from the
    same log, place recognition alone (`evaluate --retrieval`): recall@1 and @5."""
    res = tmp_path / "results.txt"
    assert main(["-q", "localize", "--map", str(temple_map), "--images", str(temple_split["images"]),
                 "--queries", str(temple_split["queries"]), "--out", str(res)]) == 0
    assert main(["-q", "evaluate", "--results", str(res), "--gt", str(temple_split["gt"]),
                 "--thresholds", "0.01,1", "0.25,2", "--json", str(tmp_path / "eval.json")]) == 0
    print(capsys.readouterr().out)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["num_queries"] == 24
    assert report["recall"]["0.01m,1.0deg"] == 1.0
    assert report["median_position_error_m"] <= 1e-3
    assert report["median_rotation_error_deg"] <= 0.1
    log = json.loads((tmp_path / "results_log.json").read_text())
    assert all(q["timings_ms"]["total"] > 0 for q in log["queries"])
    # place recognition alone, from the same log: each odd view's positives are its nearest even
    # neighbours on the ring (1 to 3 of them within 0.25 m and 15 deg)
    assert main(["-q", "evaluate", "--retrieval", str(tmp_path / "results_log.json"), "--gt", str(temple_split["gt"]),
                 "--map", str(temple_map), "--positive", "0.25,15", "--json", str(tmp_path / "recall.json"),
                 "--plot", str(tmp_path / "recall.png")]) == 0
    recall = json.loads((tmp_path / "recall.json").read_text())
    print(capsys.readouterr().out)
    assert recall["num_queries"] == 24 and recall["num_with_positives"] == 24
    assert 1 <= min(recall["num_positives"].values()) and max(recall["num_positives"].values()) <= 3
    assert recall["recall"]["@1"] >= 0.95 and recall["recall"]["@5"] == 1.0  # measured: 100 % at 1
    assert recall["recall"]["@20"] is None  # 10 retrieved of 23 keyframes
    assert (tmp_path / "recall.png").stat().st_size > 1000


def test_temple_float16_map_loses_nothing_measurable(temple_map, temple_split, tmp_path):
    """The float16 descriptors of the default map give the poses of a float32 map."""
    m16 = read_map(temple_map)
    p32 = write_map(m16, tmp_path / "f32.glmap", descriptor_dtype="float32")
    assert p32.stat().st_size > 1.5 * temple_map.stat().st_size
    queries = dict(list(read_cameras(temple_split["queries"]).items())[:8])
    runs = [localize_image_folder(Localizer(read_map(p)), temple_split["images"], queries).localized
            for p in (temple_map, p32)]
    assert runs[0].keys() == runs[1].keys() == queries.keys()
    for n in queries:
        dt, dr = pose_error(runs[0][n], runs[1][n])
        assert dt < 1e-4 and dr < 0.01


def test_dino_never_reports_a_wrong_pose(dino_dir):
    """Untextured: any query reported as localized must be within (5 cm, 5 deg)."""
    poses = read_poses(dino_dir / "poses_cam_from_world.txt")
    cams = read_cameras(dino_dir / "cameras.txt")
    number = {n: int(n[4:8]) for n in poses}
    mapping = {n: p for n, p in poses.items() if number[n] % 2 == 0}
    queries = {n: c for n, c in cams.items() if number[n] % 2 == 1}
    conf = load_preset()
    m = index_image_folder(dino_dir / "images", mapping, cams, conf)
    run = localize_image_folder(Localizer(m, conf), dino_dir / "images", queries)
    assert len(run.outcomes) == 24
    wrong = []
    for o in run.outcomes:
        if o.result.status == Status.LOCALIZED:
            dt, dr = pose_error(o.result.cam_from_world, poses[o.name])
            if dt > 0.05 or dr > 5:
                wrong.append((o.name, dt, dr))
        else:
            assert o.result.cam_from_world is None and o.result.reason
    print(f"dino: {len(run.localized)} of 24 localized, all within (5 cm, 5 deg)")
    assert not wrong


def _scene_extent(xyz):
    lo, hi = np.percentile(xyz, 1, axis=0), np.percentile(xyz, 99, axis=0)
    return float(np.linalg.norm(hi - lo))


def test_maupertuis_colmap_import_keeps_poses_camera_points(maupertuis_dir, tmp_path):
    model = read_colmap_model(maupertuis_dir / "reconstruction")
    m = index_colmap_model(maupertuis_dir / "reconstruction", maupertuis_dir / "images", load_preset())
    path = write_map(m, tmp_path / "maup.glmap")
    m = read_map(path)
    assert m.names == [k.name for k in model.keyframes] and m.num_keyframes == 4
    assert list(m.keyframe_ids) == model.image_ids
    for i, kf in enumerate(model.keyframes):
        assert np.allclose(m.cam_from_world(i).matrix(), kf.cam_from_world.matrix(), atol=1e-12)
        assert m.camera(i) == kf.camera
    assert m.cameras == [model.keyframes[0].camera]
    assert m.cameras[0].model == "SIMPLE_PINHOLE" and m.cameras[0].width == 1919
    # every registered COLMAP point is kept with its id and position
    n = len(model.points.ids)
    assert n == 1039
    assert np.array_equal(m.point_ids[:n], model.points.ids)
    assert np.array_equal(m.points_xyz[:n], model.points.xyz)
    # the COLMAP points that took an extracted keypoint project onto it
    obs_of_colmap = m.obs_point_index < n
    assert obs_of_colmap.sum() > 100
    for i in range(m.num_keyframes):
        rows = np.arange(m.obs_offsets[i], m.obs_offsets[i + 1])
        rows = rows[m.obs_point_index[rows] < n]
        proj = m.camera(i).project(m.cam_from_world(i).transform(m.points_xyz[m.obs_point_index[rows]]))
        err = np.linalg.norm(proj - m.obs_keypoints[rows], axis=1)
        assert np.median(err) < 2.0


def test_maupertuis_leave_one_out(maupertuis_dir):
    """Each image against a map of the other three: within 2% / 2 deg or not localized,
    never off by more than 5% / 5 deg."""
    model = read_colmap_model(maupertuis_dir / "reconstruction")
    extent = _scene_extent(model.points.xyz)
    conf = load_preset()
    landed = 0
    for kf in model.keyframes:
        m = index_colmap_model(maupertuis_dir / "reconstruction", maupertuis_dir / "images", conf,
                               exclude=[kf.name])
        assert m.num_keyframes == 3
        res = Localizer(m, conf).localize(read_image(maupertuis_dir / "images" / kf.name), kf.camera)
        if res.status != Status.LOCALIZED:
            print(f"{kf.name}: not localized ({res.reason})")
            continue
        dt, dr = pose_error(res.cam_from_world, kf.cam_from_world)
        print(f"{kf.name}: {dt:.3f} m ({100 * dt / extent:.2f}% of {extent:.1f} m), {dr:.2f} deg, "
              f"{res.num_inliers} inliers")
        assert dt <= 0.05 * extent and dr <= 5.0, "a confident wrong pose"
        assert dt <= 0.02 * extent and dr <= 2.0
        landed += 1
    print(f"maupertuis: {landed} of 4 land")
    assert landed >= 2


def test_temple_featuremetric_refinement_and_covariance_consistency(temple_map, temple_split, tmp_path):
    """`--refine featuremetric` on the temple (default preset; the map's principal point is
    corrected by the builder; PnP weighs the points by their uncertainty): 24/24 within
    (1 cm, 1 deg), a median below PnP's (the pose before refinement, from the log) and within
    issue 9's 0.2 mm / 0.02 deg (measured: 0.193 mm / 0.0193 deg against PnP's 0.206 /
    0.0209); the published covariances put at least 90 % of the errors inside the 2-sigma
    bound and none beyond 5 sigma (measured: 96 %, 2.3 sigma)."""
    from global_loc.evaluation import SIGMA_LEVELS, consistency, mahalanobis_distance
    from global_loc.geometry.transforms import Pose

    res = tmp_path / "refined.txt"
    assert main(["-q", "localize", "--map", str(temple_map), "--images", str(temple_split["images"]),
                 "--queries", str(temple_split["queries"]), "--out", str(res), "--refine", "featuremetric"]) == 0
    gt = read_poses(temple_split["gt"])
    log = json.loads((tmp_path / "refined_log.json").read_text())["queries"]
    assert len(log) == 24 and all(q["status"] == "localized" for q in log)
    before, after, dist = [], [], []
    for q in log:
        pose = Pose.from_qt(q["q_wxyz"], q["t"])
        r = q["refinement"]
        before.append(pose_error(Pose.from_qt(r["q_wxyz_before"], r["t_before"]), gt[q["name"]]))
        after.append(pose_error(pose, gt[q["name"]]))
        dist.append(mahalanobis_distance(pose, gt[q["name"]], np.array(q["covariance"])))
    before, after = np.array(before), np.array(after)
    assert np.all((after[:, 0] <= 0.01) & (after[:, 1] <= 1.0))
    assert np.median(after[:, 0]) < np.median(before[:, 0])
    assert np.median(after[:, 0]) <= 2.0e-4 and np.median(after[:, 1]) <= 0.02
    c = consistency(dist)
    assert c["within"][SIGMA_LEVELS[1]] >= 0.9 and c["max_sigmas"] <= 5.0, c
