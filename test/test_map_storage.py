import numpy as np
import pytest

from global_loc.errors import MapFormatError
from global_loc.map import storage
from global_loc.map.builder import MapBuilder
from global_loc.map.storage import read_map, read_map_header, write_map
from synthetic import FeatureScene, synthetic_conf


@pytest.fixture(scope="module")
def small_map():
    scene = FeatureScene(num_points=2000, seed=3)
    b = MapBuilder(synthetic_conf())
    for kf, f in scene.keyframes(8):
        b.add_keyframe(kf, features=f)
    return b.build()


def assert_same(a, b, desc_atol=0.0):
    assert a.names == b.names
    for field in ("keyframe_ids", "stamps", "q_wxyz", "t", "camera_index", "global_descriptors",
                  "obs_offsets", "obs_keypoints", "obs_point_index", "point_ids", "points_xyz",
                  "points_rgb", "points_error"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.allclose(a.obs_descriptors, b.obs_descriptors, atol=desc_atol)
    assert a.cameras == b.cameras
    assert a.local_features == b.local_features and a.global_descriptor == b.global_descriptor
    assert a.frame_id == b.frame_id
    assert set(a.global_state) == set(b.global_state)
    for k in a.global_state:
        assert np.array_equal(a.global_state[k], b.global_state[k])


def test_round_trip_float32_is_exact(small_map, tmp_path):
    p = write_map(small_map, tmp_path / "m.glmap", descriptor_dtype="float32")
    assert_same(small_map, read_map(p))
    h = read_map_header(p)
    assert h.num_keyframes == 8 and h.local_features.name == "synthetic32"


def test_round_trip_float16_descriptors(small_map, tmp_path):
    p = write_map(small_map, tmp_path / "m.glmap")
    m = read_map(p)
    assert m.obs_descriptors.dtype == np.float16
    assert_same(small_map, m, desc_atol=1e-3)  # float16 keeps ~3 decimal digits of unit vectors


def test_version_2_maps_still_load(small_map, tmp_path):
    """The batched layout of versions 1 and 2: small chunks force many records."""
    p = write_map(small_map, tmp_path / "m.glmap", descriptor_dtype="float32", chunk_bytes=10_000, _version=2)
    with open(p, "rb") as f:
        assert storage._PREAMBLE.unpack(f.read(storage._PREAMBLE.size))[1] == 2
        kinds = [r.WhichOneof("body") for r in storage._read_records(f, p)]
    assert kinds.count("keyframes") > 2 and kinds.count("points") > 2
    assert kinds[0] == "header" and kinds[-1] == "footer"
    m = read_map(p)
    assert_same(small_map, m)
    assert m.obs_descriptors.flags.writeable  # copied out of the records


def test_version_3_maps_are_memory_mapped(small_map, tmp_path):
    import mmap

    p = write_map(small_map, tmp_path / "m.glmap")
    m = read_map(p)
    for a in (m.obs_descriptors, m.obs_keypoints, m.points_xyz, m.global_descriptors, m.obs_point_index):
        assert not a.flags.writeable  # a read-only view of the file, not a copy
        base = a
        while getattr(base, "base", None) is not None:
            base = base.base
        assert isinstance(base.obj if isinstance(base, memoryview) else base, mmap.mmap)
    assert m.names == small_map.names and m.cameras == small_map.cameras
    h = read_map_header(p)
    assert h.schema_version == 3 and h.num_keyframes == 8


def test_a_corrupt_array_of_a_large_map_is_found_on_demand(small_map, tmp_path, monkeypatch):
    p = write_map(small_map, tmp_path / "m.glmap")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside an array
    bad = tmp_path / "bad.glmap"
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(storage, "VERIFY_MAX_BYTES", 1000)  # as if the map were large
    read_map(bad)  # opens without reading the arrays
    with pytest.raises(MapFormatError, match="checksum of its array '.*' .* does not match"):
        storage.verify_map(bad)
    with pytest.raises(MapFormatError, match="corrupt"):
        read_map(bad, verify=True)


def test_truncated_map_is_reported(small_map, tmp_path):
    p = write_map(small_map, tmp_path / "m.glmap")
    data = p.read_bytes()
    for cut in (len(data) - 3, len(data) // 2, 20):
        bad = tmp_path / f"cut{cut}.glmap"
        bad.write_bytes(data[:cut])
        with pytest.raises(MapFormatError, match="truncated"):
            read_map(bad)


def test_corrupt_map_is_reported(small_map, tmp_path):
    p = write_map(small_map, tmp_path / "m.glmap")
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.glmap"
    bad.write_bytes(bytes(data))
    with pytest.raises(MapFormatError, match="corrupt"):
        read_map(bad)


def test_other_files_and_versions_are_refused(small_map, tmp_path):
    p = write_map(small_map, tmp_path / "m.glmap")
    other = tmp_path / "v4.glmap"
    data = bytearray(p.read_bytes())
    data[8:12] = (4).to_bytes(4, "little")
    other.write_bytes(bytes(data))
    with pytest.raises(MapFormatError, match="schema version 4, this global_loc .* reads versions 1, 2, 3"):
        read_map(other)
    txt = tmp_path / "notamap.glmap"
    txt.write_text("hello world, not a map")
    with pytest.raises(MapFormatError, match="not a global_loc map"):
        read_map(txt)
    with pytest.raises(MapFormatError, match="does not exist"):
        read_map(tmp_path / "missing.glmap")


def test_failed_write_keeps_the_old_map(small_map, tmp_path, monkeypatch):
    p = write_map(small_map, tmp_path / "m.glmap")
    before = p.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "_write_record", boom)
    with pytest.raises(OSError, match="disk full"):
        write_map(small_map, p)
    assert p.read_bytes() == before
    assert not list(tmp_path.glob("*.part"))


def test_the_points_covariances_are_kept_and_not_computed_again(small_map, tmp_path, monkeypatch):
    from global_loc.geometry import covariance

    stored = small_map.stored_point_covariances()  # the builder computed them
    assert stored is not None and stored[0].shape == (small_map.num_points3D, 3, 3) and stored[1] > 0
    m = read_map(write_map(small_map, tmp_path / "m.glmap"))

    def boom(*a, **k):
        raise AssertionError("computed again")

    monkeypatch.setattr(covariance, "triangulation_covariances", boom)
    rows = np.arange(0, small_map.num_points3D, 7)
    assert np.array_equal(m.point_covariances(rows), small_map.point_covariances(rows))
    assert m.point_noise_px == pytest.approx(stored[1])
    # another noise than the map's own asks for a new computation
    with pytest.raises(AssertionError, match="computed again"):
        m.point_covariances(rows, noise_px=0.5)


def test_special_files_are_refused_before_opening(tmp_path):
    """A FIFO with no writer would block ``open`` for ever; a device would read without end."""
    import os
    import threading

    from global_loc.errors import MapFormatError
    from global_loc.map.storage import read_map

    fifo = tmp_path / "map.glmap"
    os.mkfifo(fifo)
    done = {}

    def read():
        try:
            read_map(fifo)
        except MapFormatError as e:
            done["error"] = str(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(5.0)
    assert not t.is_alive(), "read_map blocked on a FIFO"
    assert "is a FIFO (named pipe), not a map file" in done["error"]
    with pytest.raises(MapFormatError, match="is a device, not a map file"):
        read_map("/dev/zero")
