"""A run added to a built map (``global-loc index --update MAP``), without rebuilding it.

Only the new keyframes are extracted. Their global descriptors come from the map's own model
state (the VLAD vocabulary and PCA the map was built with, fixed: a run far from the data the
vocabulary was learned on gets coarser descriptors, and retrieval of its keyframes suffers,
where a rebuild would learn a new vocabulary). Pairs are the usual covisible pairs
(:func:`~global_loc.map.stages.select_pairs` over old and new keyframes together) that include
a new keyframe. Each pair is matched and checked against the epipolar geometry as in a build;
then

- a new keypoint matched to an old keypoint that observes a 3D point joins that point where
  the point, unchanged, projects within ``mapping.max_reprojection_error_px`` of it (old
  points are extended, never moved);
- new keypoints matched to each other (and to old keypoints that observe no point, where the
  map keeps them: ``mapping.store_free_features``) make tracks, triangulated with the poses
  fixed and filtered as in a build.

Old keyframes keep their ids, poses, cameras, descriptors and observations; old points keep
their ids, positions, colours and reference features. The time follows what was added, not the
map's size, where it can: only the keyframes in new pairs are matched; where no old keyframe
observes anything new (always, in a map without free features) the old observation rows are
copied as they are and only the new ones assembled; the points' triangulation covariances are
kept for the points no new keyframe observes and computed for the others with the map's
keypoint noise as it was (``benchmarks/save_time.py``). New keyframes and points take ids after
the largest old ones. New keyframes whose camera is one the map corrected (its principal
point, :mod:`global_loc.map.calibration`) are given the corrected camera; no principal point
is estimated again.

What differs from a map built from both runs at once: an old keypoint the map did not keep
(one that observed no point, in a map without free features) cannot be matched, so a point
seen once in the old run and again in the new one is missing where a joint build would have
it; and the old run's points are not triangulated again with the new observations.
"""
from __future__ import annotations

import datetime
import logging
import time

import numpy as np

from .. import __version__
from ..errors import InputError
from . import stages
from .index import MapIndex, kept_features

logger = logging.getLogger(__name__)


