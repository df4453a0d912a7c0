import numpy as np
import pytest

from global_loc.geometry.transforms import (
    Pose,
    pose_error,
    quat_to_wxyz,
    quat_to_xyzw,
    quat_wxyz_from_rotmat,
    rotation_angle_deg,
    rotmat_from_quat_wxyz,
)


def random_pose(rng):
    q = rng.normal(size=4)
    return Pose.from_qt(q / np.linalg.norm(q), rng.normal(size=3))


def test_quaternion_order_and_matrix_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        q = q if q[0] >= 0 else -q
        R = rotmat_from_quat_wxyz(q)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(R), 1.0)
        assert np.allclose(quat_wxyz_from_rotmat(R), q, atol=1e-12)
        assert np.allclose(quat_to_wxyz(quat_to_xyzw(q)), q)
    # a 90 degree rotation about z: (w, x, y, z) = (cos 45, 0, 0, sin 45)
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    assert np.allclose(rotmat_from_quat_wxyz(q) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    assert np.allclose(quat_to_xyzw(q), [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])


def test_zero_quaternion_is_rejected():
    with pytest.raises(ValueError, match="norm"):
        rotmat_from_quat_wxyz([0, 0, 0, 0])


def test_composition_inverse_and_centre():
    rng = np.random.default_rng(1)
    a_from_b, b_from_c = random_pose(rng), random_pose(rng)
    x_c = rng.normal(size=(5, 3))
    assert np.allclose((a_from_b * b_from_c).transform(x_c), a_from_b.transform(b_from_c.transform(x_c)))
    ident = a_from_b * a_from_b.inverse()
    assert np.allclose(ident.matrix(), np.eye(4), atol=1e-12)
    # the centre of a camera maps to the camera origin
    assert np.allclose(a_from_b.transform(a_from_b.center), 0, atol=1e-12)
    assert np.allclose(Pose.from_matrix(a_from_b.matrix()).matrix(), a_from_b.matrix())
    assert np.allclose(Pose.from_pycolmap(a_from_b.to_pycolmap()).matrix(), a_from_b.matrix())


def test_pose_error_units():
    p = Pose.identity()
    q = Pose.from_qt([np.cos(np.radians(5)), 0, np.sin(np.radians(5)), 0], [0, 0, 0])  # 10 deg about y
    dt, dr = pose_error(q, p)
    assert dt == pytest.approx(0.0, abs=1e-12)
    assert dr == pytest.approx(10.0, abs=1e-9)
    shifted = Pose(np.eye(3), [0.3, 0.4, 0.0])  # centre at (-0.3, -0.4, 0)
    assert pose_error(shifted, p)[0] == pytest.approx(0.5)
    assert rotation_angle_deg(np.diag([-1.0, -1.0, 1.0])) == pytest.approx(180.0)


def test_interpolation_midpoint():
    a = Pose.identity()
    b = Pose.from_qt([np.cos(np.radians(45)), 0, 0, np.sin(np.radians(45))], [2.0, 0, 0])
    m = a.interpolate(b, 0.5)
    assert rotation_angle_deg(m.R) == pytest.approx(45.0, abs=1e-9)
    assert np.allclose(m.t, [1.0, 0, 0])


def test_non_finite_pose_rejected():
    with pytest.raises(ValueError):
        Pose(np.eye(3), [np.nan, 0, 0])


def _logm(R):
    th = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    if th < 1e-12:
        return np.zeros(3)
    return th / (2 * np.sin(th)) * np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])


def test_pose_covariance_agrees_with_monte_carlo():
    """The covariance a localization reports, in ROS form for the camera and for a base frame
    behind it, matches the scatter of repeated PnP solutions under 0.3 px keypoint noise."""
    from global_loc.geometry.camera import Camera
    from global_loc.geometry.covariance import compose_covariance, world_from_cam_covariance
    from global_loc.geometry.pnp import estimate_absolute_pose

    rng = np.random.default_rng(0)
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    cam_from_world = Pose.from_qt([0.9, 0.2, -0.3, 0.1], [10.0, -20.0, 5.0])
    cam_from_base = Pose.from_qt([0.5, -0.5, 0.5, -0.5], [0.1, 0.2, -0.3])
    xc = np.c_[rng.uniform(-2, 2, (150, 2)), rng.uniform(4, 8, 150)]
    xw = cam_from_world.inverse().transform(xc)
    uv = cam.project(xc)
    world_from_base = cam_from_world.inverse() * cam_from_base
    samples, predicted = [], []
    for i in range(200):
        r = estimate_absolute_pose(uv + rng.normal(scale=0.3, size=uv.shape), xw, cam, 8.0, seed=i)
        wfc = r.cam_from_world.inverse()
        wfb = wfc * cam_from_base
        samples.append(np.r_[wfb.t - world_from_base.t, _logm(wfb.R @ world_from_base.R.T)])
        predicted.append(compose_covariance(wfc, world_from_cam_covariance(r.cam_from_world, r.covariance),
                                            cam_from_base))
    emp, pred = np.cov(np.array(samples).T), np.mean(predicted, axis=0)
    ratio = np.diag(emp) / np.diag(pred)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    corr = lambda c: c / np.sqrt(np.outer(np.diag(c), np.diag(c)))  # noqa: E731
    assert np.abs(corr(emp) - corr(pred)).max() < 0.25


