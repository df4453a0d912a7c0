"""``global-loc map info``: what a map file holds, read from the file, and a corrupt array found
with --verify."""
import json

import numpy as np
import pytest

from global_loc.cli.main import main
from global_loc.map import storage
from global_loc.map.builder import MapBuilder
from global_loc.map.info import format_map_info, map_info
from global_loc.map.storage import write_map
from synthetic import FeatureScene, synthetic_conf


@pytest.fixture(scope="module")
def map_file(tmp_path_factory):
    scene = FeatureScene(num_points=2000, seed=5)
    b = MapBuilder(synthetic_conf())
    for kf, f in scene.keyframes(6):
        b.add_keyframe(kf, features=f)
    m = b.build()
    return m, write_map(m, tmp_path_factory.mktemp("info") / "m.glmap")


def test_info_reports_what_the_map_holds(map_file):
    m, path = map_file
    info = map_info(path)
    assert (info["keyframes"], info["points3D"], info["observations"]) == (6, m.num_points3D, m.num_observations)
    assert info["schema_version"] == 3 and info["size_bytes"] == path.stat().st_size
    assert info["local_features"] == {"name": "synthetic32", "dim": 32}
    assert len(info["cameras"]) == len(m.cameras) and info["cameras"][0]["width"] == m.cameras[0].width
    # the optical centres' bounding box, from the poses as Pose computes them
    centres = np.array([m.cam_from_world(i).inverse().t for i in range(m.num_keyframes)])
    assert np.allclose(info["camera_centres_min"], centres.min(0), atol=1e-3)
    assert np.allclose(info["camera_centres_max"], centres.max(0), atol=1e-3)
    observed = np.unique(m.obs_point_index).size
    assert info["mean_track_length"] == pytest.approx(m.num_observations / observed, abs=1e-3)
    assert info["build"]["build_seconds"] > 0 and "matching" in info["build"]["stage_seconds"]
    text = format_map_info(info)
    assert f"6 keyframes, {m.num_points3D} 3D points" in text and "synthetic32 (32-d)" in text


def test_cli_prints_text_and_json(map_file, capsys):
    _, path = map_file
    assert main(["map", "info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keyframes"] == 6
    assert main(["map", "info", str(path), "--verify"]) == 0
    assert "every array verified" in capsys.readouterr().out


def test_verify_finds_a_corrupt_array_that_a_plain_info_does_not_read(map_file, tmp_path, monkeypatch, capsys):
    _, path = map_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside an array
    bad = tmp_path / "bad.glmap"
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(storage, "VERIFY_MAX_BYTES", 1000)  # as if the map were large: arrays read on demand
    assert main(["map", "info", str(bad)]) == 0
    assert "--verify checks every array" in capsys.readouterr().out
    assert main(["map", "info", str(bad), "--verify"]) == 2
    assert "checksum of its array" in capsys.readouterr().err


def test_not_a_map_is_one_line(tmp_path, capsys):
    (tmp_path / "x.glmap").write_bytes(b"not a map at all")
    assert main(["map", "info", str(tmp_path / "x.glmap")]) == 2
    err = capsys.readouterr().err
    assert "is not a global_loc map" in err and len(err.strip().splitlines()) == 1
