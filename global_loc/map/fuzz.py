"""Mutated map files, for the robustness test and ``benchmarks/fuzz_maps.py``.

A map file is untrusted input (:mod:`global_loc.map.validate`). These generators make, from one
good version 3 map, inputs of five families, each with a fixed seed:

- ``truncation``: the file cut at a random byte;
- ``bitflip``: 1 to 8 random bits flipped anywhere (checksums then disagree);
- ``directory``: one directory entry crafted (shape, dtype, offset, size, pointing at another
  array), the directory's checksum recomputed;
- ``payload``: values of one array edited (NaN, inf, 0, huge, out-of-range indices, invalid
  UTF-8), the array's and the directory's checksums recomputed;
- ``header``: the header edited (metadata that is not an object or of wrong types, counts,
  descriptor sizes, camera parameters), its checksum recomputed and the arrays laid out again.

Every input is bytes; what a reader must do with each is give a clean
:class:`~global_loc.errors.GlobalLocError` or a map that localizes as well as the original (or
says "not localized").
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from . import global_loc_map_pb2 as pb
from .storage import _NP_DTYPES, _PREAMBLE, _RECORD_HEAD, ALIGN, MAGIC, SCHEMA_VERSION

FAMILIES = ("truncation", "bitflip", "directory", "payload", "header")


@dataclass
class MapParts:
    """A version 3 map file taken apart: its header, its directory entries and each array's bytes."""

    header: "pb.Record"
    entries: list
    data: dict[str, bytes]
    footer: "pb.Record"

    @classmethod
    def parse(cls, raw: bytes) -> "MapParts":
        def record(pos):
            n, _ = _RECORD_HEAD.unpack_from(raw, pos)
            r = pb.Record()
            r.ParseFromString(raw[pos + _RECORD_HEAD.size:pos + _RECORD_HEAD.size + n])
            return r, pos + _RECORD_HEAD.size + n

        header, pos = record(_PREAMBLE.size)
        directory, _ = record(pos)
        entries = list(directory.directory.arrays)
        data = {e.name: raw[e.offset:e.offset + e.nbytes] for e in entries}
        end = max(int(e.offset + e.nbytes) for e in entries)
        footer, _ = record(end)
        return cls(header, entries, data, footer)

    def layout(self, entries=None, recompute_crc: bool = True) -> bytes:
        """The file, arrays laid out again at aligned offsets as ``write_map`` does, every
        checksum recomputed (with ``entries`` given: those entries' offsets, sizes and shapes
        are kept as they are, only the directory's own checksum is recomputed)."""
        head = _record(self.header)
        d = pb.Record()
        crafted = entries is not None
        for e in (entries if crafted else self.entries):
            n = d.directory.arrays.add()
            n.CopyFrom(e)
            if not crafted:
                n.nbytes = len(self.data[e.name])
                if recompute_crc:
                    n.crc32 = zlib.crc32(self.data[e.name])
                n.offset = ALIGN
        start = _PREAMBLE.size + len(head) + _RECORD_HEAD.size + d.ByteSize()
        shift = 0
        if not crafted:
            pos = _aligned(start)
            for n in d.directory.arrays:
                n.offset = pos
                pos = _aligned(pos + n.nbytes)
        else:  # a crafted directory that grew past the first array: every offset moves by the same
            shift = max(0, _aligned(start) - min(int(e.offset) for e in self.entries))
            for n in d.directory.arrays:
                n.offset = min(int(n.offset) + shift, 2**64 - 1)
        out = bytearray(_PREAMBLE.pack(MAGIC, SCHEMA_VERSION) + head + _record(d))
        placed = [(int(e.offset) + shift, e) for e in self.entries] if crafted else \
            [(int(n.offset), n) for n in d.directory.arrays]
        for offset, e in placed:  # the bytes stay where the original layout put them
            blob = self.data[e.name]
            if len(out) < offset:
                out += b"\0" * (offset - len(out))
            out[offset:offset + len(blob)] = blob
        # the footer follows the last array (crafted entries: where the original layout ends it)
        end = max(offset + len(self.data[e.name]) for offset, e in placed)
        if len(out) < end:
            out += b"\0" * (end - len(out))
        out = out[:end] + _record(self.footer)
        return bytes(out)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _record(rec: "pb.Record") -> bytes:
    payload = rec.SerializeToString()
    return _RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def mutations(raw: bytes, family: str, count: int, seed: int = 0):
    """``count`` mutated versions of the map file ``raw``: yields ``(description, bytes)``."""
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    parts = MapParts.parse(raw)
    for _ in range(count):
        yield globals()[f"_{family}"](raw, parts, rng)