def _triangulate_fixed_poses(pixels, cams, poses):
    """Least-squares point from (K, 2) pixels of K cameras with known poses (DLT, then
    Gauss-Newton on the reprojection error)."""
    A = []
    for (u, v), cam, pose in zip(pixels, cams, poses):
        P = cam.K @ np.c_[pose.R, pose.t]
        A += [u * P[2] - P[0], v * P[2] - P[1]]
    X = np.linalg.svd(np.array(A))[2][-1]
    X = X[:3] / X[3]
    for _ in range(5):
        J = np.concatenate([cam.projection_jacobian(pose.transform(X[None]))[0] @ pose.R for cam, pose in zip(cams, poses)])
        r = np.concatenate([cam.project(pose.transform(X[None]))[0] - uv for uv, cam, pose in zip(pixels, cams, poses)])
        X = X - np.linalg.lstsq(J, r, rcond=None)[0]
    return X


def test_triangulation_covariance_agrees_with_monte_carlo():
    """A point's triangulation covariance (poses fixed) matches the scatter of re-triangulations
    under 0.5 px keypoint noise: a near point seen under a short baseline, uncertain in depth."""
    from global_loc.geometry.camera import Camera
    from global_loc.geometry.covariance import triangulation_covariances

    rng = np.random.default_rng(1)
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    poses = [Pose.from_qt([1, 0, 0, 0], [-0.1 * i, 0.0, 0.0]) for i in range(3)]  # 10 cm steps
    X = np.array([0.15, -0.1, 2.0])
    uv = np.array([cam.project(p.transform(X[None]))[0] for p in poses])
    cov, noise = triangulation_covariances(X[None], np.arange(3), np.zeros(3, int), uv, [cam] * 3, poses, 0.5)
    assert noise == 0.5 and cov.shape == (1, 3, 3)
    samples = np.array([_triangulate_fixed_poses(uv + rng.normal(scale=0.5, size=uv.shape), [cam] * 3, poses)
                        for _ in range(400)])
    emp = np.cov(samples.T)
    ratio = np.diag(emp) / np.diag(cov[0])
    assert np.all((ratio > 0.75) & (ratio < 1.33)), ratio
    assert np.sqrt(cov[0, 2, 2]) > 5 * np.sqrt(cov[0, 0, 0])  # depth is the uncertain direction
    # the a-posteriori noise from the map's own residuals, and a point seen once is undetermined
    noisy = uv + rng.normal(scale=0.5, size=uv.shape)
    Xn = _triangulate_fixed_poses(noisy, [cam] * 3, poses)
    pts = np.array([Xn, [0.0, 0.0, 3.0]])
    cov2, est = triangulation_covariances(pts, np.r_[np.arange(3), 0], np.r_[np.zeros(3, int), 1],
                                          np.r_[noisy, [[320.0, 240.0]]], [cam] * 3, poses)
    assert 0.0 < est < 2.0 and np.all(np.isfinite(cov2[0])) and not np.isfinite(cov2[1]).any()


