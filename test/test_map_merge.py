"""``global-loc map merge A B``: B's frame aligned to A's by localizing B's keyframes in A, then B
added as a new run."""
import dataclasses

import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.errors import InputError, MapMismatchError
from global_loc.geometry.transforms import pose_error, rotation_angle_deg
from global_loc.io.text import read_poses
from global_loc.localizer import Localizer
from global_loc.map.builder import MapBuilder
from global_loc.map.merge import Similarity, align_maps, merge_maps, transform_map
from global_loc.map.storage import read_map, write_map
from global_loc.types import Status
from synthetic import FeatureScene, synthetic_conf

#: a similarity far from the identity: B is recorded in another frame, at another scale
B_FROM_TRUTH = Similarity(1.7, np.array([[np.cos(0.6), -np.sin(0.6), 0.0], [np.sin(0.6), np.cos(0.6), 0.0],
                                         [0.0, 0.0, 1.0]]), np.array([0.3, -0.2, 0.5]))


@pytest.fixture(scope="module")
def scene():
    return FeatureScene(num_points=4000, seed=5)


def _build(scene, rows, conf=None):
    b = MapBuilder(conf or synthetic_conf())
    keyframes = scene.keyframes(12)
    for k in rows:
        b.add_keyframe(*keyframes[k][:1], features=keyframes[k][1])
    return b.build()


def test_similarity_round_trips():
    x = np.random.default_rng(0).normal(size=(5, 3))
    back = B_FROM_TRUTH.inverse().transform_points(B_FROM_TRUTH.transform_points(x))
    assert np.allclose(back, x, atol=1e-12)


def test_merge_recovers_the_frame_of_b_and_adds_its_keyframes(scene):
    """A: keyframes 0-6 of the ring; B: 4-11 (three in common), moved by a known similarity."""
    a = _build(scene, range(7))
    truth = _build(scene, range(4, 12))
    b = transform_map(truth, B_FROM_TRUTH)
    alignment = align_maps(a, b, synthetic_conf())
    T = alignment.a_from_b
    assert len(alignment.agreeing) >= 3 and alignment.tried == 8
    assert abs(T.scale - 1 / 1.7) < 1e-3 and rotation_angle_deg(T.R @ B_FROM_TRUTH.R) < 0.25
    merged = merge_maps(a, b, alignment, synthetic_conf(), prefix="B/")
    assert merged.num_keyframes == 15 and merged.names[:7] == a.names
    assert np.array_equal(merged.point_ids[:a.num_points3D], a.point_ids)
    assert np.array_equal(merged.points_xyz[:a.num_points3D], a.points_xyz)  # A's points stay
    for name in truth.names:  # B's keyframes in A's frame where the truth has them
        dt, dr = pose_error(merged.cam_from_world(merged.row_of("B/" + name)), truth.cam_from_world(truth.row_of(name)))
        assert dt < 0.01 and dr < 0.25, (name, dt, dr)  # the alignment: 3 keyframes localized to ~0.1 deg
    edit = merged.metadata["edits"][-1]
    assert edit["op"] == "merge" and edit["added_keyframes"] == 8 and edit["alignment"]["agreeing"] >= 3
    assert edit["extended_observations"] > 100  # B's keyframes observe A's points where they overlap
    loc = Localizer(merged, synthetic_conf())
    pose = scene.pose_on_ring(2 * np.pi * 9.5 / 12)  # a view only B mapped
    feats, _ = scene.observe(pose)
    r = loc.localize(np.zeros((480, 640), np.uint8), scene.camera, features=feats)
    assert r.status == Status.LOCALIZED, r.reason
    dt, dr = pose_error(r.cam_from_world, pose)
    assert dt < 0.01 and dr < 0.25  # B's part of the map carries the alignment's error


def test_merge_refuses_what_it_cannot_align(scene):
    a = _build(scene, range(5))
    far = _build(scene, range(7, 10))  # no keyframe of A's views
    with pytest.raises(InputError, match=r"of B's 3 keyframes localize in A"):
        align_maps(a, far, synthetic_conf())
    b = transform_map(_build(scene, range(3, 9)), B_FROM_TRUTH)
    with pytest.raises(InputError, match="leave out --rigid"):
        align_maps(a, b, synthetic_conf(), rigid=True)
    same = _build(scene, range(3, 9))
    alignment = align_maps(a, same, synthetic_conf(), rigid=True)
    assert np.linalg.norm(alignment.a_from_b.t) < 0.01 and alignment.a_from_b.scale == 1.0
    with pytest.raises(InputError, match="--prefix"):
        merge_maps(a, same, alignment, synthetic_conf())
    with pytest.raises(MapMismatchError, match="same local features"):
        align_maps(a, dataclasses.replace(same, local_features={**same.local_features, "name": "aliked"}))
    # a B with its own vocabulary: its keyframes are described again with A's
    other = _build(scene, range(1, 9), conf=synthetic_conf(global_descriptor={"name": "vlad", "num_clusters": 8}))
    merged = merge_maps(a, other, align_maps(a, other, synthetic_conf()), synthetic_conf(), prefix="B/")
    assert merged.global_descriptors.shape == (13, a.global_descriptors.shape[1])
    assert np.array_equal(merged.global_descriptors[:5], a.global_descriptors)


@pytest.mark.slow
def test_temple_halves_built_apart_and_merged(temple_split, temple_runs, tmp_path, capsys):
    """Run 1: even views 2-22; run 2: even views 24-46, its map moved by a known similarity; the
    merge puts run 2's keyframes within 1 mm of the truth and localizes every odd view within
    (1 cm, 1 deg). Measured: 8 of 12 keyframes of B localized in A, all agreeing, residuals
    0.85 mm median; B's centres 0.66 mm median / 0.74 mm max from the truth; queries median
    0.47 mm (run 1 alone: 22/24 localized; the joint build: 0.205 mm)."""
    gt = read_poses(temple_split["gt"])
    run1, run2 = temple_runs
    common = ["--images", str(temple_split["images"]), "--cameras", str(temple_split["cameras"])]
    a, b, moved, c = (tmp_path / f"{n}.glmap" for n in ("a", "b", "moved", "c"))
    assert main(["-q", "index", *common, "--poses", str(run1), "--out", str(a)]) == 0
    assert main(["-q", "index", *common, "--poses", str(run2), "--out", str(b)]) == 0
    write_map(transform_map(read_map(b), B_FROM_TRUTH), moved)
    capsys.readouterr()
    assert main(["-q", "map", "merge", str(a), str(moved), "--out", str(c)]) == 0
    out = capsys.readouterr().out
    assert "alignment of B in A (similarity)" in out and "added 12 keyframes of B" in out
    merged = read_map(c)
    assert merged.num_keyframes == 23
    centres = [np.linalg.norm(merged.cam_from_world(merged.row_of(n)).center - gt[n].center)
               for n in read_map(b).names]
    assert max(centres) < 1e-3, centres
    res = tmp_path / "loc.txt"
    assert main(["-q", "localize", "--map", str(c), *common[:2], "--queries", str(temple_split["queries"]),
                 "--out", str(res)]) == 0
    est = read_poses(res)
    names = [ln.split()[0] for ln in temple_split["queries"].read_text().splitlines()]
    errors = np.array([pose_error(est[n], gt[n]) if n in est else (np.inf, np.inf) for n in names])
    assert np.all((errors[:, 0] < 0.01) & (errors[:, 1] < 1.0)), errors
