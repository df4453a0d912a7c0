"""Edits of a built map that need no rebuild: keyframes pruned, with the 3D points only they
observe (``global-loc map prune``).

Ids stay stable: the kept keyframes keep their ``keyframe_ids`` and the kept points their
``point_ids``; the order of what is kept is unchanged. The global descriptors of the kept
keyframes are kept as they are (same vocabulary); an approximate retrieval index is trained
again over them (the exact search needs none).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..errors import EmptyMapError, InputError
from .index import MapIndex

logger = logging.getLogger(__name__)


@dataclass
class PruneStats:
    """What :func:`prune_keyframes` removed and kept (counts)."""

    removed_keyframes: int
    removed_points: int
    removed_observations: int
    kept_keyframes: int
    kept_points: int
    shortened_tracks: int  # kept points that lost an observation

    def format_text(self) -> str:
        return (f"removed {self.removed_keyframes} keyframe(s), {self.removed_points} 3D point(s) only they "
                f"observed and {self.removed_observations} observation(s); kept {self.kept_keyframes} keyframes and "
                f"{self.kept_points} points ({self.shortened_tracks} of them seen by fewer keyframes now)")


def select_keyframes(m: MapIndex, names: list[str] | None = None, before: float | None = None) -> np.ndarray:
    """Rows of the keyframes named in ``names`` and of those stamped before ``before``.

    Args:
        names: keyframe names (as ``global-loc map info`` and the map's metadata give them).
        before: a stamp, seconds (the clock of the bag or of the poses file); keyframes without
            a stamp (NaN) are never selected by it.
    Returns:
        (n,) int64 sorted unique rows.
    Raises:
        InputError: a name the map does not hold (the first few are named; nothing is selected),
            or no criterion given.
    """
    if not names and before is None:
        raise InputError("say which keyframes to prune: --keyframes NAME ..., --keyframe-list FILE or --before STAMP")
    rows: set[int] = set()
    if names:
        unknown = [n for n in names if n not in set(m.names)]
        if unknown:
            raise InputError(f"the map holds no keyframe called {', '.join(map(repr, unknown[:5]))}"
                             f"{f' (and {len(unknown) - 5} more)' if len(unknown) > 5 else ''}; "
                             "`global-loc map info MAP --keyframes` lists them, nothing was pruned")
        rows |= {m.row_of(n) for n in names}
    if before is not None:
        stamps = np.asarray(m.stamps, np.float64)
        rows |= set(np.flatnonzero(np.isfinite(stamps) & (stamps < before)).tolist())
    return np.array(sorted(rows), np.int64)


def prune_keyframes(m: MapIndex, remove: np.ndarray) -> tuple[MapIndex, PruneStats]:
    """The map without the keyframes at rows ``remove`` and without the 3D points that no kept
    keyframe observes. A point that a kept keyframe still observes is kept with its position,
    colour, error, reference feature and triangulation covariance as built (they came from all
    its observations; none is triangulated again).

    Args:
        m: a map (memory-mapped or in memory; not changed).
        remove: (n,) int keyframe rows.
    Returns:
        The new map (its arrays in memory) and what was removed.
    Raises:
        EmptyMapError: nothing localizable would be left (no keyframe, or no 3D point).
        InputError: a row out of range.
    """
    remove = np.unique(np.asarray(remove, np.int64))
    k = m.num_keyframes
    if len(remove) and (remove.min() < 0 or remove.max() >= k):
        raise InputError(f"keyframe rows out of range 0..{k - 1}")
    keep = np.setdiff1d(np.arange(k), remove)
    if len(keep) == 0:
        raise EmptyMapError(f"pruning would remove all {k} keyframes of the map; nothing was written")
    # the covariances of the points as built, before their observations go
    covariances = m.stored_point_covariances()
    if covariances is None and m.num_points3D:
        m.point_covariances(np.zeros(0, np.int64))
        covariances = m.stored_point_covariances()

    obs_rows = _rows_of(m.obs_offsets, keep)
    free_rows = _rows_of(m.free_offsets, keep)
    old_points = np.asarray(m.obs_point_index[obs_rows], np.int64)
    kept_points = np.unique(old_points)
    new_row = np.full(m.num_points3D, -1, np.int64)
    new_row[kept_points] = np.arange(len(kept_points))
    per_point_before = np.bincount(np.asarray(m.obs_point_index, np.int64), minlength=m.num_points3D)
    per_point_after = np.bincount(old_points, minlength=m.num_points3D)

    used_cams = np.unique(np.asarray(m.camera_index)[keep])
    cam_row = np.full(len(m.cameras), -1, np.int32)
    cam_row[used_cams] = np.arange(len(used_cams), dtype=np.int32)
    gdesc = np.ascontiguousarray(m.global_descriptors[keep])
    meta = dict(m.metadata)
    stats = PruneStats(
        removed_keyframes=len(remove), removed_points=m.num_points3D - len(kept_points),
        removed_observations=m.num_observations - len(obs_rows), kept_keyframes=len(keep),
        kept_points=len(kept_points),
        shortened_tracks=int(np.count_nonzero(per_point_after[kept_points] < per_point_before[kept_points])))
    meta["edits"] = list(meta.get("edits", [])) + [{
        "op": "prune", "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "by": f"global_loc {__version__}",
        "removed_keyframes": [m.names[i] for i in remove[:1000]], **{
            f: getattr(stats, f) for f in ("removed_points", "removed_observations", "kept_keyframes", "kept_points")}}]
    pf = m.point_features
    out = MapIndex(
        keyframe_ids=np.asarray(m.keyframe_ids)[keep].copy(), names=[m.names[i] for i in keep],
        stamps=np.asarray(m.stamps)[keep].copy(), q_wxyz=np.asarray(m.q_wxyz)[keep].copy(),
        t=np.asarray(m.t)[keep].copy(), camera_index=cam_row[np.asarray(m.camera_index)[keep]],
        cameras=[m.cameras[i] for i in used_cams], global_descriptors=gdesc,
        obs_offsets=_offsets(m.obs_offsets, keep), obs_keypoints=np.asarray(m.obs_keypoints[obs_rows]),
        obs_descriptors=np.asarray(m.obs_descriptors[obs_rows]), obs_point_index=new_row[old_points],
        point_ids=np.asarray(m.point_ids)[kept_points], points_xyz=np.asarray(m.points_xyz)[kept_points],
        points_rgb=np.asarray(m.points_rgb)[kept_points], points_error=np.asarray(m.points_error)[kept_points],
        local_features=dict(m.local_features), global_descriptor=dict(m.global_descriptor),
        global_state=dict(m.global_state), frame_id=m.frame_id, metadata=meta,
        point_features=None if pf is None else np.asarray(pf[kept_points]), dense_features=dict(m.dense_features),
        free_offsets=_offsets(m.free_offsets, keep), free_keypoints=np.asarray(m.free_keypoints[free_rows]),
        free_descriptors=np.asarray(m.free_descriptors[free_rows]),
        retrieval_index=_retrain(m.retrieval_index, gdesc),
    )
    if covariances is not None:
        out.restore_point_covariances(np.asarray(covariances[0])[kept_points], covariances[1])
    out.check_localizable()
    return out, stats


def _rows_of(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The rows of a compressed-row array (``offsets`` (K + 1,)) that belong to keyframes ``keep``."""
    offsets = np.asarray(offsets, np.int64)
    counts = offsets[keep + 1] - offsets[keep]
    starts = np.repeat(offsets[keep] - (np.cumsum(counts) - counts), counts)
    return starts + np.arange(int(counts.sum()), dtype=np.int64)


def _offsets(offsets: np.ndarray, keep: np.ndarray) -> np.ndarray:
    offsets = np.asarray(offsets, np.int64)
    out = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(offsets[keep + 1] - offsets[keep], out=out[1:])
    return out


def _retrain(index, gdesc: np.ndarray):
    """The approximate retrieval index of the same kind and parameters over ``gdesc``, or None
    (exact search) where there was none or it cannot be trained on what is left."""
    if index is None:
        return None
    from ..retrieval.index import train_index

    params = {k: v for k, v in index.params.items() if k not in ("dim", "size")}
    try:
        return train_index(index.kind, gdesc, params)
    except ValueError as e:
        logger.warning("no %s retrieval index for the pruned map, exact search instead: %s", index.kind, e)
        return None
