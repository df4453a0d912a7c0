"""The stages of a map build, each a function of its inputs: :meth:`MapBuilder.build
<global_loc.map.builder.MapBuilder.build>` runs them in this order (hloc's triangulation from
known poses, Sarlin et al. 2019/2020, with HF-Net's map content):

1. :func:`global_descriptors`: the vocabulary and PCA fitted on this map (or a fixed model's
   descriptors), one descriptor per keyframe; :func:`train_retrieval_index` where the map asks
   for an approximate index;
2. :func:`associate_fixed_points`: points that come with the keyframes (a COLMAP model) given
   to the nearest extracted keypoints;
3. :func:`select_pairs`: covisible keyframe pairs from the poses and from retrieval;
4. :func:`match_pairs`: local feature matching of each pair, then the epipolar check with the
   known poses;
5. :func:`triangulate`: tracks (connected components of the matches), triangulated with the
   poses fixed, filtered by reprojection error, triangulation angle and track length;
6. :func:`check_principal_points`: each camera's principal point checked against the tracks,
   the points triangulated again with the corrected cameras where it moved;
7. :func:`assemble`: the :class:`~global_loc.map.index.MapIndex` arrays (observations sorted by
   keyframe, fixed points first, colours, the points' reference features, free features).

Frames: poses are ``cam_from_world`` (:class:`~global_loc.geometry.transforms.Pose`), points in
the world (map) frame in metres, keypoints in pixels (OpenCV convention).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import faiss
import numpy as np
from tqdm import tqdm

from ..config import MappingConf
from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from ..geometry.triangulation import TriangulatedPoints, build_tracks, epipolar_errors, triangulate_tracks
from ..refinement.reference import robust_mean
from ..retrieval import GlobalDescriptorModel
from ..types import LocalFeatures
from .calibration import estimate_principal_point_offsets, shifted_camera
from .pairs import pairs_from_poses, pairs_from_retrieval

logger = logging.getLogger(__name__)


@dataclass
class FixedPoints:
    """3D points to keep as they are, e.g. the registered points of a COLMAP model.

    Attributes:
        ids: (P,) int64 point ids.
        xyz: (P, 3) float64 metres, world frame.
        rgb: (P, 3) uint8.
        errors: (P,) float32 reprojection errors, pixels.
        observations: keyframe name -> ``(xy (n, 2) float pixels in OpenCV convention,
            point rows (n,) int64)``: where each keyframe observes them.
    """

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    errors: np.ndarray
    observations: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class PairMatches:
    """The verified matches of the keyframe pairs.

    Attributes:
        matches: ``(i, j) -> (M, 2) int64`` keypoint indices in keyframes i and j (pairs with
            no verified match are absent).
        num_raw: matches before the epipolar check, all pairs.
        num_verified: matches after it.
    """

    matches: dict[tuple[int, int], np.ndarray]
    num_raw: int = 0
    num_verified: int = 0


def global_descriptors(model: GlobalDescriptorModel, features: Sequence[LocalFeatures],
                       raw: Sequence[np.ndarray | None]) -> np.ndarray:
    """Each keyframe's global descriptor, the model fitted on this map where it learns from it.

    A model that ``requires_fit`` (VLAD: the vocabulary, Arandjelovic & Zisserman 2013) is fitted
    on ``features`` and describes each keyframe; the others use ``raw``, their descriptors from
    the extraction. The PCA (whitening), where the model has one, is fitted on these.

    Args:
        features: K keyframes' local features.
        raw: K raw descriptors (D_raw,) from the extraction (None where the model fits here).
    Returns:
        (K, D) float32.
    Raises:
        EmptyMapError: too few descriptors to learn the vocabulary (from the model).
    """
    if model.requires_fit:
        model.fit(features)
        stacked = np.stack([model.describe_raw(None, f) for f in features])
    else:
        stacked = np.stack(raw)
    model.fit_pca(stacked)
    out = model.pca.transform(stacked) if model.pca is not None else stacked
    return np.ascontiguousarray(out, np.float32)


def train_retrieval_index(gdesc: np.ndarray, mc: MappingConf, progress: bool = False):
    """The approximate retrieval index ``mapping.retrieval_index`` asks for over ``gdesc``
    (K, D) float32 (:func:`global_loc.retrieval.index.train_index`); None: exact search (also
    where the index cannot be trained on so few keyframes, with a warning)."""
    import time

    from ..retrieval.index import train_index

    kind = mc.retrieval_index
    if kind == "auto":
        kind = "flat" if len(gdesc) <= mc.exact_retrieval_max_keyframes else "ivfpq"
    if kind == "flat":
        return None
    t0 = time.perf_counter()
    try:
        trained = train_index(kind, gdesc, dict(mc.retrieval_index_params))
    except ValueError as e:  # e.g. ivfpq asked of a map of a few keyframes
        logger.warning("no %s retrieval index for this map, exact search instead: %s", kind, e)
        return None
    if progress or len(gdesc) > mc.exact_retrieval_max_keyframes:
        logger.info("%s retrieval index over %d %d-d descriptors: %.1f MiB, built in %.1f s", kind, len(gdesc),
                    gdesc.shape[1], len(trained.data) / 2**20, time.perf_counter() - t0)
    return trained


def associate_fixed_points(fixed: FixedPoints | None, names: Sequence[str], features: Sequence[LocalFeatures],
                           max_px: float) -> list[np.ndarray]:
    """Give fixed points to the nearest extracted keypoints: one keypoint per point and
    keyframe, within ``max_px`` pixels, the nearest pairs first.

    Returns:
        K arrays (N_k,) int64: the row in ``fixed`` that each keypoint takes, -1 for none.
    """
    assigned = [np.full(len(f), -1, np.int64) for f in features]
    if fixed is None:
        return assigned
    for k, (name, f) in enumerate(zip(names, features)):
        if name not in fixed.observations:
            continue
        xy, pts = fixed.observations[name]
        kps = f.keypoints
        if len(xy) == 0 or len(kps) == 0:
            continue
        d2, nn = faiss.knn(np.ascontiguousarray(xy, np.float32), np.ascontiguousarray(kps), 1)
        d2, nn = d2[:, 0], nn[:, 0]
        taken: set[int] = set()
        for o in np.argsort(d2, kind="stable"):
            if d2[o] > max_px * max_px:
                break
            kp, pt = int(nn[o]), int(pts[o])
            if assigned[k][kp] >= 0 or pt in taken:
                continue
            assigned[k][kp] = pt
            taken.add(pt)
    return assigned


def select_pairs(poses: Sequence[Pose], gdesc: np.ndarray, mc: MappingConf) -> list[tuple[int, int]]:
    """Covisible keyframe pairs (i < j), sorted: ``mapping.num_pairs_pose`` nearest camera
    centres looking in a similar direction (:func:`~global_loc.map.pairs.pairs_from_poses`) and
    ``mapping.num_pairs_retrieval`` most similar global descriptors."""
    pairs = pairs_from_poses(poses, mc.num_pairs_pose, mc.pair_max_angle_deg, mc.pair_max_distance_m)
    pairs |= pairs_from_retrieval(gdesc, mc.num_pairs_retrieval)
    return sorted(pairs)


def match_pairs(matcher, features: Sequence[LocalFeatures], cameras: Sequence[Camera], poses: Sequence[Pose],
                pairs: Sequence[tuple[int, int]], assigned: Sequence[np.ndarray], mc: MappingConf,
                progress: bool = False, extensions: list | None = None) -> PairMatches:
    """Match each pair (``matcher.match(features_i, features_j) -> (idx_i, idx_j)``, a
    :class:`~global_loc.matching.matchers.PairMatcher`) and keep the matches within
    ``mapping.epipolar_max_error_px`` (Sampson distance, pixels of the shorter focal length) of
    the epipolar geometry of the known poses, on keypoints that no fixed point took.

    Args:
        extensions: where given, the verified matches between a keypoint that a fixed point
            took and one that none took are appended to it as (E, 3) int64 arrays of
            ``(keyframe, keypoint, fixed point row)`` of the free side: candidates to extend
            the fixed point's track (:func:`extend_fixed_points`).
    """
    used = sorted({k for pair in pairs for k in pair})  # only the keyframes in pairs (an update: few)
    rays = {k: cameras[k].rays(features[k].keypoints) for k in used}
    out = PairMatches({})
    for i, j in tqdm(pairs, desc="matching keyframe pairs", disable=not progress, unit="pair"):
        qi, qj = matcher.match(features[i], features[j])
        if not len(qi):
            continue
        out.num_raw += len(qi)
        err = epipolar_errors(rays[i][qi], rays[j][qj], poses[i], poses[j])
        ok = err <= mc.epipolar_max_error_px / min(cameras[i].focal_length, cameras[j].focal_length)
        ai, aj = assigned[i][qi], assigned[j][qj]
        if extensions is not None:
            one = ok & ((ai >= 0) != (aj >= 0))
            if one.any():
                on_i = ai[one] >= 0  # the fixed point is in keyframe i: keyframe j's keypoint may join it
                extensions.append(np.stack([np.where(on_i, j, i), np.where(on_i, qj[one], qi[one]),
                                            np.where(on_i, ai[one], aj[one])], axis=1).astype(np.int64))
        ok &= (ai < 0) & (aj < 0)
        if ok.any():
            out.matches[(i, j)] = np.stack([qi[ok], qj[ok]], axis=1)
            out.num_verified += int(ok.sum())
    return out


def extend_fixed_points(candidates: Sequence[np.ndarray], xyz: np.ndarray, features: Sequence[LocalFeatures],
                        cameras: Sequence[Camera], poses: Sequence[Pose], assigned: Sequence[np.ndarray],
                        max_px: float) -> int:
    """Give fixed points the free keypoints matched to one of their observations, where the
    point, as it is, projects within ``max_px`` pixels of the keypoint (in front of the camera):
    each keypoint takes at most one point, each point at most one keypoint per keyframe, the
    smallest reprojection errors first. ``assigned`` is changed in place.

    Args:
        candidates: (E, 3) int64 ``(keyframe, keypoint, point row)`` arrays
            (:func:`match_pairs` ``extensions``).
        xyz: (P, 3) float64 the fixed points, metres, world frame.
    Returns:
        The observations added.
    """
    if not len(candidates) or not sum(len(c) for c in candidates):
        return 0
    cand = np.unique(np.concatenate(candidates), axis=0)
    err = np.full(len(cand), np.inf)
    for k in np.unique(cand[:, 0]):
        rows = np.flatnonzero(cand[:, 0] == k)
        pc = poses[k].transform(xyz[cand[rows, 2]])
        front = pc[:, 2] > 1e-6
        uv = cameras[k].project(pc[front])
        err[rows[front]] = np.linalg.norm(uv - features[k].keypoints[cand[rows[front], 1]], axis=1)
    added, taken_kp, taken_pt = 0, set(), set()
    for e in np.argsort(err, kind="stable"):
        if not err[e] <= max_px:
            break
        k, kp, pt = (int(v) for v in cand[e])
        if (k, kp) in taken_kp or (k, pt) in taken_pt or assigned[k][kp] >= 0:
            continue
        assigned[k][kp] = pt
        taken_kp.add((k, kp))
        taken_pt.add((k, pt))
        added += 1
    return added


def triangulate(features: Sequence[LocalFeatures], cameras: Sequence[Camera], poses: Sequence[Pose],
                matches: PairMatches, mc: MappingConf,
                progress: bool = False) -> tuple[list[np.ndarray], TriangulatedPoints]:
    """Tracks from the verified matches, triangulated with the poses fixed and filtered
    (``mapping.max_reprojection_error_px``, ``min_triangulation_angle_deg``, ``min_track_length``).

    Returns:
        ``(tracks, points)``: every track ((L, 2) int64 ``(keyframe, keypoint)`` rows) and the
        :class:`~global_loc.geometry.triangulation.TriangulatedPoints` that passed.
    """
    tracks = build_tracks([len(f) for f in features], matches.matches)
    if progress:
        logger.info("triangulating %d tracks from %d pairs", len(tracks), len(matches.matches))
    return tracks, _triangulate(tracks, features, cameras, poses, mc)


def _triangulate(tracks, features, cameras, poses, mc: MappingConf) -> TriangulatedPoints:
    return triangulate_tracks(tracks, [f.keypoints for f in features], cameras, poses, mc.max_reprojection_error_px,
                              mc.min_triangulation_angle_deg, mc.min_track_length)


def distinct_cameras(cameras: Sequence[Camera]) -> tuple[list[Camera], np.ndarray]:
    """The distinct cameras in order of appearance, and each keyframe's row among them (K,) int64."""
    distinct: list = []
    index = np.zeros(len(cameras), np.int64)
    for k, c in enumerate(cameras):
        if c not in distinct:
            distinct.append(c)
        index[k] = distinct.index(c)
    return distinct, index


