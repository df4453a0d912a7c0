"""Triangulation of feature tracks with known, fixed keyframe poses.

The steps follow hloc's ``triangulation.py`` and COLMAP's point triangulator, with the poses
held fixed: matches of covisible keyframe pairs are checked against the epipolar geometry
that the poses give, linked into tracks, each track triangulated with LO-RANSAC
(pycolmap ``estimate_triangulation``), and points filtered by reprojection error,
triangulation angle and track length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pycolmap
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .camera import Camera
from .transforms import Pose


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def epipolar_errors(
    rays_i: np.ndarray, rays_j: np.ndarray, cam_i_from_world: Pose, cam_j_from_world: Pose
) -> np.ndarray:
    """Angular distance of matched rays to their epipolar planes, radians.

    Works for any camera model, fisheye included, since it uses bearing vectors.

    Args:
        rays_i, rays_j: (N, 3) unit bearing vectors in cameras i and j.
    Returns:
        (N,) float64, the larger of the two one-sided errors (``asin`` of the distance of a
        ray to the epipolar plane of its partner).
    """
    j_from_i = cam_j_from_world * cam_i_from_world.inverse()
    t = j_from_i.t
    if np.linalg.norm(t) < 1e-12:  # pure rotation: no epipolar constraint
        return np.zeros(len(rays_i))
    E = _skew(t / np.linalg.norm(t)) @ j_from_i.R
    n_j = rays_i @ E.T  # epipolar plane normals in camera j
    n_i = rays_j @ E  # and in camera i
    num = np.abs(np.sum(rays_j * n_j, axis=1))
    e_j = num / np.maximum(np.linalg.norm(n_j, axis=1), 1e-12)
    e_i = num / np.maximum(np.linalg.norm(n_i, axis=1), 1e-12)
    return np.arcsin(np.clip(np.maximum(e_i, e_j), 0.0, 1.0))


def build_tracks(
    num_keypoints: Sequence[int], pair_matches: dict[tuple[int, int], np.ndarray]
) -> list[np.ndarray]:
    """Link pairwise matches into tracks (connected components of the match graph).

    Args:
        num_keypoints: keypoints per keyframe.
        pair_matches: ``(i, j) -> (M, 2) int`` keypoint indices matched between keyframes.
    Returns:
        Tracks with at least two observations, each a (L, 2) int64 array of
        ``(keyframe, keypoint)`` rows.
    """
    offsets = np.zeros(len(num_keypoints) + 1, np.int64)
    np.cumsum(num_keypoints, out=offsets[1:])
    total = int(offsets[-1])
    src, dst = [], []
    for (i, j), m in pair_matches.items():
        if len(m):
            src.append(offsets[i] + m[:, 0])
            dst.append(offsets[j] + m[:, 1])
    if not src or total == 0:
        return []
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    nodes = np.unique(np.concatenate([src, dst]))
    lab = labels[nodes]
    order = np.argsort(lab, kind="stable")
    nodes, lab = nodes[order], lab[order]
    splits = np.flatnonzero(np.diff(lab)) + 1
    kf_of = np.searchsorted(offsets, nodes, side="right") - 1
    obs = np.stack([kf_of, nodes - offsets[kf_of]], axis=1)
    return [t for t in np.split(obs, splits) if len(t) >= 2]


@dataclass
class TriangulatedPoints:
    """Attributes:
    xyz: (P, 3) float64 points, world frame.
    tracks: P arrays (L, 2) int64 of ``(keyframe, keypoint)`` observations.
    errors: (P,) float32 mean reprojection error of each point's observations, pixels.
    """

    xyz: np.ndarray
    tracks: list[np.ndarray]
    errors: np.ndarray


def triangulate_tracks(
    tracks: Sequence[np.ndarray],
    keypoints: Sequence[np.ndarray],
    cameras: Sequence[Camera],
    cams_from_world: Sequence[Pose],
    max_reprojection_error_px: float = 4.0,
    min_triangulation_angle_deg: float = 1.5,
    min_track_length: int = 2,
) -> TriangulatedPoints:
    """Triangulate each track with the keyframe poses held fixed, then filter.

    Args:
        tracks: (L, 2) int arrays of ``(keyframe, keypoint)``.
        keypoints: per keyframe (N_k, 2) pixels, OpenCV convention.
        cameras, cams_from_world: per keyframe.
        max_reprojection_error_px: observations above it are dropped (RANSAC threshold too).
        min_triangulation_angle_deg: points whose largest ray angle is smaller are dropped.
        min_track_length: points seen by fewer keyframes (after filtering) are dropped.
    Returns:
        :class:`TriangulatedPoints`; each kept track has at most one observation per keyframe.
    """
    empty = TriangulatedPoints(np.zeros((0, 3)), [], np.zeros(0, np.float32))
    if not len(tracks):
        return empty
    opts = pycolmap.EstimateTriangulationOptions()
    opts.min_tri_angle = float(np.deg2rad(min_triangulation_angle_deg))
    opts.residual_type = pycolmap.TriangulationResidualType.ANGULAR_ERROR
    rigids = [p.to_pycolmap() for p in cams_from_world]
    pcams = [c.to_pycolmap() for c in cameras]
    focals = np.array([c.focal_length for c in cameras], np.float64)
    centers = np.array([p.center for p in cams_from_world]).reshape(-1, 3)
    kp_offsets = np.zeros(len(keypoints) + 1, np.int64)
    np.cumsum([len(k) for k in keypoints], out=kp_offsets[1:])
    kp_flat = np.concatenate([np.asarray(k, np.float64).reshape(-1, 2) for k in keypoints])

    # all observations of all tracks, flat: track t owns rows starts[t]:starts[t + 1]
    lengths = np.array([len(t) for t in tracks], np.int64)
    starts = np.zeros(len(tracks) + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    obs = np.concatenate(tracks).astype(np.int64)
    kf, uv = obs[:, 0], kp_flat[kp_offsets[obs[:, 0]] + obs[:, 1]]
    max_err = max_reprojection_error_px / np.minimum.reduceat(focals[kf], starts[:-1])
    uv_colmap = uv + 0.5  # COLMAP pixels

    # 1. one LO-RANSAC triangulation per track (pycolmap), the only loop
    X = np.full((len(tracks), 3), np.nan)
    inlier = np.zeros(len(obs), bool)
    for t in range(len(tracks)):
        a, b = starts[t], starts[t + 1]
        opts.ransac.max_error = float(max_err[t])
        k = kf[a:b]
        ret = pycolmap.estimate_triangulation(uv_colmap[a:b], [rigids[i] for i in k], [pcams[i] for i in k], opts)
        if ret is not None:
            X[t] = np.asarray(ret["xyz"], np.float64).reshape(3)
            inlier[a:b] = np.asarray(ret["inliers"], bool)

    # 2. reprojection errors of every RANSAC inlier, in pixels (vectorized per camera)
    track_of = np.repeat(np.arange(len(tracks)), lengths)
    err = np.full(len(obs), np.inf)
    R = np.stack([p.R for p in cams_from_world])
    tv = np.stack([p.t for p in cams_from_world])
    rows = np.flatnonzero(inlier)
    Xc = np.einsum("nij,nj->ni", R[kf[rows]], X[track_of[rows]]) + tv[kf[rows]]
    cam_ids = {}
    cam_of = np.array([cam_ids.setdefault(c, len(cam_ids)) for c in cameras], np.int64)
    for c, ci in cam_ids.items():
        sel = cam_of[kf[rows]] == ci
        if sel.any():
            err[rows[sel]] = np.linalg.norm(c.project(Xc[sel]) - uv[rows[sel]], axis=1)
    keep = err <= max_reprojection_error_px  # NaN (behind the camera) is not kept

    # 3. one observation per keyframe in each track (the smallest error), as the tracks order it
    idx = np.flatnonzero(keep)
    if not len(idx):
        return empty
    idx = idx[np.lexsort((err[idx], kf[idx], track_of[idx]))]
    first = np.r_[True, (track_of[idx][1:] != track_of[idx][:-1]) | (kf[idx][1:] != kf[idx][:-1])]
    idx = idx[first]
    count = np.bincount(track_of[idx], minlength=len(tracks))
    good = count >= max(2, min_track_length)
    idx = idx[good[track_of[idx]]]
    if not len(idx):
        return empty

    # 4. triangulation angle: the widest pair of rays of each point, grouped by track length
    t_of = track_of[idx]
    seg = np.flatnonzero(np.r_[True, t_of[1:] != t_of[:-1]])
    seg_len = np.diff(np.r_[seg, len(idx)])
    rays = centers[kf[idx]] - X[t_of]
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    wide = np.zeros(len(seg), bool)
    cos_min = np.cos(np.deg2rad(min_triangulation_angle_deg))
    for L in np.unique(seg_len):
        s = np.flatnonzero(seg_len == L)
        r = rays[seg[s][:, None] + np.arange(L)]  # (S, L, 3)
        wide[s] = np.einsum("sid,sjd->sij", r, r).reshape(len(s), -1).min(axis=1) <= cos_min
    if not wide.any():
        return empty
    out_tracks = np.split(obs[idx], seg[1:])
    errs = np.add.reduceat(err[idx], seg) / seg_len
    kept = np.flatnonzero(wide)
    return TriangulatedPoints(
        xyz=X[t_of[seg[kept]]].astype(np.float64).reshape(-1, 3),
        tracks=[out_tracks[i] for i in kept],
        errors=errs[kept].astype(np.float32),
    )
