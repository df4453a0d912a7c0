"""Reading and writing maps: the format of ``global_loc_map.proto``.

Version 3 (written now): a header record, a directory record, the arrays as raw aligned bytes,
a footer. :func:`read_map` memory-maps the file and gives the arrays as read-only views of it,
without copying: a map opens in a time that does not grow with its arrays, and the memory a
localizer uses grows with the pages it touches. Every array has a CRC-32: checked at opening
for maps up to ``VERIFY_MAX_BYTES`` (``verify="auto"``), on demand for larger ones
(:func:`verify_map`, ``read_map(path, verify=True)``). Versions 1 and 2 (keyframe and point
batches in protobuf records) are read by copying, as before.

The file is written to a temporary name beside the target and renamed when complete, so an
interrupted write never leaves a half map under the final name, nor destroys the old map.
"""
from __future__ import annotations

import json
import logging
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from .. import __version__
from ..errors import MapFormatError
from . import global_loc_map_pb2 as pb
from .index import MapIndex
from .validate import REBUILD, check_directory, check_metadata, check_names, check_values, make_cameras

logger = logging.getLogger(__name__)

MAGIC = b"GLOCMAP\x00"
SCHEMA_VERSION = 3
#: Versions this release reads: version 1 maps lack reference features (PnP-only localization),
#: version 1 and 2 maps keep no free keypoints (no pose from neighbours without 3D points).
READABLE_VERSIONS = (1, 2, 3)
#: Target size of one record's payload in the version 2 layout (kept for the tests of old maps).
DEFAULT_CHUNK_BYTES = 64 << 20
#: Alignment of the arrays of a version 3 map, bytes.
ALIGN = 64
#: ``read_map(verify="auto")`` checks every array's CRC of maps up to this size, bytes.
VERIFY_MAX_BYTES = 256 << 20

_PREAMBLE = struct.Struct("<8sI")
_RECORD_HEAD = struct.Struct("<QI")

_DTYPES = {
    np.dtype(np.uint8): pb.Array.UINT8,
    np.dtype(np.int32): pb.Array.INT32,
    np.dtype(np.int64): pb.Array.INT64,
    np.dtype(np.float16): pb.Array.FLOAT16,
    np.dtype(np.float32): pb.Array.FLOAT32,
    np.dtype(np.float64): pb.Array.FLOAT64,
}
_NP_DTYPES = {v: k.newbyteorder("<") for k, v in _DTYPES.items()}


def array_to_pb(a: np.ndarray, out: "pb.Array | None" = None) -> "pb.Array":
    """Serialise a numpy array (one of the dtypes of ``Array.DType``) into ``Array``."""
    a = np.asarray(a)
    if a.dtype not in _DTYPES:
        raise TypeError(f"cannot store dtype {a.dtype} in a map")
    out = pb.Array() if out is None else out
    out.dtype = _DTYPES[a.dtype]
    out.shape[:] = list(a.shape)
    out.data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    return out


def array_from_pb(msg: "pb.Array", what: str = "array") -> np.ndarray:
    """The numpy array held in ``Array`` (native byte order, read-only view where possible).

    Raises:
        MapFormatError: for an unknown dtype or data of the wrong size.
    """
    if msg.dtype not in _NP_DTYPES:
        raise MapFormatError(f"{what}: unknown array dtype {msg.dtype}")
    dt = _NP_DTYPES[msg.dtype]
    shape = tuple(int(s) for s in msg.shape)
    n = int(np.prod(shape)) if shape else 1
    if len(msg.data) != n * dt.itemsize:
        raise MapFormatError(
            f"{what}: {len(msg.data)} bytes for shape {shape} of {dt}; the map is corrupt"
        )
    a = np.frombuffer(msg.data, dtype=dt).reshape(shape)
    return a if dt.isnative else a.astype(dt.newbyteorder("="))


# --------------------------------------------------------------------------------------------
def _write_record(f: BinaryIO, record: "pb.Record") -> None:
    payload = record.SerializeToString()
    f.write(_RECORD_HEAD.pack(len(payload), zlib.crc32(payload)))
    f.write(payload)