def check_principal_points(tracks: list[np.ndarray], points: TriangulatedPoints, features: Sequence[LocalFeatures],
                           cameras: Sequence[Camera], poses: Sequence[Pose], mc: MappingConf,
                           ) -> tuple[list[Camera], list[dict], TriangulatedPoints]:
    """Each distinct camera's principal-point offset estimated from the points with the poses
    fixed (:mod:`global_loc.map.calibration`); applied where it is significant (above 3 standard
    deviations and ``mapping.principal_point_min_px``, its standard deviation below
    ``principal_point_max_std_px``, at most 20 px: a larger one is logged, not applied), then the
    tracks triangulated again with the corrected cameras.

    Returns:
        ``(cameras, records, points)``: the per-keyframe cameras to use, one record per
        corrected camera (``original`` camera, ``corrected_params``, ``delta_px``, ``std_px``,
        RMSE before and after), and the points (the input ones where nothing moved).
    """
    distinct, index = distinct_cameras(cameras)
    obs_kf = np.concatenate([t[:, 0] for t in points.tracks]).astype(np.int64)
    obs_kp = np.concatenate([t[:, 1] for t in points.tracks]).astype(np.int64)
    obs_pt = np.repeat(np.arange(len(points.tracks)), [len(t) for t in points.tracks]).astype(np.int64)
    feat_off = np.concatenate([[0], np.cumsum([len(f) for f in features])])
    pixels = np.concatenate([f.keypoints for f in features]).astype(np.float64)[feat_off[obs_kf] + obs_kp]
    est = estimate_principal_point_offsets(points.xyz, obs_kf, obs_pt, pixels, distinct, poses, index)
    records, fixed = [], list(distinct)
    for c, cam in enumerate(distinct):
        d, sd = est.delta_px[c], est.std_px[c]
        significant = (np.all(np.isfinite(sd)) and sd.max() <= mc.principal_point_max_std_px
                       and np.abs(d).max() >= mc.principal_point_min_px and np.any(np.abs(d) > 3 * sd))
        if not significant:
            continue
        if np.abs(d).max() > 20:
            logger.warning("camera %d: the tracks ask for a principal-point offset of (%.1f, %.1f) px; "
                           "not applied: check its calibration", c, *d)
            continue
        fixed[c] = shifted_camera(cam, d)
        records.append({
            "original": {"model": cam.model, "width": cam.width, "height": cam.height,
                         "params": [float(v) for v in cam.params]},
            "corrected_params": [float(v) for v in fixed[c].params],
            "delta_px": [round(float(v), 4) for v in d], "std_px": [round(float(v), 4) for v in sd],
            "rmse_before_px": round(est.rmse_before_px, 4), "rmse_after_px": round(est.rmse_after_px, 4),
        })
        logger.info("camera %d: principal point moved by (%+.2f, %+.2f) px (std %.2f, %.2f): track RMSE "
                    "%.3f -> %.3f px", c, d[0], d[1], sd[0], sd[1], est.rmse_before_px, est.rmse_after_px)
    if not records:
        return list(cameras), [], points
    cameras = [fixed[i] for i in index]
    return cameras, records, _triangulate(tracks, features, cameras, poses, mc)


