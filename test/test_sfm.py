"""Maps from photos alone: structure from motion with pycolmap, queries without calibration,
and the similarity alignment that evaluates them."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from global_loc.cli.main import main as cli
from global_loc.evaluation import align_similarity
from global_loc.geometry.transforms import Pose
from global_loc.io.text import read_poses, read_query_list


def test_align_similarity_recovers_a_known_transform():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    truth = {f"q{i}": Pose(Rotation.from_rotvec(rng.normal(size=3)).as_matrix(), rng.normal(size=3)) for i in range(8)}
    # the same cameras in a frame rotated, moved and scaled by 0.25: world' = s (R world + t)
    R, t, s = Rotation.from_rotvec([0.3, -0.2, 1.0]).as_matrix(), np.array([2.0, -1.0, 0.5]), 0.25
    est = {}
    for n, p in truth.items():
        world_from_cam = p.inverse()
        est[n] = Pose(R @ world_from_cam.R, s * (R @ world_from_cam.t + t)).inverse()
    al = align_similarity(est, truth)
    assert al.scale == pytest.approx(1 / s, rel=1e-9) and al.residuals_m.max() < 1e-9
    for n in truth:
        dt = np.linalg.norm(al.apply(est[n]).inverse().t - truth[n].inverse().t)
        assert dt < 1e-9
    with pytest.raises(Exception, match="at least 3"):
        align_similarity(dict(list(est.items())[:2]), truth)


def test_a_query_list_may_give_names_alone(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("a.jpg\nb.jpg PINHOLE 640 480 500 500 320 240\n")
    q = read_query_list(path)
    assert q["a.jpg"] is None and q["b.jpg"].width == 640
    with pytest.raises(Exception, match="query list file .*nope.txt does not exist"):
        read_query_list(tmp_path / "nope.txt")


def test_photos_that_do_not_overlap_are_named_in_one_error(data_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in (data_dir / "temple_ring" / "images" / "templeR0001.png",
                data_dir / "dino_subset" / "images" / sorted(p.name for p in (data_dir / "dino_subset" / "images").iterdir())[0],
                sorted((data_dir / "sacre_coeur" / "mapping").iterdir())[0]):
        shutil.copy(src, photos / src.name)
    rc = cli(["-q", "index", "--images", str(photos), "--out", str(tmp_path / "m.glmap")])
    err = capsys.readouterr().err
    assert rc == 2 and "of 3 photos" in err and "a map needs at least 3" in err, err
    assert not (tmp_path / "m.glmap").exists()


@pytest.mark.slow
def test_temple_from_photos_alone_localizes_its_other_views(temple_dir, tmp_path, capsys):
    """The 23 even views without poses or cameras -> a map; the 24 odd views, listed by name
    alone, localized in it; one similarity over all of them aligns them to the ground truth
    within 2 cm (median) and 6 cm (max) on a ring of radius 0.56 m (benchmarks/photos_only.py:
    9.7 and 33 mm)."""
    names = sorted(p.name for p in (temple_dir / "images").iterdir())
    even = [n for n in names if int(n[7:11]) % 2 == 0]
    odd = [n for n in names if int(n[7:11]) % 2 == 1]
    (tmp_path / "map.txt").write_text("\n".join(even) + "\n")
    (tmp_path / "q.txt").write_text("\n".join(odd) + "\n")
    m = tmp_path / "m.glmap"
    assert cli(["-q", "index", "--images", str(temple_dir / "images"), "--image-list", str(tmp_path / "map.txt"),
                "--out", str(m)]) == 0
    out = capsys.readouterr().out
    assert "structure from motion: 23 of 23 photos registered" in out and "unknown scale" in out
    assert (tmp_path / "m_sfm" / "model" / "images.bin").exists()  # the reconstruction stays for inspection
    res = tmp_path / "res.txt"
    assert cli(["-q", "localize", "--map", str(m), "--images", str(temple_dir / "images"), "--queries",
                str(tmp_path / "q.txt"), "--out", str(res)]) == 0
    out = capsys.readouterr().out
    assert "camera of 24 queries guessed (no EXIF focal length)" in out
    est = read_poses(res)
    assert len(est) == 24
    al = align_similarity(est, read_poses(temple_dir / "poses_cam_from_world.txt"))
    with capsys.disabled():
        print(f"\ntemple from photos alone: {al.format()}")
    assert np.median(al.residuals_m) < 0.02 and al.residuals_m.max() < 0.06
