"""``global-loc map prune``: keyframes removed with the points only they observe, the ids of the
rest stable, and the pruned map localizing as the kept keyframes allow."""
import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.errors import EmptyMapError, InputError
from global_loc.geometry.transforms import pose_error
from global_loc.io.text import read_poses
from global_loc.localizer import Localizer
from global_loc.map.builder import MapBuilder
from global_loc.map.edit import prune_keyframes, select_keyframes
from global_loc.map.storage import read_map, write_map
from global_loc.types import Status
from synthetic import FeatureScene, synthetic_conf


@pytest.fixture(scope="module")
def scene():
    return FeatureScene(num_points=3000, seed=11)


@pytest.fixture(scope="module")
def built(scene):
    b = MapBuilder(synthetic_conf())
    for kf, f in scene.keyframes(10):
        b.add_keyframe(kf, features=f)
    return b.build()


def test_prune_keeps_ids_and_removes_only_what_the_pruned_keyframes_alone_observe(built, tmp_path):
    m = built
    remove = np.array([0, 3, 4])
    keep = [i for i in range(m.num_keyframes) if i not in remove]
    pruned, stats = prune_keyframes(m, remove)
    assert pruned.names == [m.names[i] for i in keep]
    assert np.array_equal(pruned.keyframe_ids, m.keyframe_ids[keep])
    assert np.array_equal(pruned.global_descriptors, m.global_descriptors[keep])
    # the points a kept keyframe observes, and only those, with their ids and positions
    seen = np.unique(np.concatenate([m.obs_point_index[m.observation_rows(i)] for i in keep]))
    assert np.array_equal(pruned.point_ids, m.point_ids[seen])
    assert np.array_equal(pruned.points_xyz, m.points_xyz[seen])
    assert stats.removed_points == m.num_points3D - len(seen) > 0
    # each kept keyframe's observations unchanged: keypoints, descriptors and the ids they observe
    for new, old in enumerate(keep):
        a, b = pruned.observation_rows(new), m.observation_rows(old)
        assert np.array_equal(pruned.obs_keypoints[a], m.obs_keypoints[b])
        assert np.array_equal(pruned.obs_descriptors[a], m.obs_descriptors[b])
        assert np.array_equal(pruned.point_ids[pruned.obs_point_index[a]], m.point_ids[m.obs_point_index[b]])
    # the covariances as built, not recomputed from fewer observations
    assert np.allclose(pruned.point_covariances(np.arange(3)), m.point_covariances(seen[:3]))
    again = read_map(write_map(pruned, tmp_path / "p.glmap", descriptor_dtype="float32"))
    assert again.names == pruned.names and np.array_equal(again.point_ids, pruned.point_ids)
    assert again.metadata["edits"][-1]["removed_keyframes"] == [m.names[i] for i in remove]


def test_the_pruned_map_localizes(scene, built):
    pruned, _ = prune_keyframes(built, np.array([0, 1]))
    loc = Localizer(pruned, synthetic_conf())
    for between in (4.5, 6.5, 8.5):  # views between kept keyframes (10 on the ring)
        pose = scene.pose_on_ring(2 * np.pi * between / 10)
        feats, _ = scene.observe(pose)
        r = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
        assert r.status == Status.LOCALIZED, r.reason
        dt, dr = pose_error(r.cam_from_world, pose)
        assert dt < 0.01 and dr < 0.1


def test_selection_errors_name_the_cause(built):
    with pytest.raises(InputError, match="no keyframe called 'nope'"):
        select_keyframes(built, ["nope"])
    with pytest.raises(InputError, match="say which keyframes"):
        select_keyframes(built, [], None)
    with pytest.raises(EmptyMapError, match="remove all 10 keyframes"):
        prune_keyframes(built, np.arange(10))
    stamps = np.asarray(built.stamps)
    assert list(select_keyframes(built, before=float(stamps[3]))) == list(np.flatnonzero(stamps < stamps[3]))


@pytest.mark.slow
def test_temple_half_pruned_localizes_its_half_and_publishes_no_wrong_pose(temple_map, temple_split, tmp_path,
                                                                            capsys):
    """The even views are the map; views 24-46 pruned; the odd views localized: those beside a
    kept view within (1 cm, 1 deg), none beyond (5 cm, 5 deg)."""
    half = tmp_path / "half.glmap"
    names = [f"templeR{i:04d}.png" for i in range(24, 47, 2)]
    assert main(["-q", "map", "prune", str(temple_map), "--keyframes", *names, "--out", str(half)]) == 0
    assert "removed 12 keyframe(s)" in capsys.readouterr().out
    assert main(["map", "info", str(half), "--keyframes"]) == 0
    info = capsys.readouterr().out
    assert "edit: prune" in info and "removed keyframes 12" in info and "11 keyframes" in info
    assert "keyframe templeR0022.png" in info and "keyframe templeR0024.png" not in info
    assert main(["-q", "localize", "--map", str(half), "--images", str(temple_split["images"]), "--queries",
                 str(temple_split["queries"]), "--out", str(tmp_path / "r.txt")]) == 0
    gt, est = read_poses(temple_split["gt"]), read_poses(tmp_path / "r.txt")
    err = {n: pose_error(p, gt[n]) for n, p in est.items()}
    near = [f"templeR{i:04d}.png" for i in range(1, 24, 2)]
    assert all(n in err and err[n][0] < 0.01 and err[n][1] < 1.0 for n in near), err
    assert all(e[0] < 0.05 and e[1] < 5.0 for e in err.values()), err