def assemble(features: Sequence[LocalFeatures], assigned: Sequence[np.ndarray], points: TriangulatedPoints,
             fixed: FixedPoints | None, dense_samples: Sequence[np.ndarray | None] | None = None,
             dense_dim: int = 0, store_free_features: bool = False) -> dict:
    """The map's observation and point arrays.

    Observations are sorted by keyframe, then keypoint; points are the fixed ones (their ids
    kept) then the triangulated ones (ids after the fixed ones'), each with its colour (the mean
    of its observations' colours) and, with ``dense_samples`` (K arrays (N_k, Dr) float16, None
    where a keyframe has none), its reference feature (the robust mean of its observations'
    samples, :func:`global_loc.refinement.reference.robust_mean`).

    Returns:
        The :class:`~global_loc.map.index.MapIndex` keyword arguments ``obs_offsets``,
        ``obs_keypoints``, ``obs_descriptors``, ``obs_point_index``, ``point_ids``,
        ``points_xyz``, ``points_rgb``, ``points_error``, ``point_features`` (or None), and the
        ``free_*`` arrays when ``store_free_features`` (keypoints that observe no point).
    """
    n = len(features)
    n_fixed = 0 if fixed is None else len(fixed.ids)
    n_new = len(points.xyz)
    obs_kf, obs_kp, obs_pt = [], [], []
    for k in range(n):
        kp = np.flatnonzero(assigned[k] >= 0)
        obs_kf.append(np.full(len(kp), k))
        obs_kp.append(kp)
        obs_pt.append(assigned[k][kp])
    for p, track in enumerate(points.tracks):
        obs_kf.append(track[:, 0])
        obs_kp.append(track[:, 1])
        obs_pt.append(np.full(len(track), n_fixed + p))
    obs_kf = np.concatenate(obs_kf).astype(np.int64)
    obs_kp = np.concatenate(obs_kp).astype(np.int64)
    obs_pt = np.concatenate(obs_pt).astype(np.int64)
    order = np.lexsort((obs_kp, obs_kf))
    obs_kf, obs_kp, obs_pt = obs_kf[order], obs_kp[order], obs_pt[order]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(obs_kf, minlength=n), out=offsets[1:])
    kp_all = np.concatenate([f.keypoints for f in features]) if n else np.zeros((0, 2), np.float32)
    desc_all = np.concatenate([f.descriptors for f in features])
    feat_off = np.zeros(n + 1, np.int64)
    np.cumsum([len(f) for f in features], out=feat_off[1:])
    flat = feat_off[obs_kf] + obs_kp
    out: dict = {}
    if store_free_features:
        is_free = np.ones(len(kp_all), bool)
        is_free[flat] = False
        free_kf = np.repeat(np.arange(n), np.diff(feat_off))[is_free]
        free_offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(free_kf, minlength=n), out=free_offsets[1:])
        out |= {"free_offsets": free_offsets, "free_keypoints": kp_all[is_free].astype(np.float32),
                "free_descriptors": desc_all[is_free].astype(np.float32)}
    point_features = None
    if dense_samples is not None:
        samples = np.concatenate([s if s is not None else np.full((len(f), dense_dim), np.nan, np.float16)
                                  for s, f in zip(dense_samples, features)])
        point_features = robust_mean(samples[flat], obs_pt, n_fixed + n_new).astype(np.float16)
    new_rgb = np.zeros((n_new, 3), np.uint8)
    for p, track in enumerate(points.tracks):
        cols = [features[k].colors[i] for k, i in track if features[k].colors is not None]
        if cols:
            new_rgb[p] = np.mean(cols, axis=0).astype(np.uint8)
    f = fixed
    point_ids = np.concatenate([
        f.ids.astype(np.int64) if f is not None else np.zeros(0, np.int64),
        (f.ids.max() + 1 if f is not None and n_fixed else 0) + np.arange(n_new, dtype=np.int64),
    ])
    return out | {
        "obs_offsets": offsets,
        "obs_keypoints": kp_all[flat].astype(np.float32),
        "obs_descriptors": desc_all[flat].astype(np.float32),
        "obs_point_index": obs_pt,
        "point_ids": point_ids,
        "points_xyz": np.concatenate([f.xyz if f is not None else np.zeros((0, 3)), points.xyz]).astype(np.float64),
        "points_rgb": np.concatenate([f.rgb if f is not None else np.zeros((0, 3), np.uint8), new_rgb]).astype(np.uint8),
        "points_error": np.concatenate([f.errors if f is not None else np.zeros(0, np.float32),
                                        points.errors]).astype(np.float32),
        "point_features": point_features,
    }