def extend_map(builder, base: MapIndex, progress: bool = False, entries=None) -> MapIndex:
    """``base`` with the keyframes added to ``builder`` (a
    :class:`~global_loc.map.builder.MapBuilder` configured with the map's preset), or with
    ``entries``, a part of them (the map indexer's save: those added since the last one).

    Returns:
        The new :class:`MapIndex` (old rows first, in their order; new ones after, in the order
        they were added). ``metadata["edits"]`` records the update.
    Raises:
        MapMismatchError: the builder's models make other descriptors than the map's.
        InputError: a new keyframe named as an old one.
        EmptyMapError: no keyframe was added.
    """
    from ..errors import EmptyMapError
    from ..localizer import camera_corrections, check_map_models

    entries = builder._entries if entries is None else list(entries)
    if not entries:
        raise EmptyMapError("no new keyframe was added; the map is unchanged")
    check_map_models(base, builder.extractor, builder.global_model)
    clash = sorted(set(base.names) & {e.keyframe.name for e in entries})
    if clash:
        raise InputError(f"the map already holds keyframe(s) {', '.join(clash[:5])}"
                         f"{f' (and {len(clash) - 5} more)' if len(clash) > 5 else ''}: names must be unique; "
                         "an update adds a run not in the map (prune a run first to replace it)")
    mc = builder.conf.mapping
    t0 = time.perf_counter()
    n_old = base.num_keyframes
    old = [kept_features(base, i) for i in range(n_old)]
    corrected = camera_corrections(base)
    feats = [f for f, _ in old] + [e.features for e in entries]
    poses = [base.cam_from_world(i) for i in range(n_old)] + [e.keyframe.cam_from_world for e in entries]
    cams = [base.camera(i) for i in range(n_old)] + [corrected.get(e.keyframe.camera, e.keyframe.camera)
                                                       for e in entries]
    assigned = [a.copy() for _, a in old] + [np.full(len(e.features), -1, np.int64) for e in entries]

    model = builder.global_model
    if model.requires_fit or base.global_state:
        model.load_state(base.global_state)
    raw = np.stack([model.describe_raw(None, e.features) if model.requires_fit else e.global_raw for e in entries])
    new_gdesc = model.pca.transform(raw) if model.pca is not None else raw
    gdesc = np.ascontiguousarray(np.concatenate([np.asarray(base.global_descriptors), new_gdesc]), np.float32)
    retrieval_index = stages.train_retrieval_index(gdesc, mc, progress)

    pairs = [(i, j) for i, j in stages.select_pairs(poses, gdesc, mc) if j >= n_old]  # i < j: j new at least
    candidates: list[np.ndarray] = []
    matches = stages.match_pairs(builder.pair_matcher, feats, cams, poses, pairs, assigned, mc, progress, candidates)
    extended = stages.extend_fixed_points(candidates, np.asarray(base.points_xyz, np.float64), feats, cams, poses,
                                          assigned, mc.max_reprojection_error_px)
    tracks, points = stages.triangulate(feats, cams, poses, matches, mc, progress)
    fixed = stages.FixedPoints(np.asarray(base.point_ids, np.int64), np.asarray(base.points_xyz, np.float64),
                               np.asarray(base.points_rgb, np.uint8), np.asarray(base.points_error, np.float32))
    dense = builder.dense if base.point_features is not None else None
    store_free = base.num_free_features > 0 or mc.store_free_features
    if all(len(t) == 0 or t[:, 0].min() >= n_old for t in points.tracks):
        # no old keyframe observes anything new: the old rows are the map's, the new ones appended
        arrays = _append_new_rows(base, feats[n_old:], assigned[n_old:], points, fixed, entries, dense, store_free)
    else:  # new tracks through old free keypoints: every keyframe's rows again
        arrays = stages.assemble(feats, assigned, points, fixed,
                                 [None] * n_old + [e.dense_samples for e in entries] if dense is not None else None,
                                 dense.dim if dense is not None else 0, store_free)
    if arrays["point_features"] is not None:  # the old points keep the reference features they were built with
        arrays["point_features"][:base.num_points3D] = np.asarray(base.point_features)
    first_id = int(np.max(base.keyframe_ids)) + 1 if n_old else 0
    camera_list, cam_index = stages.distinct_cameras(cams)
    edit = {"op": "update", "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "by": f"global_loc {__version__}", "source": builder.source, "added_keyframes": len(entries),
            "pairs": len(pairs), "extended_observations": extended, "new_points": len(points.xyz),
            "seconds": round(time.perf_counter() - t0, 3)}
    metadata = dict(base.metadata)
    metadata["edits"] = list(metadata.get("edits", [])) + [edit]
    if builder.skipped:
        metadata["skipped"] = {**metadata.get("skipped", {}), **builder.skipped}
    m = MapIndex(
        keyframe_ids=np.concatenate([np.asarray(base.keyframe_ids, np.int64),
                                     first_id + np.arange(len(entries), dtype=np.int64)]),
        names=list(base.names) + [e.keyframe.name for e in entries],
        stamps=np.concatenate([np.asarray(base.stamps, np.float64), [e.keyframe.stamp for e in entries]]),
        q_wxyz=np.array([p.q_wxyz for p in poses]).reshape(-1, 4), t=np.array([p.t for p in poses]).reshape(-1, 3),
        camera_index=cam_index.astype(np.int32), cameras=camera_list, global_descriptors=gdesc,
        local_features=dict(base.local_features), global_descriptor=dict(base.global_descriptor),
        global_state=dict(base.global_state), frame_id=base.frame_id, metadata=metadata,
        dense_features=dict(base.dense_features) if arrays["point_features"] is not None else {},
        retrieval_index=retrieval_index, **arrays,
    )
    _point_covariances(base, m)  # kept in the file
    edit["seconds"] = round(time.perf_counter() - t0, 3)
    logger.info("added %d keyframes: %d pairs, %d observations added to old points, %d new points; %s",
                len(entries), len(pairs), extended, len(points.xyz), m.summary())
    return m


