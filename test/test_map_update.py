"""``global-loc index --update MAP``: a run added to a built map without a rebuild, against the
map built from both runs at once."""
import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.errors import InputError, MapMismatchError
from global_loc.geometry.transforms import pose_error
from global_loc.io.text import read_poses
from global_loc.localizer import Localizer
from global_loc.map.builder import MapBuilder
from global_loc.map.storage import read_map
from global_loc.types import Status
from synthetic import FeatureScene, synthetic_conf


@pytest.fixture(scope="module")
def scene():
    return FeatureScene(num_points=4000, seed=21)


def _build(scene, rows, base=None, conf=None):
    b = MapBuilder(conf or synthetic_conf())
    keyframes = scene.keyframes(12)
    for k in rows:
        b.add_keyframe(*keyframes[k][:1], features=keyframes[k][1])
    return b.build() if base is None else b.extend(base)


def test_update_keeps_the_old_map_and_extends_its_points(scene):
    first = _build(scene, range(6))
    updated = _build(scene, range(6, 12), base=first)
    joint = _build(scene, range(12))
    k, p = first.num_keyframes, first.num_points3D
    assert updated.names == joint.names and updated.num_keyframes == 12
    assert np.array_equal(updated.keyframe_ids[:k], first.keyframe_ids) and len(set(updated.keyframe_ids)) == 12
    assert np.array_equal(updated.point_ids[:p], first.point_ids) and len(set(updated.point_ids)) == len(updated.point_ids)
    assert np.array_equal(updated.points_xyz[:p], first.points_xyz)  # old points never move
    assert np.array_equal(updated.global_descriptors[:k], first.global_descriptors)  # the vocabulary is fixed
    for i in range(k):  # old keyframes observe what they did
        a, b = updated.observation_rows(i), first.observation_rows(i)
        assert np.array_equal(updated.point_ids[updated.obs_point_index[a]], first.point_ids[first.obs_point_index[b]])
    # old points seen by the new keyframes: their tracks grow (keyframes 5 and 6, 11 and 0 are neighbours)
    new_obs = updated.obs_point_index[updated.obs_offsets[k]:]
    assert np.count_nonzero(new_obs < p) > 100
    edit = updated.metadata["edits"][-1]
    assert edit["op"] == "update" and edit["added_keyframes"] == 6 and edit["extended_observations"] > 100
    # about the points of a joint build: most of the joint map's (what differs: points that only
    # an unkept old keypoint and a new one see, and the old points not triangulated again)
    assert 0.8 * joint.num_points3D <= updated.num_points3D <= 1.05 * joint.num_points3D
    loc = Localizer(updated, synthetic_conf())
    for between in (7.5, 9.5, 11.5):  # views among the new keyframes, one between the runs
        pose = scene.pose_on_ring(2 * np.pi * between / 12)
        feats, _ = scene.observe(pose)
        r = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
        assert r.status == Status.LOCALIZED, r.reason
        dt, dr = pose_error(r.cam_from_world, pose)
        assert dt < 0.01 and dr < 0.1


def test_update_refuses_what_it_cannot_add(scene):
    first = _build(scene, range(6))
    with pytest.raises(InputError, match="already holds keyframe"):
        _build(scene, range(4, 8), base=first)
    with pytest.raises(MapMismatchError, match="global descriptor 'vlad' were made with other options"):
        _build(scene, range(6, 12), base=first,
               conf=synthetic_conf(global_descriptor={"name": "vlad", "num_clusters": 8}))


def test_update_needs_posed_keyframes(temple_map, temple_split, tmp_path, capsys):
    rc = main(["-q", "index", "--colmap", str(tmp_path), "--images", str(temple_split["images"]),
               "--update", str(temple_map), "--out", str(tmp_path / "m.glmap")])
    assert rc == 2 and "--update adds keyframes with known poses" in capsys.readouterr().err