def test_map_point_pose_covariance_agrees_with_monte_carlo():
    """The pose covariance due to the map's point errors matches the scatter of PnP poses from
    exact keypoints and points drawn from their covariances; a few near, depth-uncertain
    points dominate it, and PnP's own covariance (from the residuals) misses most of it."""
    from global_loc.geometry.camera import Camera
    from global_loc.geometry.covariance import map_point_pose_covariance
    from global_loc.geometry.pnp import estimate_absolute_pose

    rng = np.random.default_rng(2)
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    cam_from_world = Pose.from_qt([0.9, 0.2, -0.3, 0.1], [1.0, -2.0, 0.5])
    xc = np.c_[rng.uniform(-2, 2, (120, 2)), rng.uniform(4, 8, 120)]
    xc[:10] = np.c_[rng.uniform(-0.4, 0.4, (10, 2)), rng.uniform(1.0, 1.5, 10)]  # near points
    xw = cam_from_world.inverse().transform(xc)
    uv = cam.project(xc)
    # covariances: 1 mm along the ray of a keyframe that saw the near points from 20 degrees
    # aside (their depth in that keyframe), 0.1 mm isotropic elsewhere. Small enough for the
    # projections to move well under 1 px: COLMAP's pose refinement has a Cauchy loss of 1 px,
    # which takes larger errors less into account than the least-squares prediction (which is
    # then conservative).
    cov = np.tile(np.eye(3) * 0.0001**2, (len(xw), 1, 1))
    aside = Pose.from_qt([np.cos(np.radians(10)), 0.0, np.sin(np.radians(10)), 0.0], [0, 0, 0]).R
    for i in range(10):
        ray = cam_from_world.R.T @ aside @ (xc[i] / np.linalg.norm(xc[i]))
        cov[i] += 0.001**2 * np.outer(ray, ray)
    predicted = map_point_pose_covariance(cam, cam_from_world, xw, cov)
    samples, pnp_cov = [], []
    chol = np.linalg.cholesky(cov)
    for i in range(200):
        drawn = xw + np.einsum("nij,nj->ni", chol, rng.normal(size=xw.shape))
        r = estimate_absolute_pose(uv, drawn, cam, 8.0, seed=i)
        samples.append(np.r_[_logm(cam_from_world.R @ r.cam_from_world.R.T), cam_from_world.t - r.cam_from_world.t])
        pnp_cov.append(r.covariance)
    emp = np.cov(np.array(samples).T)
    ratio = np.diag(emp) / np.diag(predicted)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    # PnP's own covariance (from the residuals) sees under half of the position scatter
    assert np.trace(np.mean(pnp_cov, axis=0)[3:, 3:]) < 0.5 * np.trace(emp[3:, 3:])


def test_weighing_uncertain_map_points_makes_poses_more_accurate():
    """Near map points with depth errors from their (known) covariances pull PnP's pose; the
    maximum-likelihood refinement that weighs each residual by its point's uncertainty
    (``refine_with_point_uncertainty``) halves the median position error over 30 draws."""
    from global_loc.geometry.camera import Camera
    from global_loc.geometry.pnp import estimate_absolute_pose

    rng = np.random.default_rng(3)
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    truth = Pose.from_qt([0.9, 0.2, -0.3, 0.1], [1.0, -2.0, 0.5])
    errors = {False: [], True: []}
    for trial in range(30):
        xc = np.c_[rng.uniform(-2, 2, (150, 2)), rng.uniform(4, 8, 150)]
        xc[:30] = np.c_[rng.uniform(-0.5, 0.5, (30, 2)), rng.uniform(0.8, 1.5, 30)]  # near points
        xw = truth.inverse().transform(xc)
        uv = cam.project(xc) + rng.normal(scale=0.3, size=(150, 2))
        cov = np.tile(np.eye(3) * 0.0005**2, (150, 1, 1))
        aside = Pose.from_qt([np.cos(np.radians(15)), np.sin(np.radians(15)), 0.0, 0.0], [0, 0, 0]).R
        for i in range(30):  # 2 cm along the ray of a keyframe 30 degrees aside
            ray = truth.R.T @ aside @ (xc[i] / np.linalg.norm(xc[i]))
            cov[i] += 0.02**2 * np.outer(ray, ray)
        drawn = xw + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.normal(size=xw.shape))
        for weigh in (False, True):
            r = estimate_absolute_pose(uv, drawn, cam, 8.0, seed=trial,
                                       point_covariances=cov if weigh else None, point_noise_px=0.3)
            errors[weigh].append(pose_error(r.cam_from_world, truth)[0])
    assert np.median(errors[True]) < 0.5 * np.median(errors[False]), (np.median(errors[True]), np.median(errors[False]))