def _append_new_rows(base: MapIndex, feats, assigned, points, fixed, entries, dense, store_free: bool) -> dict:
    """The map arrays of :func:`~global_loc.map.stages.assemble` when only the new keyframes
    (``feats``, ``assigned``: theirs) observe anything new: the base's observation rows as they
    are, the new keyframes' after them (tracks' keyframe rows counted from the first new one)."""
    n_old = base.num_keyframes
    shifted = stages.TriangulatedPoints(points.xyz, [np.column_stack([t[:, 0] - n_old, t[:, 1]])
                                                     for t in points.tracks], points.errors)
    new = stages.assemble(feats, assigned, shifted, fixed, [e.dense_samples for e in entries] if dense is not None
                          else None, dense.dim if dense is not None else 0, store_free)
    dtype = base.obs_descriptors.dtype
    out = dict(new)
    out["obs_offsets"] = np.concatenate([np.asarray(base.obs_offsets[:-1], np.int64),
                                         int(base.obs_offsets[-1]) + new["obs_offsets"]])
    out["obs_keypoints"] = np.concatenate([np.asarray(base.obs_keypoints, np.float32), new["obs_keypoints"]])
    out["obs_descriptors"] = np.concatenate([np.asarray(base.obs_descriptors), new["obs_descriptors"].astype(dtype)])
    out["obs_point_index"] = np.concatenate([np.asarray(base.obs_point_index, np.int64), new["obs_point_index"]])
    if store_free:
        out["free_offsets"] = np.concatenate([np.asarray(base.free_offsets[:-1], np.int64),
                                              int(base.free_offsets[-1]) + new["free_offsets"]])
        out["free_keypoints"] = np.concatenate([np.asarray(base.free_keypoints, np.float32), new["free_keypoints"]])
        out["free_descriptors"] = np.concatenate([np.asarray(base.free_descriptors),
                                                  new["free_descriptors"].astype(base.free_descriptors.dtype)])
    return out


def _point_covariances(base: MapIndex, m: MapIndex) -> None:
    """The points' triangulation covariances of the extended map ``m``: the base's as they were
    for the points no new keyframe observes, computed for the others (extended and new) with the
    base's keypoint noise (fixed, as the vocabulary is), so that the cost follows what was added.
    Without covariances in the base, all are computed."""
    from ..geometry.covariance import triangulation_covariances

    stored = base.stored_point_covariances()
    if stored is None:
        m.point_covariances(np.zeros(0, np.int64))
        return
    old_cov, noise = stored
    first_new_obs = int(base.obs_offsets[-1])
    new_obs_pt = np.asarray(m.obs_point_index[first_new_obs:], np.int64)
    changed = np.union1d(new_obs_pt, np.arange(base.num_points3D, m.num_points3D))
    cov = np.concatenate([np.asarray(old_cov, np.float32),
                          np.full((m.num_points3D - base.num_points3D, 3, 3), np.inf, np.float32)])
    if len(changed):
        row_of = np.full(m.num_points3D, -1, np.int64)
        row_of[changed] = np.arange(len(changed))
        obs_pt = np.asarray(m.obs_point_index, np.int64)
        sel = np.flatnonzero(row_of[obs_pt] >= 0)
        kf = np.repeat(np.arange(m.num_keyframes), np.diff(m.obs_offsets))[sel]
        sub, _ = triangulation_covariances(
            np.asarray(m.points_xyz)[changed], kf, row_of[obs_pt[sel]], np.asarray(m.obs_keypoints)[sel],
            [m.camera(i) for i in range(m.num_keyframes)], [m.cam_from_world(i) for i in range(m.num_keyframes)],
            noise)
        cov[changed] = sub
    m.restore_point_covariances(cov, noise)
