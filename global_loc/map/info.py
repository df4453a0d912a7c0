"""What a map file holds, for ``global-loc map info``: the header's models and counts, the
cameras, where the keyframes lie, what the map was built from and how long each build stage took.

The arrays are memory-mapped (schema version 3), so a description of a large map reads little
more than its header; ``verify=True`` reads every array once to check its CRC-32.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .storage import read_map, read_map_header


def map_info(path: str | os.PathLike, verify: bool = False, keyframes: bool = False) -> dict:
    """Describe a map file.

    Args:
        path: a map written by ``global-loc index`` (any readable schema version).
        verify: check the checksum of every array now (otherwise only the header, directory
            and footer records are checked, as :func:`read_map` does for large files).
        keyframes: also list every keyframe (``keyframe_list``: name, id, stamp, camera row).
    Returns:
        A JSON-serialisable dict: ``path``, ``size_bytes``, ``schema_version``, ``created_by``,
        ``created_at``, ``frame_id``, ``preset``, ``local_features`` / ``global_descriptor`` /
        ``dense_features`` (name and dimension), ``retrieval_index`` (kind or ``"exact"``),
        ``cameras`` (model, width, height, params in pixels), ``keyframes``, ``points3D``,
        ``observations``, ``mean_track_length``, ``free_keypoints``, ``stamps`` (first and
        last keyframe stamp, seconds, or None where the keyframes have none),
        ``camera_centres_min`` / ``_max`` (metres, map frame: the bounding box of the keyframes'
        optical centres), ``source`` and ``build`` (from the build's metadata, as recorded),
        ``edits`` (what ``global-loc map`` did to it since the build), ``verified`` (whether
        every array's checksum was checked).
    Raises:
        MapFormatError: not a map, another schema version, a truncated or corrupt file (with
            ``verify``, also a corrupt array).
    """
    path = Path(path)
    header = read_map_header(path)
    m = read_map(path, verify=True if verify else "auto")
    meta = m.metadata or {}
    observed = int(np.unique(np.asarray(m.obs_point_index)).size) if m.num_observations else 0
    centres = _camera_centres(np.asarray(m.q_wxyz, np.float64), np.asarray(m.t, np.float64))
    stamps = np.asarray(m.stamps, np.float64)
    known = stamps[np.isfinite(stamps)]
    preset = meta.get("preset") or {}
    stats = meta.get("stats") or {}
    info = {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "schema_version": int(header.schema_version),
        "created_by": header.created_by or meta.get("created_by", ""),
        "created_at": meta.get("created_at", ""),
        "frame_id": m.frame_id,
        "preset": preset.get("name", ""),
        "local_features": {"name": m.local_features.get("name"), "dim": m.local_features.get("dim")},
        "global_descriptor": {"name": m.global_descriptor.get("name"), "dim": m.global_descriptor.get("dim")},
        "dense_features": {"name": m.dense_features.get("name"), "dim": m.dense_features.get("dim")}
        if m.dense_features.get("name") else None,
        "retrieval_index": m.retrieval_index.kind if m.retrieval_index is not None else "exact",
        "cameras": [{"model": c.model, "width": int(c.width), "height": int(c.height),
                     "params": [float(p) for p in c.params]} for c in m.cameras],
        "keyframes": int(m.num_keyframes),
        "points3D": int(m.num_points3D),
        "observations": int(m.num_observations),
        "mean_track_length": round(m.num_observations / max(observed, 1), 3),
        "free_keypoints": int(m.num_free_features),
        "stamps": [float(known.min()), float(known.max())] if known.size else None,
        "camera_centres_min": centres.min(axis=0).round(3).tolist() if len(centres) else None,
        "camera_centres_max": centres.max(axis=0).round(3).tolist() if len(centres) else None,
        "source": meta.get("source"),
        "build": {k: stats[k] for k in ("build_seconds", "stage_seconds", "pairs", "tracks", "triangulated_points")
                  if k in stats} or None,
        "edits": meta.get("edits", []),
        "verified": bool(verify),
    }
    if keyframes:
        info["keyframe_list"] = [{"name": n, "id": int(i), "stamp": float(t) if np.isfinite(t) else None,
                                  "camera": int(c)} for n, i, t, c in zip(m.names, np.asarray(m.keyframe_ids),
                                                                           stamps, np.asarray(m.camera_index))]
    return info


def _camera_centres(q_wxyz: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Optical centres ``-R^T t`` (N, 3), metres in the map frame, of ``cam_from_world`` poses."""
    if len(q_wxyz) == 0:
        return np.zeros((0, 3))
    from scipy.spatial.transform import Rotation

    R = Rotation.from_quat(q_wxyz[:, [1, 2, 3, 0]]).as_matrix()
    return -np.einsum("nji,nj->ni", R, t)


def _short(v) -> str:
    """A list by its length, a source by its type and path."""
    if isinstance(v, list):
        return str(len(v))
    if isinstance(v, dict):
        return " ".join(str(v[k]) for k in ("type", "bag", "images", "bags") if k in v) or "-"
    return str(v)


def format_map_info(info: dict) -> str:
    """The text ``global-loc map info`` prints for a :func:`map_info` dict."""
    mib = info["size_bytes"] / 2**20
    lf, gd = info["local_features"], info["global_descriptor"]
    dense = f"{info['dense_features']['name']} ({info['dense_features']['dim']}-d)" if info["dense_features"] else "none"
    lines = [
        f"map {info['path']}: {mib:.1f} MiB, schema version {info['schema_version']}, written by "
        f"{info['created_by'] or 'unknown'}{' at ' + info['created_at'] if info['created_at'] else ''}",
        f"  preset {info['preset'] or 'unrecorded'}: local features {lf['name']} ({lf['dim']}-d), global "
        f"descriptor {gd['name']} ({gd['dim']}-d), dense features {dense}, retrieval {info['retrieval_index']}",
        f"  {info['keyframes']} keyframes, {info['points3D']} 3D points, {info['observations']} observations "
        f"(mean track length {info['mean_track_length']:.2f})"
        + (f", {info['free_keypoints']} free keypoints" if info["free_keypoints"] else "")
        + f"; frame '{info['frame_id']}'",
    ]
    for k, c in enumerate(info["cameras"]):
        lines.append(f"  camera {k}: {c['model']} {c['width']}x{c['height']}, params "
                     + " ".join(f"{p:.2f}" for p in c["params"]))
    if info["camera_centres_min"] is not None:
        lo, hi = info["camera_centres_min"], info["camera_centres_max"]
        lines.append("  keyframe centres (m, map frame): " + ", ".join(
            f"{a} {lo[i]:.2f} to {hi[i]:.2f}" for i, a in enumerate("xyz")))
    if info["stamps"] is not None:
        t0, t1 = info["stamps"]
        lines.append(f"  keyframe stamps: {t0:.3f} to {t1:.3f} s ({t1 - t0:.1f} s)")
    src = info["source"]
    if src:
        where = src.get("bag") or src.get("images") or src.get("model") or src.get("path") or ""
        rest = {k: v for k, v in src.items() if k not in ("type", "bag", "images", "model", "path", "indexing")}
        lines.append(f"  source: {src.get('type', '?')} {where}" + (f" ({json.dumps(rest)[1:-1]})" if rest else ""))
    b = info["build"]
    if b:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in (b.get("stage_seconds") or {}).items())
        lines.append(f"  build: {b.get('build_seconds', float('nan')):.1f} s" + (f" ({stages})" if stages else "")
                     + (f", {b['pairs']} pairs" if "pairs" in b else ""))
    for e in info.get("edits", []):
        lines.append(f"  edit: {e.get('op')} at {e.get('at')} by {e.get('by')}: "
                     + ", ".join(f"{k.replace('_', ' ')} {_short(v)}" for k, v in e.items() if k not in ("op", "at", "by")))
    for k in info.get("keyframe_list", []):
        stamp = "-" if k["stamp"] is None else f"{k['stamp']:.6f}"
        lines.append(f"  keyframe {k['name']} id {k['id']} stamp {stamp} camera {k['camera']}")
    lines.append("  checksums: every array verified" if info["verified"] else
                 "  checksums: header, directory and footer verified (--verify checks every array)")
    return "\n".join(lines)
