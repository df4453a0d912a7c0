"""A map file is untrusted input: its directory and the values a localizer trusts, checked.

CRCs catch damage in transit; they say nothing of a file whose checksums are right and whose
content is wrong, as a buggy writer, a bad merge tool or an attacker makes it. So before any
array is viewed, :func:`check_directory` holds each directory entry of a version 3 map to the
schema (its dtype, its shape in terms of the map's counts, an aligned offset inside the file,
``nbytes == prod(shape) * itemsize``, no overlap with another array); then :func:`check_values`
checks what a localizer would trust, at opening, on any version: finite unit quaternions and
finite translations, index arrays in range and CSR offsets monotone, covariances finite,
symmetric and positive semi-definite, names valid UTF-8 and unique, camera parameters finite
and positive, metadata a JSON object of the expected types.

Each failure is one :class:`~global_loc.errors.MapFormatError` that names the array and the
problem, and says to rebuild the map with ``global-loc index``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..errors import MapFormatError

REBUILD = "the map is corrupt or was not written by global_loc; rebuild it with `global-loc index`"


@dataclass(frozen=True)
class ArraySpec:
    """The schema of one array of a version 3 map.

    Attributes:
        dtypes: the numpy dtype names it may have.
        shape: its dimensions: ints, or names of the map's counts (``K`` keyframes, ``K+1``,
            ``P`` points, ``O`` observations, ``F`` free keypoints, ``Dg``/``Dl``/``Dr`` the
            global, local and dense descriptor sizes, ``*`` any length).
        required: every map has it.
    """

    dtypes: tuple[str, ...]
    shape: tuple
    required: bool = False


#: the arrays of schema version 3 (``global_loc_map.proto``, ``storage._map_arrays``)
SCHEMA = {
    "keyframe_ids": ArraySpec(("int64",), ("K",), True),
    "names_utf8": ArraySpec(("uint8",), ("*",), True),
    "names_offsets": ArraySpec(("int64",), ("K+1",), True),
    "stamps": ArraySpec(("float64",), ("K",), True),
    "cam_from_world": ArraySpec(("float64",), ("K", 7), True),
    "camera_index": ArraySpec(("int32",), ("K",), True),
    "global_descriptors": ArraySpec(("float32",), ("K", "Dg"), True),
    "obs_offsets": ArraySpec(("int64",), ("K+1",), True),
    "obs_keypoints": ArraySpec(("float32",), ("O", 2), True),
    "obs_descriptors": ArraySpec(("float16", "float32"), ("O", "Dl"), True),
    "obs_point_index": ArraySpec(("int64",), ("O",), True),
    "point_ids": ArraySpec(("int64",), ("P",), True),
    "points_xyz": ArraySpec(("float64",), ("P", 3), True),
    "points_rgb": ArraySpec(("uint8",), ("P", 3), True),
    "points_error": ArraySpec(("float32",), ("P",), True),
    "point_features": ArraySpec(("float16", "float32"), ("P", "Dr")),
    "free_offsets": ArraySpec(("int64",), ("K+1",)),
    "free_keypoints": ArraySpec(("float32",), ("F", 2)),
    "free_descriptors": ArraySpec(("float16", "float32"), ("F", "Dl")),
    "retrieval_index": ArraySpec(("uint8",), ("*",)),
    "point_covariances": ArraySpec(("float32", "float64"), ("P", 3, 3)),
    "point_noise_px": ArraySpec(("float64",), (1,)),
}

#: the largest variance a point may have, m^2 (a 1 km standard deviation): beyond, a
#: covariance is not a triangulation's
MAX_POINT_VARIANCE_M2 = 1e6

#: metadata keys a localizer reads, and the JSON types they must have
METADATA_TYPES = {"preset": dict, "camera_calibration": list, "skipped": dict, "source": dict, "stats": dict}


def _fail(path, what: str) -> MapFormatError:
    return MapFormatError(f"map {path}: {what}; {REBUILD}")


def check_directory(entries, counts: dict[str, int], file_size: int, data_start: int, data_end: int,
                    dtype_names: dict, align: int, path) -> None:
    """Hold the directory of a version 3 map to :data:`SCHEMA` before any array is viewed.

    Args:
        entries: the directory's ``ArrayEntry`` messages.
        counts: ``K``, ``P``, ``O``, ``Dg``, ``Dl``, ``Dr`` (0 without dense features) from the
            header and footer; ``F`` is read from the entries.
        file_size: the file's size, bytes.
        data_start: the first byte after the directory record (arrays start here or later).
        data_end: where the footer record starts (arrays end here or before).
        dtype_names: ``Array.DType`` value -> numpy dtype.
        align: the arrays' alignment, bytes.

    Raises:
        MapFormatError: an unknown or repeated array, a missing required one, a dtype or shape
            the schema does not allow, sizes that disagree, an offset outside the file, not
            aligned, or overlapping another array.
    """
    seen = {}
    for e in entries:
        name = e.name
        if name not in SCHEMA:
            raise _fail(path, f"unknown array '{name[:60]}' in its directory")
        if name in seen:
            raise _fail(path, f"array '{name}' is listed twice in its directory")
        seen[name] = e
    missing = [n for n, s in SCHEMA.items() if s.required and n not in seen]
    if missing:
        raise _fail(path, f"its directory lacks the arrays {', '.join(missing)}")
    sizes = dict(counts)
    sizes["K+1"] = counts["K"] + 1
    free = seen.get("free_keypoints")
    sizes["F"] = int(free.shape[0]) if free is not None and len(free.shape) else 0
    spans = []
    for name, e in seen.items():
        spec = SCHEMA[name]
        if e.dtype not in dtype_names or dtype_names[e.dtype].name not in spec.dtypes:
            got = dtype_names[e.dtype].name if e.dtype in dtype_names else f"code {e.dtype}"
            raise _fail(path, f"array '{name}' is {got}, the schema has {' or '.join(spec.dtypes)}")
        shape = tuple(int(x) for x in e.shape)
        if len(shape) != len(spec.shape):
            raise _fail(path, f"array '{name}' has shape {shape[:8]}, the schema has {len(spec.shape)} dimension(s) "
                              f"({', '.join(map(str, spec.shape))})")
        for dim, want in zip(shape, spec.shape):
            expected = want if isinstance(want, int) else sizes.get(want)
            if expected is not None and dim != expected:
                raise _fail(path, f"array '{name}' has shape {shape}, expected ({', '.join(str(sizes.get(w, w)) if not isinstance(w, int) else str(w) for w in spec.shape)}) "
                                  "for the counts its header gives")
        itemsize = dtype_names[e.dtype].itemsize
        n = 1
        for dim in shape:
            n *= dim
        if n * itemsize != e.nbytes:
            raise _fail(path, f"array '{name}' has {e.nbytes} bytes for shape {shape} of {dtype_names[e.dtype].name} "
                              f"({n * itemsize} needed)")
        if e.offset % align:
            raise _fail(path, f"array '{name}' starts at byte {e.offset}, not {align}-byte aligned")
        if e.offset < data_start or e.offset + e.nbytes > min(data_end, file_size):
            raise _fail(path, f"array '{name}' (bytes {e.offset}-{e.offset + e.nbytes}) lies outside the file's "
                              f"array section (bytes {data_start}-{min(data_end, file_size)})")
        spans.append((int(e.offset), int(e.offset) + int(e.nbytes), name))
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1 and b1 > b0 and a1 > a0:
            raise _fail(path, f"arrays '{an}' (bytes {a0}-{a1}) and '{bn}' (bytes {b0}-{b1}) overlap")
    if "point_features" in seen and not counts.get("Dr"):
        raise _fail(path, "it holds reference features but its header names no dense feature source")
    if ("point_covariances" in seen) != ("point_noise_px" in seen):
        raise _fail(path, "it holds point covariances without their noise, or the reverse")


def _csr(offsets: np.ndarray, total: int, what: str, path) -> None:
    if len(offsets) == 0 or int(offsets[0]) != 0 or int(offsets[-1]) != total:
        raise _fail(path, f"'{what}' must start at 0 and end at {total}, it runs "
                          f"{int(offsets[0]) if len(offsets) else '-'} to {int(offsets[-1]) if len(offsets) else '-'}")
    if len(offsets) > 1 and np.any(np.diff(offsets) < 0):
        raise _fail(path, f"'{what}' decreases at row {int(np.argmax(np.diff(offsets) < 0))}")


def _in_range(index: np.ndarray, upper: int, what: str, of: str, path) -> None:
    if index.size and (int(index.min()) < 0 or int(index.max()) >= upper):
        bad = int(index.min()) if int(index.min()) < 0 else int(index.max())
        raise _fail(path, f"'{what}' holds {bad}, outside the {upper} {of}")


def check_names(raw: bytes, offsets: np.ndarray, num_keyframes: int, path) -> list[str]:
    """The keyframe names of ``names_utf8`` cut at ``names_offsets``: valid UTF-8 and unique.

    Raises:
        MapFormatError: offsets out of order or range, invalid UTF-8, a repeated name.
    """
    if len(offsets) != num_keyframes + 1:
        raise _fail(path, f"'names_offsets' has {len(offsets)} entries for {num_keyframes} keyframes")
    _csr(offsets, len(raw), "names_offsets", path)
    names = []
    for k, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        try:
            names.append(raw[a:b].decode("utf-8"))
        except UnicodeDecodeError:
            raise _fail(path, f"the name of keyframe {k} in 'names_utf8' is not valid UTF-8") from None
    if len(set(names)) != len(names):
        seen, dup = set(), ""
        for n in names:
            if n in seen:
                dup = n
                break
            seen.add(n)
        raise _fail(path, f"keyframe name '{dup[:80]}' appears twice in 'names_utf8'")
    return names


def check_metadata(text: str, path) -> dict:
    """The header's ``metadata_json``: a JSON object whose known keys have their types.

    Raises:
        MapFormatError: not JSON, not an object, a known key of another type.
    """
    try:
        meta = json.loads(text or "{}")
    except ValueError as e:
        raise _fail(path, f"its metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise _fail(path, f"its metadata is a JSON {type(meta).__name__}, not an object")
    for key, kind in METADATA_TYPES.items():
        if key in meta and meta[key] is not None and not isinstance(meta[key], kind):
            raise _fail(path, f"its metadata's '{key}' is a {type(meta[key]).__name__}, not a {kind.__name__}")
    for rec in meta.get("camera_calibration") or []:
        try:
            o = rec["original"]
            ok = (isinstance(o, dict) and isinstance(o["model"], str) and isinstance(o["width"], int)
                  and isinstance(o["height"], int) and len(o["params"]) == len(rec["corrected_params"])
                  and np.all(np.isfinite(np.asarray(o["params"], np.float64)))
                  and np.all(np.isfinite(np.asarray(rec["corrected_params"], np.float64))))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _fail(path, "its metadata's 'camera_calibration' holds a record that is not a camera correction")
    return meta


def check_values(a: dict, num_cameras: int, global_state: dict, path) -> None:
    """What a localizer trusts, checked at opening, before the
    :class:`~global_loc.map.index.MapIndex` is made of it.

    Args:
        a: the map's arrays, by the names of ``MapIndex``'s fields (``q_wxyz``, ``t``,
            ``camera_index``, ``obs_offsets``, ...; ``names`` a list), plus ``point_covariances``
            and ``point_noise_px`` where the file keeps them.
        num_cameras: the cameras of the header.
        global_state: the global descriptor's learned arrays.

    Cost: one pass over the keyframes, the observations' offsets, keypoints and point indices,
    and the points (no descriptor is read): ``benchmarks/scale.py --only-open`` times it on a
    10 k-keyframe map.

    Raises:
        MapFormatError: naming the array and the problem.
    """
    q, t = np.asarray(a["q_wxyz"], np.float64), np.asarray(a["t"], np.float64)
    K, P, O = len(q), len(a["points_xyz"]), len(a["obs_point_index"])
    finite = np.isfinite(q).all(1) & np.isfinite(t).all(1)
    if not finite.all():
        raise _fail(path, f"'cam_from_world' of keyframe {int(np.flatnonzero(~finite)[0])} is not finite")
    norms = np.linalg.norm(q, axis=1)
    if K and np.any(np.abs(norms - 1.0) > 1e-4):
        bad = int(np.argmax(np.abs(norms - 1.0)))
        raise _fail(path, f"'cam_from_world' of keyframe {bad} has a quaternion of norm {norms[bad]:.6g}, not 1")
    if K and np.any(np.abs(t) > 1e9):
        raise _fail(path, "'cam_from_world' holds a translation beyond 1e9 m")
    _in_range(np.asarray(a["camera_index"]), num_cameras, "camera_index", "cameras of its header", path)
    _csr(np.asarray(a["obs_offsets"]), O, "obs_offsets", path)
    _in_range(np.asarray(a["obs_point_index"]), P, "obs_point_index", "points", path)
    if O and not np.all(np.isfinite(a["obs_keypoints"])):
        raise _fail(path, "'obs_keypoints' holds values that are not finite")
    xyz = np.asarray(a["points_xyz"])
    if P and not np.all(np.isfinite(xyz)):
        raise _fail(path, f"'points_xyz' of point {int(np.flatnonzero(~np.isfinite(xyz).all(1))[0])} is not finite")
    if P and np.any(np.abs(xyz) > 1e9):
        raise _fail(path, "'points_xyz' holds a coordinate beyond 1e9 m")
    if a.get("free_offsets") is not None and a.get("free_keypoints") is not None:
        _csr(np.asarray(a["free_offsets"]), len(a["free_keypoints"]), "free_offsets", path)
        if not np.all(np.isfinite(a["free_keypoints"])):
            raise _fail(path, "'free_keypoints' holds values that are not finite")
    names = a.get("names") or []
    if len(set(names)) != len(names):
        raise _fail(path, "a keyframe name appears twice")
    for k, v in global_state.items():
        if np.asarray(v).dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise _fail(path, f"the global descriptor's '{k}' holds values that are not finite")
    if a.get("point_covariances") is not None:
        cov = np.asarray(a["point_covariances"])
        if cov.shape != (P, 3, 3):
            raise _fail(path, f"'point_covariances' has shape {cov.shape} for {P} points")
        check_point_covariances(cov, float(np.asarray(a["point_noise_px"]).reshape(-1)[0]), path)


def make_cameras(header_cameras, path) -> list:
    """The header's cameras as :class:`~global_loc.geometry.camera.Camera`: finite parameters,
    positive sizes and focal lengths, principal points within an image size of the image.

    Raises:
        MapFormatError: naming the camera.
    """
    from ..errors import CameraModelError
    from ..geometry.camera import CAMERA_MODELS, Camera

    out = []
    for k, c in enumerate(header_cameras):
        params = np.array(c.params, np.float64)
        if not np.all(np.isfinite(params)):
            raise _fail(path, f"camera {k} ({c.model}) has parameters that are not finite: {params.tolist()[:8]}")
        if not (0 < c.width <= 1 << 16 and 0 < c.height <= 1 << 16):
            raise _fail(path, f"camera {k} is {c.width}x{c.height} pixels")
        try:
            cam = Camera(c.model, c.width, c.height, params)
        except CameraModelError as e:
            raise _fail(path, f"camera {k}: {e}") from None
        names = list(CAMERA_MODELS[cam.model])
        for axis, size in (("cx", cam.width), ("cy", cam.height)):
            if axis in names and not -size <= params[names.index(axis)] <= 2 * size:
                raise _fail(path, f"camera {k}'s principal point {axis} = {params[names.index(axis)]:g} lies far "
                                  f"outside its {cam.width}x{cam.height} image")
        out.append(cam)
    return out


def check_point_covariances(cov: np.ndarray, noise_px: float, path, chunk: int = 1 << 18) -> None:
    """(P, 3, 3): each finite one symmetric, positive semi-definite (every principal minor of
    the 3x3 non-negative, to a tolerance), its variances at most :data:`MAX_POINT_VARIANCE_M2`
    (a non-finite one is a point the map could not determine, which counts as exact, as
    :meth:`~global_loc.map.index.MapIndex.point_covariances` writes it); the noise finite and
    positive. In chunks of ``chunk`` points.

    Raises:
        MapFormatError: naming the first point whose covariance fails.
    """
    if not (np.isfinite(noise_px) and 0 < noise_px < 1e3):
        raise _fail(path, f"'point_noise_px' is {noise_px}, not a noise in pixels")
    for s0 in range(0, len(cov), chunk):
        c = np.asarray(cov[s0:s0 + chunk])
        finite = np.isfinite(c).all((1, 2))
        if not finite.all():  # a point the map could not determine: it counts as exact (PnP drops it)
            keep = np.flatnonzero(finite)
            c, s0_rows = c[keep], s0 + keep
        else:
            s0_rows = s0 + np.arange(len(c))
        if not len(c):
            continue
        d = np.stack([c[:, 0, 0], c[:, 1, 1], c[:, 2, 2]], 1)
        if np.any(d > MAX_POINT_VARIANCE_M2):
            raise _fail(path, f"'point_covariances' of point {int(s0_rows[np.argmax(d.max(1))])} has a variance beyond "
                              f"{MAX_POINT_VARIANCE_M2:g} m^2")
        scale = np.maximum(np.abs(c).max(axis=(1, 2)), 1e-30)
        asym = np.abs(c - np.transpose(c, (0, 2, 1))).max(axis=(1, 2)) / scale
        if np.any(asym > 1e-3):
            raise _fail(path, f"'point_covariances' of point {int(s0_rows[np.argmax(asym)])} is not symmetric")
        c = c.astype(np.float64) / scale[:, None, None]  # unit scale: one tolerance for every point
        a, b, e = c[:, 0, 0], c[:, 1, 1], c[:, 2, 2]
        x, y, z = c[:, 0, 1], c[:, 0, 2], c[:, 1, 2]
        minors = np.stack([a * b - x * x, a * e - y * y, b * e - z * z], 1)
        det = a * (b * e - z * z) - x * (x * e - z * y) + y * (x * z - b * y)
        tol = 1e-5
        bad = (np.stack([a, b, e], 1) < -tol).any(1) | (minors < -tol).any(1) | (det < -tol)
        if np.any(bad):
            raise _fail(path, f"'point_covariances' of point {int(s0_rows[np.flatnonzero(bad)[0]])} is not positive "
                              "semi-definite")
