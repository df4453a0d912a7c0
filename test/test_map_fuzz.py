"""A map file is untrusted input: crafted directories and values whose checksums are right are
refused with one MapFormatError that names the array; a seeded fuzz run of every family gives
clean errors or maps that localize right (``benchmarks/fuzz_maps.py`` runs 100 k inputs)."""
from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

from global_loc.errors import GlobalLocError, MapFormatError
from global_loc.geometry.transforms import pose_error
from global_loc.io.images import read_image
from global_loc.io.text import read_cameras, read_poses
from global_loc.localizer import Localizer
from global_loc.map.fuzz import FAMILIES, MapParts, mutations
from global_loc.map.storage import read_map

QUERIES = ("templeR0005.png", "templeR0011.png", "templeR0017.png")


@pytest.fixture(scope="module")
def small_temple(temple_dir, tmp_path_factory):
    """A map of the temple's even views 2-24 (12 keyframes, 2 MiB), and three queries among them."""
    from global_loc.cli.main import main

    out = tmp_path_factory.mktemp("fuzz")
    lines = [l for l in (temple_dir / "poses_cam_from_world.txt").read_text().splitlines()
             if int(l.split()[0][7:11]) % 2 == 0 and int(l.split()[0][7:11]) <= 24]
    (out / "poses.txt").write_text("\n".join(lines) + "\n")
    path = out / "small.glmap"
    assert main(["-q", "index", "--images", str(temple_dir / "images"), "--poses", str(out / "poses.txt"),
                 "--cameras", str(temple_dir / "cameras.txt"), "--out", str(path)]) == 0
    cams = read_cameras(temple_dir / "cameras.txt")
    gt = read_poses(temple_dir / "poses_cam_from_world.txt")
    queries = [(q, read_image(temple_dir / "images" / q), cams[q], gt[q]) for q in QUERIES]
    return path, path.read_bytes(), queries


def _crafted(raw: bytes, array: str, **change) -> bytes:
    from global_loc.map import global_loc_map_pb2 as pb

    parts = MapParts.parse(raw)
    entries = []
    for original in parts.entries:  # copies: the parts keep the layout the bytes are in
        entries.append(pb.ArrayEntry())
        entries[-1].CopyFrom(original)
    by = {e.name: i for i, e in enumerate(entries)}
    order = sorted(entries, key=lambda e: e.offset)
    e = entries[by[array]]
    for k, v in change.items():
        if k == "shape":
            e.shape[:] = v
        elif k == "offset_of":
            e.offset = entries[by[v]].offset
        elif k == "offset_of_previous":
            e.offset = order[order.index(e) - 1].offset
        else:
            setattr(e, k, v)
    return parts.layout(entries)


def _payload(raw: bytes, name: str, edit) -> bytes:
    parts = MapParts.parse(raw)
    e = next(e for e in parts.entries if e.name == name)
    from global_loc.map.storage import _NP_DTYPES

    a = np.frombuffer(parts.data[name], _NP_DTYPES[e.dtype]).reshape(tuple(e.shape)).copy()
    a = edit(a)
    parts.data[name] = a.tobytes()
    return parts.layout()


def _header(raw: bytes, edit) -> bytes:
    parts = MapParts.parse(raw)
    edit(parts.header.header)
    return parts.layout()