def test_one_refinement_gives_colmaps_pose_and_covariance():
    """Without point covariances, RANSAC's pose refined once here is COLMAP's refined pose (to
    a twentieth of its standard deviation: the refinement stops at a step under a tenth,
    ``pnp.CONVERGED_STEP``), and
    ``robust_pose_covariance`` is the covariance pycolmap reports for it (rotation converted
    from its half-angle tangent), on a problem with 20 % outliers."""
    import pycolmap

    from global_loc.geometry.camera import Camera
    from global_loc.geometry.pnp import estimate_absolute_pose, robust_pose_covariance

    rng = np.random.default_rng(3)
    cam = Camera("PINHOLE", 640, 480, [500, 500, 320, 240])
    truth = Pose.from_qt([0.9, 0.2, -0.3, 0.1], [1.0, -2.0, 0.5])
    xc = np.c_[rng.uniform(-2, 2, (300, 2)), rng.uniform(3, 9, 300)]
    xw = truth.inverse().transform(xc)
    uv = cam.project(xc) + rng.normal(scale=0.5, size=(300, 2))
    uv[:60] = rng.uniform([0, 0], [640, 480], (60, 2))  # outliers
    ours = estimate_absolute_pose(uv, xw, cam, 8.0, seed=0)
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error, est.ransac.random_seed = 8.0, 0
    ref = pycolmap.estimate_and_refine_absolute_pose(uv + 0.5, xw, cam.to_pycolmap(), est,
                                                     pycolmap.AbsolutePoseRefinementOptions(), return_covariance=True)
    colmap = Pose.from_pycolmap(ref["cam_from_world"])
    assert np.array_equal(ours.inliers, np.asarray(ref["inlier_mask"], bool))
    inl = ours.inliers
    S = np.diag([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    theirs = S @ np.asarray(ref["covariance"]) @ S
    mine = robust_pose_covariance(cam, colmap, uv[inl], xw[inl])
    assert np.abs(mine - theirs).max() <= 1e-6 * np.abs(theirs).max()
    # the same optimum, to the optimisers' tolerances: far below one standard deviation
    from global_loc.evaluation import mahalanobis_distance

    assert mahalanobis_distance(ours.cam_from_world, colmap, ours.covariance) < 0.05


def test_a_pose_resting_on_one_wrong_match_owns_its_error():
    """Fifteen inliers on a wall 10 m away and one wrong match 1.3 m away that alone fixes the
    translation along the view (the twin-rooms frame that was 0.38 m off): RANSAC keeps the wrong
    match, it fits the pose it pulls, and COLMAP's covariance puts the truth tens of standard
    deviations away. The covariance without the point of largest leverage owns the error (under
    4 sigma); a pose on well spread points keeps COLMAP's covariance."""
    from global_loc.evaluation import mahalanobis_distance
    from global_loc.geometry.camera import Camera
    from global_loc.geometry.pnp import estimate_absolute_pose, leave_one_out_covariance, robust_pose_covariance

    rng = np.random.default_rng(5)
    cam = Camera("PINHOLE", 320, 240, [210, 210, 160, 120])
    truth = Pose.from_qt([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    far = np.c_[rng.uniform(-4, 4, (15, 1)), rng.uniform(-1.5, 1.5, (15, 1)), np.full((15, 1), 10.0)]
    near = np.array([[0.3, 0.2, 1.3]])
    xc = np.r_[far, near]
    uv = cam.project(xc) + rng.normal(scale=0.3, size=(16, 2))
    uv[15] += [45.0, 40.0]  # the wrong match: 60 px from its point's true projection
    r = estimate_absolute_pose(uv, truth.inverse().transform(xc), cam, 8.0, seed=0)
    assert r.inliers.all()  # the wrong match fits the pose it pulls
    dt, _ = pose_error(r.cam_from_world, truth)
    assert dt > 0.1, dt
    inl_kp, inl_x = uv[r.inliers], truth.inverse().transform(xc)[r.inliers]
    res = cam.project(r.cam_from_world.transform(inl_x)) - inl_kp
    sigma2 = np.sum(res**2) / (2 * len(res) - 6)
    trusting = robust_pose_covariance(cam, r.cam_from_world, inl_kp, inl_x) * sigma2
    assert mahalanobis_distance(r.cam_from_world, truth, trusting) > 10
    assert mahalanobis_distance(r.cam_from_world, truth, r.covariance) < 4
    # spread points: no point carries a degree of freedom
    xs = np.c_[rng.uniform(-2, 2, (100, 2)), rng.uniform(3, 9, 100)]
    assert leave_one_out_covariance(cam, truth, cam.project(xs), truth.inverse().transform(xs)) is None