def _batches(sizes: np.ndarray, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """Split rows with the given byte sizes into ``[start, end)`` runs of about chunk_bytes."""
    start, acc = 0, 0
    for i, s in enumerate(sizes):
        if acc and acc + s > chunk_bytes:
            yield start, i
            start, acc = i, 0
        acc += int(s)
    if start < len(sizes) or len(sizes) == 0:
        yield start, len(sizes)


def write_map(
    map_index: MapIndex,
    path: str | os.PathLike,
    descriptor_dtype: str = "float16",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    _version: int = SCHEMA_VERSION,
) -> Path:
    """Write ``map_index`` to ``path`` (atomically: a temporary file, then a rename), in the
    version 3 layout.

    Args:
        descriptor_dtype: ``float16`` (default; loses nothing measurable, see the tests) or
            ``float32`` for the local descriptors.
        chunk_bytes: unused by version 3 (its arrays are not split into records); kept for
            callers written for version 2.
    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = map_index
    ddt = np.dtype(descriptor_dtype)
    if ddt not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ValueError("descriptor_dtype must be float16 or float32")

    header = pb.Record()
    h = header.header
    h.schema_version = _version
    h.created_by = f"global_loc {__version__}"
    h.frame_id = m.frame_id
    for info, msg in ((m.local_features, h.local_features), (m.global_descriptor, h.global_descriptor)):
        msg.name = str(info.get("name", ""))
        msg.dim = int(info.get("dim", 0))
        msg.conf_json = json.dumps(info.get("conf", {}), sort_keys=True)
    if m.point_features is not None and m.dense_features.get("name"):
        d = h.dense_features
        d.name = str(m.dense_features["name"])
        d.dim = int(m.point_features.shape[1])
        d.conf_json = json.dumps(m.dense_features.get("conf", {}), sort_keys=True)
    for k, v in m.global_state.items():
        array_to_pb(np.asarray(v), h.global_state[k])
    if m.retrieval_index is not None:
        h.retrieval_index.kind = m.retrieval_index.kind
        h.retrieval_index.params_json = m.retrieval_index.params_json()
        if _version < 3:
            array_to_pb(np.asarray(m.retrieval_index.data, np.uint8), h.retrieval_index.data)
    for cam in m.cameras:
        c = h.cameras.add()
        c.model, c.width, c.height = cam.model, cam.width, cam.height
        c.params[:] = cam.params.tolist()
    h.num_keyframes = m.num_keyframes
    h.num_points3D = m.num_points3D
    h.num_observations = m.num_observations
    h.metadata_json = json.dumps(m.metadata, sort_keys=True, default=str)

    tmp = path.with_name(path.name + ".part")
    try:
        if _version >= 3:
            _write_arrays(tmp, m, header, ddt)
        else:  # the batched layout of versions 1 and 2, for the tests that read old maps
            _write_records(tmp, m, header, ddt, chunk_bytes)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def _map_arrays(m: MapIndex, ddt: np.dtype) -> list[tuple[str, np.ndarray]]:
    """The arrays of a version 3 map, named as in ``ArrayEntry``, little-endian and contiguous."""
    names = [n.encode("utf-8") for n in m.names]
    name_offsets = np.zeros(len(names) + 1, np.int64)
    np.cumsum([len(n) for n in names], out=name_offsets[1:])
    out = [
        ("keyframe_ids", m.keyframe_ids.astype(np.int64)),
        ("names_utf8", np.frombuffer(b"".join(names), np.uint8)),
        ("names_offsets", name_offsets),
        ("stamps", m.stamps.astype(np.float64)),
        ("cam_from_world", np.concatenate([m.q_wxyz, m.t], axis=1).astype(np.float64)),
        ("camera_index", m.camera_index.astype(np.int32)),
        ("global_descriptors", m.global_descriptors.astype(np.float32)),
        ("obs_offsets", m.obs_offsets.astype(np.int64)),
        ("obs_keypoints", m.obs_keypoints.astype(np.float32)),
        ("obs_descriptors", m.obs_descriptors.astype(ddt)),
        ("obs_point_index", m.obs_point_index.astype(np.int64)),
        ("point_ids", m.point_ids.astype(np.int64)),
        ("points_xyz", m.points_xyz.astype(np.float64)),
        ("points_rgb", m.points_rgb.astype(np.uint8)),
        ("points_error", m.points_error.astype(np.float32)),
    ]
    if m.point_features is not None and m.dense_features.get("name"):
        out.append(("point_features", m.point_features.astype(np.float16)))
    if m.num_free_features:
        out += [("free_offsets", m.free_offsets.astype(np.int64)),
                ("free_keypoints", m.free_keypoints.astype(np.float32)),
                ("free_descriptors", m.free_descriptors.astype(ddt))]
    if m.retrieval_index is not None:
        out.append(("retrieval_index", np.asarray(m.retrieval_index.data, np.uint8)))
    stored = m.stored_point_covariances()
    if stored is not None:
        out += [("point_covariances", np.asarray(stored[0], np.float32)),
                ("point_noise_px", np.array([stored[1]], np.float64))]
    return [(k, np.ascontiguousarray(v, v.dtype.newbyteorder("<"))) for k, v in out]


def _bytes_of(a: np.ndarray) -> np.ndarray:
    """The bytes of a contiguous array, without copying (empty arrays included)."""
    return a.reshape(-1).view(np.uint8)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _write_arrays(path: Path, m: MapIndex, header, ddt) -> None:
    """Version 3: header, directory, the arrays at aligned offsets, footer."""
    arrays = _map_arrays(m, ddt)
    directory = pb.Record()
    for name, a in arrays:
        e = directory.directory.arrays.add()
        e.name, e.dtype = name, _DTYPES[a.dtype.newbyteorder("=")]
        e.shape[:] = list(a.shape)
        e.nbytes = a.nbytes
        e.crc32 = zlib.crc32(_bytes_of(a))
        e.offset = ALIGN  # a placeholder: proto3 leaves out zeros, and any other fixed64 takes 8 bytes
    head = header.SerializeToString()
    # fixed64 offsets: the directory's size does not depend on their (non-zero) values
    start = _PREAMBLE.size + 2 * _RECORD_HEAD.size + len(head) + directory.ByteSize()
    pos = _aligned(start)
    for e in directory.directory.arrays:
        e.offset = pos
        pos = _aligned(pos + e.nbytes)
    with open(path, "wb") as f:
        f.write(_PREAMBLE.pack(MAGIC, SCHEMA_VERSION))
        _write_record(f, header)
        _write_record(f, directory)
        for (_, a), e in zip(arrays, directory.directory.arrays):
            gap = e.offset - f.tell()
            if gap < 0:  # pragma: no cover - the layout above is wrong
                raise RuntimeError(f"map layout: array '{e.name}' would overlap the one before")
            f.write(b"\0" * gap)
            f.write(_bytes_of(a))
        footer = pb.Record()
        footer.footer.num_keyframes = m.num_keyframes
        footer.footer.num_points3D = m.num_points3D
        footer.footer.num_records = 2
        _write_record(f, footer)
        f.flush()
        os.fsync(f.fileno())


def _write_records(path: Path, m: MapIndex, header, ddt, chunk_bytes: int) -> None:
    num_records = 0
    with open(path, "wb") as f:
        f.write(_PREAMBLE.pack(MAGIC, header.header.schema_version))
        _write_record(f, header)
        num_records += 1

        n_obs = np.diff(m.obs_offsets)
        kf_bytes = n_obs * (8 + 8 + m.obs_descriptors.shape[1] * ddt.itemsize) + (
            m.global_descriptors.shape[1] * 4 + 128
        )
        for a, b in _batches(kf_bytes, chunk_bytes):
            rec = pb.Record()
            kb = rec.keyframes
            kb.first_index = a
            array_to_pb(m.keyframe_ids[a:b].astype(np.int64), kb.ids)
            kb.names.extend(m.names[a:b])
            array_to_pb(m.stamps[a:b].astype(np.float64), kb.stamps)
            array_to_pb(np.concatenate([m.q_wxyz[a:b], m.t[a:b]], axis=1).astype(np.float64),
                        kb.cam_from_world)
            array_to_pb(m.camera_index[a:b].astype(np.int32), kb.camera_index)
            array_to_pb(m.global_descriptors[a:b].astype(np.float32), kb.global_descriptors)
            array_to_pb(n_obs[a:b].astype(np.int64), kb.num_observations)
            o0, o1 = int(m.obs_offsets[a]), int(m.obs_offsets[b])
            array_to_pb(m.obs_keypoints[o0:o1].astype(np.float32), kb.keypoints)
            array_to_pb(m.obs_descriptors[o0:o1].astype(ddt), kb.descriptors)
            array_to_pb(m.obs_point_index[o0:o1].astype(np.int64), kb.point_index)
            _write_record(f, rec)
            num_records += 1

        ref = m.point_features if header.header.dense_features.name else None
        pt_bytes = np.full(m.num_points3D, 8 + 24 + 3 + 4 + (0 if ref is None else 2 * ref.shape[1]))
        for a, b in _batches(pt_bytes, chunk_bytes):
            rec = pb.Record()
            pbt = rec.points
            pbt.first_index = a
            array_to_pb(m.point_ids[a:b].astype(np.int64), pbt.ids)
            array_to_pb(m.points_xyz[a:b].astype(np.float64), pbt.xyz)
            array_to_pb(m.points_rgb[a:b].astype(np.uint8), pbt.rgb)
            array_to_pb(m.points_error[a:b].astype(np.float32), pbt.error)
            if ref is not None:
                array_to_pb(ref[a:b].astype(np.float16), pbt.reference_features)
            _write_record(f, rec)
            num_records += 1

        footer = pb.Record()
        footer.footer.num_keyframes = m.num_keyframes
        footer.footer.num_points3D = m.num_points3D
        footer.footer.num_records = num_records
        _write_record(f, footer)
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------
def _read_records(f: BinaryIO, path: Path) -> Iterator["pb.Record"]:
    while True:
        offset = f.tell()
        head = f.read(_RECORD_HEAD.size)
        if not head:
            raise MapFormatError(
                f"map {path} is truncated: it ends at byte {offset} without its footer; the "
                "map was not completely written. Rebuild it with `global-loc index`"
            )
        if len(head) < _RECORD_HEAD.size:
            raise MapFormatError(f"map {path} is truncated at byte {offset}; rebuild it")
        length, crc = _RECORD_HEAD.unpack(head)
        payload = f.read(length)
        if len(payload) < length:
            raise MapFormatError(
                f"map {path} is truncated: a record at byte {offset} needs {length} bytes, "
                f"{len(payload)} remain. Rebuild it with `global-loc index`"
            )
        if zlib.crc32(payload) != crc:
            raise MapFormatError(
                f"map {path} is corrupt: the checksum of the record at byte {offset} does not "
                "match. Copy the file again or rebuild it"
            )
        rec = pb.Record()
        try:
            rec.ParseFromString(payload)
        except Exception as e:  # protobuf's DecodeError
            raise MapFormatError(f"map {path}: record at byte {offset} cannot be parsed ({e})") from None
        yield rec
        if rec.WhichOneof("body") == "footer":
            return


def read_map_header(path: str | os.PathLike) -> "pb.Header":
    """Only the header of a map (models, cameras, counts), without loading the arrays."""
    path = Path(path)
    with _open_checked(path) as f:
        rec = next(_read_records(f, path))
    if rec.WhichOneof("body") != "header":
        raise MapFormatError(f"map {path} does not start with a header record")
    return rec.header


def _open_checked(path: Path) -> BinaryIO:
    if not path.exists():
        raise MapFormatError(f"map file {path} does not exist; build one with `global-loc index`")
    if path.is_dir():
        raise MapFormatError(f"{path} is a directory, not a map file")
    if not path.is_file():  # a FIFO would block the open for ever, a device read without end
        kind = ("a FIFO (named pipe)" if path.is_fifo() else "a socket" if path.is_socket() else
                "a device" if path.is_block_device() or path.is_char_device() else "not a regular file")
        raise MapFormatError(f"{path} is {kind}, not a map file; give the path of a map written by `global-loc index`")
    f = open(path, "rb")
    pre = f.read(_PREAMBLE.size)
    if len(pre) < _PREAMBLE.size or pre[:8] != MAGIC:
        f.close()
        raise MapFormatError(
            f"{path} is not a global_loc map (its first bytes are not {MAGIC!r}); "
            "build a map with `global-loc index`"
        )
    _, version = _PREAMBLE.unpack(pre)
    if version not in READABLE_VERSIONS:
        f.close()
        raise MapFormatError(
            f"map {path} has schema version {version}, this global_loc {__version__} reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}; rebuild the map with this version's "
            f"`global-loc index` or use the global_loc release that wrote it"
        )
    return f


def read_map(path: str | os.PathLike, verify: bool | str = "auto") -> MapIndex:
    """Load a map written by :func:`write_map`.

    A version 3 map is memory-mapped: its arrays are read-only views of the file, read from disk
    as they are used (see the module docstring).

    Args:
        verify: check every array's CRC-32 now (True), not (False: a later read of damaged
            bytes gives wrong values, not an error; :func:`verify_map` checks on demand), or
            ``"auto"``: for files up to ``VERIFY_MAX_BYTES``. The header, directory and footer
            are always checked. Version 1 and 2 maps are always checked.
    Raises:
        MapFormatError: a missing file, another file type, another schema version, a
            truncated or corrupt file.
    """
    path = Path(path)
    with _open_checked(path) as f:  # the magic and a readable version
        f.seek(0)
        version = _PREAMBLE.unpack(f.read(_PREAMBLE.size))[1]
    if version >= 3:
        return _read_mapped(path, verify)
    return _read_batched(path)


def verify_map(path: str | os.PathLike) -> None:
    """Check every checksum of a map (all its arrays, for version 3).

    Raises:
        MapFormatError: naming the first corrupt part.
    """
    read_map(path, verify=True)


def _record_at(buf, offset: int, path: Path, what: str) -> "pb.Record":
    """The record at byte ``offset`` of ``buf`` (a memory map), its CRC checked."""
    if offset + _RECORD_HEAD.size > len(buf):
        raise MapFormatError(f"map {path} is truncated: its {what} record at byte {offset} is missing; the map "
                             "was not completely written. Rebuild it with `global-loc index`")
    length, crc = _RECORD_HEAD.unpack_from(buf, offset)
    start = offset + _RECORD_HEAD.size
    if start + length > len(buf):
        raise MapFormatError(f"map {path} is truncated: its {what} record at byte {offset} needs {length} bytes, "
                             f"{len(buf) - start} remain. Rebuild it with `global-loc index`")
    payload = memoryview(buf)[start:start + length]
    if zlib.crc32(payload) != crc:
        raise MapFormatError(f"map {path} is corrupt: the checksum of its {what} record at byte {offset} does not "
                             "match. Copy the file again or rebuild it")
    rec = pb.Record()
    try:
        rec.ParseFromString(payload)
    except Exception as e:  # protobuf's DecodeError
        raise MapFormatError(f"map {path}: its {what} record at byte {offset} cannot be parsed ({e})") from None
    finally:
        payload.release()
    if rec.WhichOneof("body") != what:
        raise MapFormatError(f"map {path}: a {rec.WhichOneof('body')} record where its {what} should be")
    return rec


def _read_mapped(path: Path, verify: bool | str) -> MapIndex:
    """A version 3 map, its arrays memory-mapped (read-only, not copied)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    header = _record_at(buf, _PREAMBLE.size, path, "header").header
    pos = _PREAMBLE.size + _RECORD_HEAD.size + _RECORD_HEAD.unpack_from(buf, _PREAMBLE.size)[0]
    entries = list(_record_at(buf, pos, path, "directory").directory.arrays)
    data_start = pos + _RECORD_HEAD.size + _RECORD_HEAD.unpack_from(buf, pos)[0]
    end = max([int(e.offset) + int(e.nbytes) for e in entries], default=data_start)
    footer = _record_at(buf, end, path, "footer").footer
    counts = {"K": int(footer.num_keyframes), "P": int(footer.num_points3D), "O": int(header.num_observations),
              "Dg": int(header.global_descriptor.dim), "Dl": int(header.local_features.dim),
              "Dr": int(header.dense_features.dim) if header.dense_features.name else 0}
    if int(header.num_keyframes) != counts["K"] or int(header.num_points3D) != counts["P"]:
        raise MapFormatError(f"map {path}: its header counts {header.num_keyframes} keyframes and "
                             f"{header.num_points3D} points, its footer {counts['K']} and {counts['P']}; {REBUILD}")
    check_directory(entries, counts, size, data_start, end, _NP_DTYPES, ALIGN, path)
    if verify is True or (verify == "auto" and size <= VERIFY_MAX_BYTES):
        for e in entries:
            with memoryview(buf)[e.offset:e.offset + e.nbytes] as view:
                if zlib.crc32(view) != e.crc32:
                    raise MapFormatError(f"map {path} is corrupt: the checksum of its array '{e.name}' (bytes "
                                         f"{e.offset}-{e.offset + e.nbytes}) does not match. Copy the file again "
                                         "or rebuild it")
    arrays = {}
    for e in entries:
        if e.dtype not in _NP_DTYPES:
            raise MapFormatError(f"map {path}: array '{e.name}' of unknown dtype {e.dtype}")
        dt = _NP_DTYPES[e.dtype]
        shape = tuple(int(x) for x in e.shape)
        n = int(np.prod(shape)) if shape else 1
        if n * dt.itemsize != e.nbytes or e.offset % ALIGN:
            raise MapFormatError(f"map {path}: array '{e.name}' has {e.nbytes} bytes for shape {shape} of {dt}; the "
                                 "map is corrupt, rebuild it")
        a = np.frombuffer(buf, dtype=dt, count=n, offset=int(e.offset)).reshape(shape)
        arrays[e.name] = a if dt.isnative else a.astype(dt.newbyteorder("="))
    need = ("keyframe_ids", "names_utf8", "names_offsets", "stamps", "cam_from_world", "camera_index",
            "global_descriptors", "obs_offsets", "obs_keypoints", "obs_descriptors", "obs_point_index", "point_ids",
            "points_xyz", "points_rgb", "points_error")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise MapFormatError(f"map {path} lacks the arrays {', '.join(missing)}; the map is corrupt, rebuild it")
    names = check_names(arrays["names_utf8"].tobytes(), arrays["names_offsets"], counts["K"], path)
    free = {k: arrays[k] for k in ("free_offsets", "free_keypoints", "free_descriptors") if k in arrays}
    point_features = None
    if header.dense_features.name:
        point_features = arrays.get("point_features")
        if point_features is None or point_features.shape != (len(arrays["point_ids"]), header.dense_features.dim):
            raise MapFormatError(f"map {path}: reference features missing or not ({len(arrays['point_ids'])}, "
                                 f"{header.dense_features.dim}) as its header says; the map is corrupt, rebuild it")
    retrieval = None
    if header.retrieval_index.kind:
        retrieval = _retrieval_index(header, int(footer.num_keyframes), int(header.global_descriptor.dim), path,
                                     arrays.get("retrieval_index"))
    poses = arrays["cam_from_world"]
    return _map_index(path, header, footer, dict(
        keyframe_ids=arrays["keyframe_ids"], names=names, stamps=arrays["stamps"], q_wxyz=poses[:, :4],
        t=poses[:, 4:], camera_index=arrays["camera_index"], global_descriptors=arrays["global_descriptors"],
        obs_offsets=arrays["obs_offsets"], obs_keypoints=arrays["obs_keypoints"],
        obs_descriptors=arrays["obs_descriptors"], obs_point_index=arrays["obs_point_index"],
        point_ids=arrays["point_ids"], points_xyz=arrays["points_xyz"], points_rgb=arrays["points_rgb"],
        points_error=arrays["points_error"], point_features=point_features, retrieval_index=retrieval, **free),
        arrays.get("point_covariances"), arrays.get("point_noise_px"))