CASES = {  # what the crafted files did: each must be one error naming the array
    "keyframe_ids of shape (2^32, 2^32) and 0 bytes": (lambda r: _crafted(r, "keyframe_ids", shape=[2**32, 2**32],
                                                                          nbytes=0), "'keyframe_ids' has shape"),
    "names_offsets of shape (24, 1, 1)": (lambda r: _crafted(r, "names_offsets", shape=[13, 1, 1]),
                                          "'names_offsets' has shape"),
    "cam_from_world flattened": (lambda r: _crafted(r, "cam_from_world", shape=[84]), "'cam_from_world' has shape"),
    "obs_point_index as (N, 1, 1)": (lambda r: _crafted(r, "obs_point_index", shape=[6049, 1, 1]),
                                     "'obs_point_index' has shape"),
    "names_utf8 at the next array": (lambda r: _crafted(r, "names_utf8", offset_of="names_offsets"), "overlap"),
    "cam_from_world at the previous array": (lambda r: _crafted(r, "cam_from_world", offset_of_previous=True),
                                             "overlap"),
    "point_covariances at the previous array": (lambda r: _crafted(r, "point_covariances", offset_of_previous=True),
                                                "overlap"),
    "metadata a JSON list": (lambda r: _header(r, lambda h: setattr(h, "metadata_json", "[1, 2]")),
                             "its metadata is a JSON list, not an object"),
    "NaN translation": (lambda r: _payload(r, "cam_from_world", lambda a: (a.__setitem__((3, 5), np.nan), a)[1]),
                        "'cam_from_world' of keyframe 3 is not finite"),
    "zero quaternion": (lambda r: _payload(r, "cam_from_world", lambda a: (a.__setitem__((2, slice(0, 4)), 0), a)[1]),
                        "'cam_from_world' of keyframe 2 has a quaternion of norm 0"),
    "covariances of 1e30": (lambda r: _payload(r, "point_covariances", lambda a: (a.__setitem__(7, 1e30), a)[1]),
                            "'point_covariances' of point 7"),
    "an indefinite covariance": (lambda r: _payload(r, "point_covariances",
                                                    lambda a: (a.__setitem__(9, -np.eye(3)), a)[1]),
                                 "'point_covariances' of point 9 is not positive semi-definite"),
    "invalid UTF-8 in names": (lambda r: _payload(r, "names_utf8", lambda a: (a.__setitem__(3, 0xFF), a)[1]),
                               "is not valid UTF-8"),
    "an observation of point P": (lambda r: _payload(r, "obs_point_index", lambda a: (a.__setitem__(5, 2415), a)[1]),
                                  "'obs_point_index' holds 2415, outside the 2415 points"),
    "obs_offsets that decrease": (lambda r: _payload(r, "obs_offsets", lambda a: (a.__setitem__(4, 0), a)[1]),
                                  "'obs_offsets' decreases"),
    "a camera index out of range": (lambda r: _payload(r, "camera_index", lambda a: (a.__setitem__(0, 3), a)[1]),
                                    "'camera_index' holds 3, outside the 1 cameras"),
    "a NaN camera parameter": (lambda r: _header(r, lambda h: h.cameras[0].params.__setitem__(1, float("nan"))),
                               "camera 0"),
    "an unknown array": (lambda r: _crafted(r, "points_rgb", **{"name": "mystery"}), "unknown array 'mystery'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_crafted_map_is_one_error_that_names_the_array(case, small_temple, tmp_path):
    _, raw, _ = small_temple
    make, expected = CASES[case]
    path = tmp_path / "m.glmap"
    path.write_bytes(make(raw))
    with pytest.raises(MapFormatError) as e:
        read_map(path)
    assert expected in str(e.value) and "global-loc index" in str(e.value), str(e.value)


def test_the_good_map_passes_every_check(small_temple):
    path, raw, _ = small_temple
    assert MapParts.parse(raw).layout() == raw  # the fuzzer's layout is the writer's
    read_map(path, verify=True)


@pytest.mark.slow
def test_seeded_fuzz_gives_clean_errors_or_maps_that_localize_right(small_temple, tmp_path, capsys):
    """250 inputs of each family (seed 0); every accepted map is localized: no raw exception,
    no pose beyond (5 cm, 5 deg)."""
    _, raw, queries = small_temple
    path = tmp_path / "m.glmap"
    table = {}
    for family in FAMILIES:
        counts = collections.Counter()
        for what, data in mutations(raw, family, 250, seed=0):
            path.write_bytes(data)
            try:
                m = read_map(path)
            except GlobalLocError:
                counts["clean error"] += 1
                continue
            except Exception as e:  # noqa: BLE001 - what the test is for
                pytest.fail(f"{family}, {what}: raw {type(e).__name__}: {e}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # NaN descriptors in matching
                    loc = Localizer(m)
                    for name, image, camera, truth in queries:
                        r = loc.localize(image, camera)
                        if r.success:
                            dt, dr = pose_error(r.cam_from_world, truth)
                            assert dt < 0.05 and dr < 5, f"{family}, {what}: {name} {dt:.3f} m, {dr:.1f} deg"
            except GlobalLocError:
                counts["clean error when localizing"] += 1
                continue
            except AssertionError:
                raise
            except Exception as e:  # noqa: BLE001
                pytest.fail(f"{family}, {what}: raw {type(e).__name__} when localizing: {e}")
            counts["accepted, localized right"] += 1
        table[family] = dict(counts)
    with capsys.disabled():
        print("\nmap fuzz, 250 inputs a family:")
        for family, counts in table.items():
            print(f"  {family}: {counts}")


def test_a_nan_descriptor_matches_nothing_and_spoils_no_place(small_temple, tmp_path):
    """Descriptors are not read at opening (gigabytes for a large map): one that is NaN must
    not spoil its place's matching (through the mutual check's column maxima it did: 2 of 3
    queries lost their pose). The map's queries localize as with the good map."""
    path, raw, queries = small_temple
    bad = tmp_path / "m.glmap"
    bad.write_bytes(_payload(raw, "obs_descriptors", lambda a: (a.__setitem__(0, np.nan), a)[1]))
    good, damaged = Localizer(read_map(path)), Localizer(read_map(bad))
    for name, image, camera, truth in queries:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = damaged.localize(image, camera)
        ref = good.localize(image, camera)
        assert r.status == ref.status and r.mode == ref.mode and abs(r.num_inliers - ref.num_inliers) <= 2, name
        dt, dr = pose_error(r.cam_from_world, truth)
        assert dt < 0.01 and dr < 1
