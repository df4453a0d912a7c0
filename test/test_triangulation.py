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