def _map_index(path: Path, header, footer, arrays: dict, point_covariances=None, point_noise=None) -> MapIndex:
    """The :class:`MapIndex` of ``arrays`` and what the header says (models, cameras, state,
    frame, metadata), its counts checked against the footer and header, with the points'
    covariances where the file keeps them."""
    cameras = make_cameras(header.cameras, path)
    state = {k: np.array(array_from_pb(v, f"map {path}: {k}")) for k, v in header.global_state.items()}
    check_values({**arrays, "point_covariances": point_covariances, "point_noise_px": point_noise}, len(cameras),
                 state, path)
    try:
        m = MapIndex(
            cameras=cameras,
            local_features=_model_info(header.local_features), global_descriptor=_model_info(header.global_descriptor),
            global_state=state,
            frame_id=header.frame_id or "map", metadata=check_metadata(header.metadata_json, path),
            dense_features=_model_info(header.dense_features) if header.dense_features.name else {},
            **arrays)
        if point_covariances is not None and point_noise is not None:
            m.restore_point_covariances(point_covariances, float(point_noise[0]))
    except Exception as e:
        if isinstance(e, MapFormatError):
            raise
        raise MapFormatError(f"map {path} is inconsistent: {e}; {REBUILD}") from None
    _check_counts(m, header, footer, path)
    return m


