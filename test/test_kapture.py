"""kapture in and out (global_loc.io.kapture, `index --kapture`, `localize --kapture`), on kapture
data sets that the tests write with the kapture library from ../shared/data."""
import json

import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.errors import InputError
from global_loc.geometry.transforms import Pose, pose_error
from global_loc.io.text import read_cameras, read_poses
from global_loc.map.storage import read_map

kapture = pytest.importorskip("kapture", reason="the kapture extra is not installed (pip install '.[kapture]')")
from kapture.io.csv import kapture_from_dir, kapture_to_dir  # noqa: E402

# cam_from_rig of the test's rig: the camera 10 cm right of and turned 30 deg about y from the rig
CAM_FROM_RIG = Pose.from_qt([np.cos(np.radians(15)), 0.0, np.sin(np.radians(15)), 0.0], [0.1, 0.0, 0.02])


def _kapture_camera(cam):
    return kapture.Camera(cam.model, [cam.width, cam.height, *map(float, cam.params)])


def _write_set(root, images_dir, names, cameras, poses=None, rig=False):
    """A kapture data set of ``names`` (images symlinked into sensors/records_data); with
    ``poses`` (cam_from_world) a trajectory per record, through a rig when ``rig``."""
    sensors, records, traj, rigs = kapture.Sensors(), kapture.RecordsCamera(), kapture.Trajectories(), kapture.Rigs()
    ids = {}
    for ts, n in enumerate(names):
        cam = cameras[n]
        sid = ids.setdefault(cam, f"cam{len(ids)}")
        sensors[sid] = _kapture_camera(cam)
        records[ts, sid] = f"{sid}/{n}"
        data = root / "sensors" / "records_data" / sid
        data.mkdir(parents=True, exist_ok=True)
        (data / n).symlink_to(images_dir / n)
        if poses is not None:
            p = poses[n]
            if rig:  # the trajectory of the rig, rig_from_world = rig_from_cam * cam_from_world
                rigs["rig", sid] = kapture.PoseTransform(CAM_FROM_RIG.q_wxyz.tolist(), CAM_FROM_RIG.t.tolist())
                p = CAM_FROM_RIG.inverse() * p
                traj[ts, "rig"] = kapture.PoseTransform(p.q_wxyz.tolist(), p.t.tolist())
            else:
                traj[ts, sid] = kapture.PoseTransform(p.q_wxyz.tolist(), p.t.tolist())
    kapture_to_dir(str(root), kapture.Kapture(sensors=sensors, records_camera=records,
                                              trajectories=traj if poses is not None else None,
                                              rigs=rigs if rig else None))
    return root