def _truncation(raw, parts, rng):
    cut = int(rng.integers(0, len(raw)))
    return f"truncated at {cut}", raw[:cut]


def _bitflip(raw, parts, rng):
    out = bytearray(raw)
    flips = int(rng.integers(1, 9))
    for _ in range(flips):
        i = int(rng.integers(0, len(out)))
        out[i] ^= 1 << int(rng.integers(0, 8))
    return f"{flips} bit(s) flipped", bytes(out)


def _directory(raw, parts, rng):
    base = MapParts.parse(parts.layout())  # the original layout, offsets known
    entries = [pb.ArrayEntry() for _ in base.entries]
    for n, e in zip(entries, base.entries):
        n.CopyFrom(e)
    k = int(rng.integers(0, len(entries)))
    e = entries[k]
    other = entries[int(rng.integers(0, len(entries)))]
    kind = int(rng.integers(0, 9))
    big = [0, 1, 2**31, 2**32, 2**40, 2**63]
    if kind == 0:  # another shape, same bytes or not
        dims = int(rng.integers(0, 4))
        e.shape[:] = [int(rng.choice([0, 1, 2, 3, 7, 24, 161, *big[2:]])) for _ in range(dims)]
        what = f"shape {list(e.shape)}"
    elif kind == 1:  # a flattened or extended shape with the same bytes
        n = int(np.prod([int(x) for x in e.shape])) if len(e.shape) else 1
        e.shape[:] = [n] if rng.random() < 0.5 else [*list(e.shape), 1, 1]
        what = f"shape {list(e.shape)} (same bytes)"
    elif kind == 2:
        e.dtype = int(rng.choice(list(_NP_DTYPES) + [99]))
        what = f"dtype {e.dtype}"
    elif kind == 3:  # offset at another array
        e.offset = other.offset
        what = f"offset at '{other.name}'"
    elif kind == 4:
        e.offset = int(rng.choice([0, 8, ALIGN, e.offset + 1, e.offset + ALIGN, len(raw), 2**62]))
        what = f"offset {e.offset}"
    elif kind == 5:
        e.nbytes = int(rng.choice([0, 1, e.nbytes - 1, e.nbytes + 1, e.nbytes * 2, *big[3:]]))
        what = f"nbytes {e.nbytes}"
    elif kind == 6:  # the shape and nbytes of another array
        e.shape[:] = list(other.shape)
        e.nbytes = other.nbytes
        e.dtype = other.dtype
        what = f"shape and size of '{other.name}'"
    elif kind == 7:  # a second entry of the same name, or an unknown name
        extra = entries[int(rng.integers(0, len(entries)))]
        dup = pb.ArrayEntry()
        dup.CopyFrom(extra)
        if rng.random() < 0.5:
            dup.name = "mystery"
        entries.append(dup)
        what = f"extra entry '{dup.name}'"
    else:  # an entry removed
        gone = entries.pop(k)
        what = f"entry '{gone.name}' removed"
    if kind not in (7, 8):
        what = f"'{e.name}': {what}"
    return what, base.layout(entries)