@pytest.mark.slow
def test_temple_second_run_added_localizes_as_a_joint_build(temple_split, temple_runs, tmp_path, capsys):
    """Run 1: even views 2-22; run 2: even views 24-46, added with --update; queries: the odd
    views. The updated map: every query within (1 cm, 1 deg) (run 1 alone misses some), its
    median error within 0.2 mm of the joint build's (measured: 0.32 against 0.205 mm)."""
    gt = read_poses(temple_split["gt"])
    run1, run2 = temple_runs
    common = ["--images", str(temple_split["images"]), "--cameras", str(temple_split["cameras"])]
    m = tmp_path / "m.glmap"

    def localize(path):
        out = tmp_path / f"{path.stem}.txt"
        assert main(["-q", "localize", "--map", str(path), "--images", str(temple_split["images"]), "--queries",
                     str(temple_split["queries"]), "--out", str(out)]) == 0
        est = read_poses(out)
        return np.array([pose_error(est[n], gt[n]) if n in est else (np.inf, np.inf)
                         for n in (ln.split()[0] for ln in temple_split["queries"].read_text().splitlines())])

    assert main(["-q", "index", *common, "--poses", str(run1), "--out", str(m)]) == 0
    first = read_map(m)
    e1 = localize(m)
    assert main(["-q", "index", *common, "--poses", str(run2), "--update", str(m), "--out", str(m)]) == 0
    assert "added 12 keyframes" in capsys.readouterr().out
    updated = read_map(m)
    assert updated.num_keyframes == 23 and len(updated.cameras) == 1  # run 2 takes run 1's corrected camera
    assert np.array_equal(updated.point_ids[:first.num_points3D], first.point_ids)
    joint = tmp_path / "joint.glmap"
    assert main(["-q", "index", *common, "--poses", str(temple_split["map_poses"]), "--out", str(joint)]) == 0
    eu, ej = localize(m), localize(joint)
    within = lambda e: int(np.sum((e[:, 0] < 0.01) & (e[:, 1] < 1.0)))  # noqa: E731
    assert within(eu) == within(ej) == 24 > within(e1)
    assert np.median(eu[:, 0]) <= np.median(ej[:, 0]) + 2e-4


@pytest.mark.slow
def test_a_second_recorded_run_added_from_its_bag(mini_world, mini_world_map, tmp_path, capsys):
    """The mini world's query run (another lane, other lighting) added to its mapping run's map,
    its poses from the ground-truth odometry: the new keyframes come after the old ones, which
    are unchanged; the same run a second time is refused by name."""
    world = mini_world[("mcap", False)]
    out = tmp_path / "both.glmap"
    assert main(["-q", "index", "--bag", str(world.query.bag), "--image-topic", world.query.image_topic,
                 "--pose-topic", "/ground_truth/odom", "--update", str(mini_world_map), "--out", str(out)]) == 0
    assert "keyframes to" in capsys.readouterr().out
    old, both = read_map(mini_world_map), read_map(out)
    k = old.num_keyframes
    assert both.num_keyframes > k and both.names[:k] == old.names
    assert np.array_equal(both.points_xyz[:old.num_points3D], old.points_xyz)
    edit = both.metadata["edits"][-1]
    assert edit["source"]["type"] == "bag" and edit["added_keyframes"] == both.num_keyframes - k
    assert edit["new_points"] > 0
    from global_loc.localizer import conf_for_map
    from global_loc.pipeline import index_bag

    with pytest.raises(InputError, match="already holds keyframe"):  # the same run twice
        conf = conf_for_map(both)
        conf.mapping.keyframe_min_distance_m, conf.mapping.keyframe_min_rotation_deg = 0.2, 10.0
        index_bag(world.query.bag, world.query.image_topic, conf, pose_topic="/ground_truth/odom", base=both)


def test_map_indexer_saves_add_only_the_keyframes_since_the_last_save(scene, tmp_path):
    """Once the saved map holds ``incremental_after`` keyframes, a save extends it: the first
    save's keyframes and points keep their ids and positions, the edit is recorded, a save with
    nothing new writes nothing, and the result localizes a view only the later keyframes saw."""
    from global_loc.map.incremental import IncrementalIndexer

    path = tmp_path / "drive.glmap"
    idx = IncrementalIndexer(synthetic_conf(), path, incremental_after=6)
    keyframes = scene.keyframes(12)
    for kf, feats in keyframes[:6]:
        idx.builder.add_keyframe(kf, features=feats, select=False)
    first = idx.save()
    assert "edits" not in first.metadata  # built: below incremental_after
    for kf, feats in keyframes[6:]:
        idx.builder.add_keyframe(kf, features=feats, select=False)
    second = idx.save()
    assert second.num_keyframes == 12 and second.metadata["edits"][-1]["added_keyframes"] == 6
    assert np.array_equal(second.point_ids[:first.num_points3D], first.point_ids)
    assert np.array_equal(second.points_xyz[:first.num_points3D], first.points_xyz)
    written = path.stat().st_mtime_ns
    assert idx.save() is second and path.stat().st_mtime_ns == written  # nothing new: nothing written
    assert read_map(path).num_keyframes == 12
    rebuilt = IncrementalIndexer(synthetic_conf(), incremental_after=0)
    for kf, feats in keyframes:
        rebuilt.builder.add_keyframe(kf, features=feats, select=False)
    assert "edits" not in rebuilt.save().metadata  # 0: every save builds the whole map
    loc = Localizer(second, synthetic_conf())
    pose = scene.pose_on_ring(2 * np.pi * 9.5 / 12)
    r = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=scene.observe(pose)[0])
    assert r.status == Status.LOCALIZED, r.reason
    dt, dr = pose_error(r.cam_from_world, pose)
    assert dt < 0.01 and dr < 0.1
