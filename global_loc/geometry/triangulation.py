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
    opts = pycolmap.EstimateTriangulationOptions()
    opts.min_tri_angle = float(np.deg2rad(min_triangulation_angle_deg))
    opts.residual_type = pycolmap.TriangulationResidualType.ANGULAR_ERROR
    rigids = [p.to_pycolmap() for p in cams_from_world]
    pcams = [c.to_pycolmap() for c in cameras]
    centers = np.array([p.center for p in cams_from_world]).reshape(-1, 3)
    cos_min = np.cos(np.deg2rad(min_triangulation_angle_deg))
    xyz_out, tracks_out, err_out = [], [], []
    for track in tracks:
        kf, kp = track[:, 0], track[:, 1]
        focal = min(cameras[k].focal_length for k in kf)
        opts.ransac.max_error = float(max_reprojection_error_px / focal)
        uv = np.array([keypoints[k][p] for k, p in track], np.float64) + 0.5  # COLMAP pixels
        ret = pycolmap.estimate_triangulation(
            uv, [rigids[k] for k in kf], [pcams[k] for k in kf], opts
        )
        if ret is None:
            continue
        X = np.asarray(ret["xyz"], np.float64).reshape(3)
        inl = np.asarray(ret["inliers"], bool)
        # reprojection errors in pixels, and one observation per keyframe (the best)
        err = np.full(len(track), np.inf)
        for n in np.flatnonzero(inl):
            k = kf[n]
            proj = cameras[k].project(cams_from_world[k].transform(X)[None])[0]
            err[n] = np.linalg.norm(proj - keypoints[k][kp[n]])
        keep = err <= max_reprojection_error_px
        if keep.sum() < max(2, min_track_length):
            continue
        idx = np.flatnonzero(keep)
        idx = idx[np.lexsort((err[idx], kf[idx]))]
        idx = idx[np.r_[True, kf[idx][1:] != kf[idx][:-1]]]
        if len(idx) < max(2, min_track_length):
            continue
        rays = centers[kf[idx]] - X
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        cosines = rays @ rays.T
        if cosines.min() > cos_min:
            continue
        xyz_out.append(X)
        tracks_out.append(track[idx])
        err_out.append(err[idx].mean())
    return TriangulatedPoints(
        xyz=np.array(xyz_out, np.float64).reshape(-1, 3),
        tracks=tracks_out,
        errors=np.array(err_out, np.float32),
    )
