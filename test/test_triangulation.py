import collections

import numpy as np

from global_loc.geometry.triangulation import build_tracks, epipolar_errors, triangulate_tracks
from synthetic import FeatureScene


def test_epipolar_errors_zero_for_true_matches_and_large_for_wrong_ones():
    s = FeatureScene(num_points=500, seed=0)
    p0, p1 = s.pose_on_ring(0.0), s.pose_on_ring(0.3)
    X = s.points
    c0, c1 = p0.transform(X), p1.transform(X)
    ok = (c0[:, 2] > 0.1) & (c1[:, 2] > 0.1)
    r0 = c0[ok] / np.linalg.norm(c0[ok], axis=1, keepdims=True)
    r1 = c1[ok] / np.linalg.norm(c1[ok], axis=1, keepdims=True)
    assert epipolar_errors(r0, r1, p0, p1).max() < 1e-9
    wrong = epipolar_errors(r0, np.roll(r1, 1, axis=0), p0, p1)
    assert np.median(wrong) > 0.01


def test_build_tracks_links_chains():
    tracks = build_tracks([3, 3, 3], {(0, 1): np.array([[0, 2]]), (1, 2): np.array([[2, 1]])})
    assert len(tracks) == 1
    assert sorted(map(tuple, tracks[0])) == [(0, 0), (1, 2), (2, 1)]
    assert build_tracks([2, 2], {}) == []


def test_triangulation_recovers_points_and_drops_outliers():
    s = FeatureScene(num_points=800, seed=1)
    p0 = s.pose_on_ring(0.0)
    poses = [type(p0)(p0.R, p0.t + [0.4 * i, 0.0, 0.0]) for i in range(3)]  # 0.4 m baselines
    obs = [s.observe(p, pixel_noise=0.0) for p in poses]
    common = set(obs[0][1]) & set(obs[1][1]) & set(obs[2][1])
    common = np.array(sorted(common))[:200]
    pos = [{pid: k for k, pid in enumerate(o[1])} for o in obs]
    tracks = [np.array([[v, pos[v][pid]] for v in range(3)]) for pid in common]
    kps = [o[0].keypoints.astype(np.float64) for o in obs]
    # corrupt one observation of the first 20 tracks by 30 px: it must be dropped
    for t in tracks[:20]:
        kps[2][t[2, 1]] += 30.0
    tri = triangulate_tracks(tracks, kps, [s.camera] * 3, poses, 2.0, 1.0, 2)
    assert len(tri.xyz) == len(tracks)
    truth = s.points[common]
    assert np.abs(tri.xyz - truth).max() < 1e-3
    lengths = np.array([len(t) for t in tri.tracks])
    assert np.all(lengths[:20] == 2) and np.all(lengths[20:] == 3)
    assert tri.errors.max() < 0.1


def test_small_triangulation_angle_is_rejected():
    s = FeatureScene(num_points=300, seed=2)
    p0 = s.pose_on_ring(0.0)
    p1 = type(p0)(p0.R, p0.t + [1e-4, 0, 0])  # 0.1 mm baseline
    o0, o1 = s.observe(p0, 0.0), s.observe(p1, 0.0)
    shared = np.intersect1d(o0[1], o1[1])[:50]
    i0 = {p: k for k, p in enumerate(o0[1])}
    i1 = {p: k for k, p in enumerate(o1[1])}
    tracks = [np.array([[0, i0[p]], [1, i1[p]]]) for p in shared]
    tri = triangulate_tracks(tracks, [o0[0].keypoints, o1[0].keypoints], [s.camera] * 2, [p0, p1], 2.0, 1.5, 2)
    assert len(tri.xyz) == 0