@pytest.mark.slow
def test_temple_through_kapture_matches_the_image_folder_path(temple_split, temple_map, tmp_path):
    """Temple as kapture: a mapping set with its poses given through a rig, and a query set
    without poses. The rig is composed into the keyframes' poses exactly; the map from kapture
    has the keyframes, poses and points of the map from the image folder; the queries
    localized from kapture get the poses the image-folder path gives, written as a kapture
    trajectory that the kapture library reads back, and as the submission-format list."""
    from global_loc.io.kapture import read_kapture

    map_poses = read_poses(temple_split["map_poses"])
    cameras = read_cameras(temple_split["cameras"])
    queries = read_cameras(temple_split["queries"])
    mapping = _write_set(tmp_path / "mapping", temple_split["images"], list(map_poses), cameras, map_poses, rig=True)
    query = _write_set(tmp_path / "query", temple_split["images"], list(queries), cameras)

    ks = read_kapture(mapping)
    assert len(ks.images) == len(map_poses)
    for im in ks.images:
        n = im.name.split("/", 1)[1]
        dt, dr = pose_error(im.cam_from_world, map_poses[n])
        assert dt < 1e-9 and dr < 1e-5  # the rig composed back into the camera's pose
        assert im.camera == cameras[n]

    assert main(["-q", "index", "--kapture", str(mapping), "--out", str(tmp_path / "k.glmap")]) == 0
    mk, mf = read_map(tmp_path / "k.glmap"), read_map(temple_map)
    assert mk.num_keyframes == mf.num_keyframes and abs(mk.num_points3D - mf.num_points3D) <= 0.01 * mf.num_points3D
    for i, name in enumerate(mk.names):
        assert pose_error(mk.cam_from_world(i), map_poses[name.split("/", 1)[1]])[0] < 1e-6

    out_k, out_f = tmp_path / "res_k.txt", tmp_path / "res_f.txt"
    assert main(["-q", "localize", "--map", str(tmp_path / "k.glmap"), "--kapture", str(query), "--out", str(out_k)]) == 0
    assert main(["-q", "localize", "--map", str(tmp_path / "k.glmap"), "--images", str(temple_split["images"]),
                 "--queries", str(temple_split["queries"]), "--out", str(out_f)]) == 0
    via_k = {n.split("/", 1)[1]: p for n, p in read_poses(out_k).items()}
    via_f = read_poses(out_f)
    assert via_k.keys() == via_f.keys() == queries.keys()
    gt = read_poses(temple_split["gt"])
    for n in queries:
        assert pose_error(via_k[n], via_f[n])[0] < 1e-9
        assert pose_error(via_k[n], gt[n])[0] < 0.01
    back = kapture_from_dir(str(tmp_path / "res_k_kapture"))
    assert len(back.trajectories) == len(queries)
    for ts, sid, name in kapture.flatten(back.records_camera, is_sorted=True):
        p = back.trajectories[ts, sid]
        assert pose_error(Pose.from_qt(p.r_raw, p.t_raw), via_k[name.split("/", 1)[1]])[0] < 1e-6
    log = json.loads((tmp_path / "res_k_log.json").read_text())
    assert len(log["queries"]) == 24


def test_maupertuis_cameras_and_poses_through_kapture(maupertuis_dir, tmp_path):
    """The Maupertuis COLMAP model written as kapture: cameras (COLMAP's model and parameters)
    and poses read back equal the model's."""
    from global_loc.io.colmap import read_colmap_model
    from global_loc.io.kapture import read_kapture

    model = read_colmap_model(maupertuis_dir / "reconstruction")
    names = [kf.name for kf in model.keyframes]
    cams = {kf.name: kf.camera for kf in model.keyframes}
    poses = {kf.name: kf.cam_from_world for kf in model.keyframes}
    ks = read_kapture(_write_set(tmp_path / "m", maupertuis_dir / "images", names, cams, poses))
    got = {im.name.split("/", 1)[1]: im for im in ks.images}
    assert got.keys() == set(names)
    for n in names:
        assert got[n].camera == cams[n]
        dt, dr = pose_error(got[n].cam_from_world, poses[n])
        assert dt < 1e-9 and dr < 1e-6
        assert (ks.images_dir / got[n].name).exists()


def test_bad_kapture_sets_say_what_is_wrong(tmp_path, temple_split):
    """No data set, no camera record, an unusable camera model: one clear error each."""
    from global_loc.io.kapture import read_kapture

    with pytest.raises(InputError, match="not a kapture data set"):
        read_kapture(tmp_path / "nothing")
    cams = read_cameras(temple_split["cameras"])
    name = next(iter(cams))
    root = _write_set(tmp_path / "ok", temple_split["images"], [name], cams)
    (root / "sensors" / "records_camera.txt").unlink()
    with pytest.raises(InputError, match="no camera record"):
        read_kapture(root)
    bad = tmp_path / "bad"
    sensors, records = kapture.Sensors(), kapture.RecordsCamera()
    sensors["cam"] = kapture.Camera("UNKNOWN_CAMERA", [640, 480])
    records[0, "cam"] = "cam/x.png"
    kapture_to_dir(str(bad), kapture.Kapture(sensors=sensors, records_camera=records))
    with pytest.raises(InputError, match="UNKNOWN_CAMERA cannot be used"):
        read_kapture(bad)
    assert main(["-q", "index", "--kapture", str(root), "--out", str(tmp_path / "x.glmap")]) != 0  # no pose