def _edit_values(a: np.ndarray, rng, name: str):
    """A copy of ``a`` with a few values replaced; returns ``(array, description)``."""
    a = np.array(a)
    if a.size == 0:
        return a, "empty"
    flat = a.reshape(-1)
    idx = rng.integers(0, flat.size, int(rng.integers(1, 4)))
    if a.dtype.kind == "f":
        v = rng.choice([np.nan, np.inf, -np.inf, 0.0, 1e30, -1e30, 1e-30])
    elif a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        v = rng.choice([-1, info.max, info.min if info.min < 0 else 0, int(flat.max()) + 1 if flat.size else 1, 0])
        v = np.clip(v, info.min, info.max)
    else:
        v = 0
    with np.errstate(over="ignore", invalid="ignore"):  # 1e30 into float16 is inf: as meant
        flat[idx] = v
    return a, f"{len(idx)} value(s) set to {v}"


def _payload(raw, parts, rng):
    base = MapParts.parse(parts.layout())
    e = base.entries[int(rng.integers(0, len(base.entries)))]
    dt = _NP_DTYPES[e.dtype]
    a = np.frombuffer(base.data[e.name], dtype=dt).reshape(tuple(int(x) for x in e.shape))
    if e.name == "names_utf8" and rng.random() < 0.5 and a.size:
        b = bytearray(a.tobytes())
        b[int(rng.integers(0, len(b)))] = 0xFF  # never valid in UTF-8
        new, what = np.frombuffer(bytes(b), np.uint8), "an invalid UTF-8 byte"
    elif e.name == "cam_from_world" and rng.random() < 0.5 and a.size:
        new = np.array(a)
        new[int(rng.integers(0, len(new))), :4] = 0.0
        what = "a zero quaternion"
    elif e.name == "point_covariances" and rng.random() < 0.5 and a.size:
        new = np.array(a)
        i = int(rng.integers(0, len(new)))
        new[i] = rng.choice([-1.0, 1e30]) * np.eye(3) if rng.random() < 0.7 else np.array(
            [[1, 2, 0], [0, 1, 0], [0, 0, 1]], a.dtype)
        what = "a covariance not positive, huge or asymmetric"
    else:
        new, what = _edit_values(a, rng, e.name)
    base.data[e.name] = np.ascontiguousarray(new, dt).tobytes()
    return f"'{e.name}': {what}", base.layout()


def _header(raw, parts, rng):
    base = MapParts.parse(parts.layout())
    h = base.header.header
    kind = int(rng.integers(0, 8))
    if kind == 0:
        h.metadata_json = str(rng.choice(['[1, 2]', '"text"', '42', 'null', '{', '{"preset": [1]}',
                                          '{"camera_calibration": {"a": 1}}', '{"skipped": 3}']))
        what = f"metadata {h.metadata_json}"
    elif kind == 1:
        h.num_observations = int(rng.choice([0, h.num_observations + 1, 2**40]))
        what = f"num_observations {h.num_observations}"
    elif kind == 2:
        h.global_descriptor.dim = int(rng.choice([0, 1, h.global_descriptor.dim * 2]))
        what = f"global descriptor dim {h.global_descriptor.dim}"
    elif kind == 3:
        h.local_features.dim = int(rng.choice([0, 64, 256]))
        what = f"local feature dim {h.local_features.dim}"
    elif kind == 4 and len(h.cameras):
        c = h.cameras[0]
        c.params[int(rng.integers(0, len(c.params)))] = float(rng.choice([np.nan, np.inf, -500.0, 0.0, 1e30]))
        what = f"camera params {list(c.params)}"
    elif kind == 5 and len(h.cameras):
        c = h.cameras[0]
        c.width, c.height = int(rng.choice([0, 1, 2**31 - 1])), int(rng.choice([0, 480]))
        what = f"camera size {c.width}x{c.height}"
    elif kind == 6:
        h.num_keyframes = int(rng.choice([0, h.num_keyframes + 1]))
        what = f"num_keyframes {h.num_keyframes}"
    else:
        h.local_features.conf_json = str(rng.choice(['[]', '{"max_keypoints": "many"}', '{', '{"nope": 1}']))
        what = f"local features conf {h.local_features.conf_json}"
    return what, base.layout()