def _check_counts(m: MapIndex, header, footer, path) -> None:
    dg, dl = int(header.global_descriptor.dim), int(header.local_features.dim)
    if m.num_keyframes != footer.num_keyframes or m.num_points3D != footer.num_points3D:
        raise MapFormatError(
            f"map {path} is inconsistent: the footer counts {footer.num_keyframes} keyframes "
            f"and {footer.num_points3D} points, {m.num_keyframes} and {m.num_points3D} were read"
        )
    if m.global_descriptors.shape[1] != dg and m.num_keyframes:
        raise MapFormatError(f"map {path}: global descriptors are not {dg}-d as its header says")
    if m.obs_descriptors.shape[1:] != (dl,) and m.num_observations:
        raise MapFormatError(f"map {path}: local descriptors are not {dl}-d as its header says")


def _read_batched(path: Path) -> MapIndex:
    """A version 1 or 2 map: keyframe and point batches in protobuf records, copied."""
    header = None
    kf_batches, pt_batches = [], []
    num_records = 0
    with _open_checked(path) as f:
        for rec in _read_records(f, path):
            body = rec.WhichOneof("body")
            if body == "header":
                header = rec.header
            elif body == "keyframes":
                kf_batches.append(rec.keyframes)
            elif body == "points":
                pt_batches.append(rec.points)
            elif body == "footer":
                footer = rec.footer
                break
            else:
                raise MapFormatError(f"map {path} holds a record of unknown type")
            num_records += 1
    if header is None:
        raise MapFormatError(f"map {path} has no header record")
    if footer.num_records != num_records:
        raise MapFormatError(
            f"map {path} is inconsistent: its footer counts {footer.num_records} records, "
            f"{num_records} were read"
        )

    def cat(arrays, shape_tail, dtype):
        arrays = list(arrays)
        if not arrays:
            return np.zeros((0,) + shape_tail, dtype)
        return np.concatenate(arrays) if len(arrays) > 1 else np.array(arrays[0])

    def arr(msg, what):
        return array_from_pb(msg, f"map {path}: {what}")

    dg = int(header.global_descriptor.dim)
    dl = int(header.local_features.dim)
    names: list[str] = []
    for b in kf_batches:
        names.extend(b.names)
    n_obs = cat((arr(b.num_observations, "num_observations") for b in kf_batches), (), np.int64)
    offsets = np.zeros(len(n_obs) + 1, np.int64)
    np.cumsum(n_obs, out=offsets[1:])
    poses = cat((arr(b.cam_from_world, "poses") for b in kf_batches), (7,), np.float64)
    desc = cat((arr(b.descriptors, "descriptors") for b in kf_batches), (dl,), np.float16)
    return _map_index(path, header, footer, dict(
        keyframe_ids=cat((arr(b.ids, "ids") for b in kf_batches), (), np.int64),
        names=names,
        stamps=cat((arr(b.stamps, "stamps") for b in kf_batches), (), np.float64),
        q_wxyz=poses[:, :4],
        t=poses[:, 4:],
        camera_index=cat((arr(b.camera_index, "camera_index") for b in kf_batches), (), np.int32),
        global_descriptors=cat((arr(b.global_descriptors, "global descriptors") for b in kf_batches), (dg,), np.float32),
        obs_offsets=offsets,
        obs_keypoints=cat((arr(b.keypoints, "keypoints") for b in kf_batches), (2,), np.float32),
        obs_descriptors=desc,
        obs_point_index=cat((arr(b.point_index, "point_index") for b in kf_batches), (), np.int64),
        point_ids=cat((arr(b.ids, "point ids") for b in pt_batches), (), np.int64),
        points_xyz=cat((arr(b.xyz, "xyz") for b in pt_batches), (3,), np.float64),
        points_rgb=cat((arr(b.rgb, "rgb") for b in pt_batches), (3,), np.uint8),
        points_error=cat((arr(b.error, "error") for b in pt_batches), (), np.float32),
        point_features=_point_features(header, pt_batches, path)))