def _reference_triangulation(tracks, keypoints, cameras, poses, max_err, min_angle, min_len):
    """The per-track loop triangulate_tracks replaced (hloc / COLMAP's filters, one track at a
    time), kept as the reference its vectorized filters must reproduce exactly."""
    import pycolmap

    opts = pycolmap.EstimateTriangulationOptions()
    opts.min_tri_angle = float(np.deg2rad(min_angle))
    opts.residual_type = pycolmap.TriangulationResidualType.ANGULAR_ERROR
    out = []
    for track in tracks:
        kf, kp = track[:, 0], track[:, 1]
        opts.ransac.max_error = float(max_err / min(cameras[k].focal_length for k in kf))
        uv = np.array([keypoints[k][p] for k, p in track], np.float64) + 0.5
        ret = pycolmap.estimate_triangulation(uv, [poses[k].to_pycolmap() for k in kf],
                                              [cameras[k].to_pycolmap() for k in kf], opts)
        if ret is None:
            continue
        X = np.asarray(ret["xyz"]).reshape(3)
        err = np.full(len(track), np.inf)
        for n in np.flatnonzero(ret["inliers"]):
            err[n] = np.linalg.norm(cameras[kf[n]].project(poses[kf[n]].transform(X)[None])[0] - keypoints[kf[n]][kp[n]])
        idx = np.flatnonzero(err <= max_err)
        idx = idx[np.lexsort((err[idx], kf[idx]))]
        idx = idx[np.r_[True, kf[idx][1:] != kf[idx][:-1]]]
        if len(idx) < max(2, min_len):
            continue
        rays = np.array([poses[k].center for k in kf[idx]]) - X
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        if (rays @ rays.T).min() > np.cos(np.deg2rad(min_angle)):
            continue
        out.append((X, track[idx], err[idx].mean()))
    return out


def test_vectorized_filters_match_the_per_track_reference():
    """Tracks of every kind the filters sort out: clean, with a 30 px outlier, with two
    observations in one keyframe (the better one is kept), too short after filtering, and from a
    tiny baseline (too narrow); the points, kept observations and errors equal the reference's."""
    s = FeatureScene(num_points=600, seed=3)
    p0 = s.pose_on_ring(0.0)
    poses = [type(p0)(p0.R, p0.t + [0.3 * i, 0.05 * i, 0.0]) for i in range(4)]
    poses.append(type(p0)(p0.R, poses[3].t + [1e-4, 0, 0]))  # a twin of keyframe 3
    obs = [s.observe(p, pixel_noise=0.5) for p in poses]
    pos = [{pid: k for k, pid in enumerate(o[1])} for o in obs]
    kps = [o[0].keypoints.astype(np.float64) for o in obs]
    rng = np.random.default_rng(0)
    tracks = []
    for pid in sorted(set.intersection(*[set(o[1]) for o in obs]))[:300]:
        kind = len(tracks) % 5
        views = {0: [0, 1, 2, 3], 1: [0, 1, 2], 2: [0, 1, 2, 3], 3: [1, 2], 4: [3, 4]}[kind]
        t = [[v, pos[v][pid]] for v in views]
        if kind == 1:
            kps[1][t[1][1]] += 30.0
        if kind == 2:  # keyframe 2 observes it twice: once right, once 1.5 px off
            wrong = len(kps[2])
            kps[2] = np.vstack([kps[2], kps[2][t[2][1]] + [1.5, 0.0]])
            t.append([2, wrong])
        tracks.append(np.array(t)[rng.permutation(len(t))])
    cams = [s.camera] * len(poses)
    for min_len in (2, 3):
        tri = triangulate_tracks(tracks, kps, cams, poses, 2.0, 1.5, min_len)
        ref = _reference_triangulation(tracks, kps, cams, poses, 2.0, 1.5, min_len)
        assert len(ref) >= 20 and len(tri.xyz) == len(ref)
        lengths = collections.Counter(len(r[1]) for r in ref)
        assert set(lengths) == ({2, 4} if min_len == 2 else {4})  # outliers, duplicates dropped
        np.testing.assert_allclose(tri.xyz, np.array([r[0] for r in ref]), atol=1e-12)
        assert all(np.array_equal(a, r[1]) for a, r in zip(tri.tracks, ref))
        np.testing.assert_allclose(tri.errors, np.array([r[2] for r in ref], np.float32), rtol=1e-6)
    assert triangulate_tracks([], kps, cams, poses).xyz.shape == (0, 3)