def _retrieval_index(header, num_keyframes: int, dim: int, path, data: np.ndarray | None):
    """The map's approximate retrieval index (a ``TrainedIndex``), or None for exact search."""
    ri = header.retrieval_index
    if not ri.kind:
        return None
    if data is None:
        raise MapFormatError(f"map {path}: its header names a {ri.kind} retrieval index but the map holds none; "
                             "the map is corrupt, rebuild it")
    from ..retrieval.index import KINDS, TrainedIndex

    params = json.loads(ri.params_json or "{}")
    if ri.kind not in KINDS:
        raise MapFormatError(f"map {path}: retrieval index of unknown kind '{ri.kind}' (this global_loc knows "
                             f"{', '.join(KINDS)}); rebuild the map or use the release that wrote it")
    if params.get("size") != num_keyframes or params.get("dim") != dim:
        raise MapFormatError(f"map {path}: its retrieval index holds {params.get('size')} {params.get('dim')}-d "
                             f"descriptors, the map {num_keyframes} {dim}-d ones; the map is corrupt, rebuild it")
    return TrainedIndex(ri.kind, params, data)


def _point_features(header, pt_batches, path) -> np.ndarray | None:
    """The points' reference features, or None when the header names no dense source."""
    if not header.dense_features.name:
        return None
    dr = int(header.dense_features.dim)
    parts = [array_from_pb(b.reference_features, f"map {path}: reference features") for b in pt_batches]
    for p, b in zip(parts, pt_batches):
        n = int(b.ids.shape[0]) if len(b.ids.shape) else 0
        if p.shape != (n, dr):
            raise MapFormatError(
                f"map {path}: reference features of shape {p.shape}, expected ({n}, {dr}) as its "
                "header says; the map is corrupt, rebuild it")
    if not parts:
        return np.zeros((0, dr), np.float16)
    return np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])


def _model_info(msg: "pb.ModelInfo") -> dict:
    return {"name": msg.name, "dim": int(msg.dim), "conf": json.loads(msg.conf_json or "{}")}
