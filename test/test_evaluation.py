"""Covariance consistency (global_loc.evaluation): Mahalanobis distances of pose errors against
the chi-square law they follow when the covariances are right."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

from global_loc.evaluation import SIGMA_LEVELS, consistency, evaluate_poses, mahalanobis_distance
from global_loc.geometry.transforms import Pose


def _perturbed(truth: Pose, e: np.ndarray) -> Pose:
    """The estimate whose error is ``e = [dtheta, dt]``: R_true = exp([dtheta]x) R, t_true = t + dt."""
    R = Rotation.from_rotvec(e[:3]).as_matrix().T @ truth.R
    return Pose(R, truth.t - e[3:])


def _random_covariance(rng) -> np.ndarray:
    A = rng.normal(size=(6, 6)) * np.array([1e-3] * 3 + [1e-2] * 3)  # ~0.06 deg, ~1 cm
    return A @ A.T + np.diag([1e-8] * 3 + [1e-6] * 3)


def test_right_covariances_are_consistent_and_overconfident_ones_are_not():
    rng = np.random.default_rng(0)
    truth = Pose(Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix(), np.array([1.0, -2.0, 0.5]))
    C = _random_covariance(rng)
    L = np.linalg.cholesky(C)
    errors = (L @ rng.normal(size=(6, 4000))).T
    d = np.array([mahalanobis_distance(_perturbed(truth, e), truth, C) for e in errors])
    assert np.allclose(d, np.sqrt(np.einsum("ni,ij,nj->n", errors, np.linalg.inv(C), errors)), rtol=1e-5)
    c = consistency(d)
    for p in SIGMA_LEVELS:
        assert abs(c["within"][p] - p) < 0.02, c
    # a covariance 4x too small (sigmas halved): far fewer errors inside the 95 % bound
    over = consistency(d * 2.0)
    assert over["within"][SIGMA_LEVELS[1]] < 0.5 and over["max_sigmas"] > c["max_sigmas"]
    # ... and the factor it asks for on the standard deviations is the 2 they were shrunk by
    assert c["scale_95"] == pytest.approx(1.0, abs=0.06) and over["scale_95"] == pytest.approx(2.0, abs=0.12)
    scaled = consistency(d * 2.0 / over["scale_95"])
    assert scaled["within"][SIGMA_LEVELS[1]] >= 0.95 - 1e-9
    beyond = consistency(d * 2.0 / over["scale_5sigma"])
    assert beyond["max_sigmas"] == pytest.approx(5.0, abs=1e-3)


def test_max_sigmas_is_the_gaussian_equivalent():
    d3 = np.sqrt(chi2.ppf(SIGMA_LEVELS[2], 6))  # the 3-sigma bound of chi-square(6)
    assert consistency([0.5, d3])["max_sigmas"] == pytest.approx(3.0, abs=1e-3)
    assert consistency([])["count"] == 0


def test_evaluate_poses_reports_consistency_of_the_given_covariances():
    rng = np.random.default_rng(1)
    truth = {f"q{i}": Pose(Rotation.random(random_state=i).as_matrix(), rng.normal(size=3)) for i in range(3)}
    C = np.diag([1e-6] * 3 + [1e-4] * 3)  # 0.057 deg, 1 cm
    e = np.array([0.0, 0.0, 0.0, 0.05, 0.0, 0.0])  # 5 cm: 5 sigma
    est = {"q0": _perturbed(truth["q0"], e), "q1": truth["q1"]}
    rep = evaluate_poses(est, truth, list(truth), covariances={"q0": C, "q1": C, "q2": C})
    assert rep.mahalanobis == pytest.approx({"q0": 5.0, "q1": 0.0})  # q2 was not localized
    text = rep.format()
    assert "covariance consistency (2 localized queries" in text and "largest: q0, distance 5.00" in text
    assert rep.to_dict()["consistency"]["within"][SIGMA_LEVELS[1]] == 0.5


def test_far_tails_stay_finite():
    from global_loc.evaluation import _chi2_logsf

    for x in (0.5, 7.0, 30.0):
        assert _chi2_logsf(x, 6) == pytest.approx(chi2.logsf(x, 6), rel=1e-9)
    c = consistency([44.88])  # temple's worst today: a probability near 1e-430
    assert np.isfinite(c["max_sigmas"]) and 40 < c["max_sigmas"] < 45


def test_trajectory_consistency_by_stamp():
    """TUM trajectories (world_from_cam by stamp) with the log's covariances keyed by stamp."""
    from global_loc.evaluation import evaluate_trajectory

    rng = np.random.default_rng(2)
    C = np.diag([1e-6] * 3 + [1e-4] * 3)
    gt, est, cov = [], [], {}
    for k in range(5):
        t = 100.0 + 0.1 * k
        cam_from_world = Pose(Rotation.random(random_state=k).as_matrix(), rng.normal(size=3))
        e = np.array([0.0, 0.0, 0.0, 0.01 * k, 0.0, 0.0])  # k sigma along x
        gt.append((t, cam_from_world.inverse()))
        est.append((t + 2e-4, _perturbed(cam_from_world, e).inverse()))
        cov[f"{t:.9f}"] = C
    rep = evaluate_trajectory(est, gt, [t for t, _ in gt], covariances=cov)
    assert sorted(rep.mahalanobis.values()) == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


def _ring(n, radius=1.0):
    """``n`` cameras on a circle looking at its centre: name -> cam_from_world."""
    out = {}
    for i in range(n):
        a = 2 * np.pi * i / n
        c = radius * np.array([np.cos(a), np.sin(a), 0.0])
        z = -c / np.linalg.norm(c)  # optical axis towards the centre
        x = np.cross([0.0, 0.0, 1.0], z)
        R = np.stack([x, np.cross(z, x), z])  # rows: camera axes in the world
        out[f"v{i:02d}"] = Pose(R, -R @ c)
    return out


def test_retrieval_recall_counts_the_first_positive_and_leaves_out_queries_without_one():
    """recall@N on a ring of 24 views (even: keyframes, odd: queries, 15 deg apart): the
    positives are each query's two neighbours; a query whose positive comes third counts at 5,
    not at 1; a query with no keyframe in bounds is left out; N beyond what was retrieved is
    not reported; a keyframe the map lacks is refused."""
    from global_loc.errors import InputError
    from global_loc.retrieval.recall import evaluate_retrieval, parse_positive, positives

    views = _ring(24)
    keyframes = {n: p for i, (n, p) in enumerate(views.items()) if i % 2 == 0}
    queries = {n: p for i, (n, p) in enumerate(views.items()) if i % 2 == 1}
    kf_names = list(keyframes)
    # 15 deg steps on a 1 m ring: neighbours 0.26 m apart and turned 15 deg
    pos = positives(queries["v01"], list(keyframes.values()), 0.3, 16.0)
    assert [kf_names[i] for i in np.flatnonzero(pos)] == ["v00", "v02"]
    retrieved = {q: [f"v{(int(q[1:]) + 1) % 24:02d}", "v12", "v14"] for q in queries}  # right at rank 1
    retrieved["v05"] = ["v10", "v12", "v04", "v20"]  # first positive at rank 3
    retrieved["v07"] = ["v16", "v18", "v20"]  # none
    rep = evaluate_retrieval(retrieved, queries, keyframes, 0.3, 16.0, ns=(1, 3, 5))
    assert rep.hits["v01"] == 1 and rep.hits["v05"] == 3 and rep.hits["v07"] == 0
    assert rep.recall[0] == pytest.approx(10 / 12) and rep.recall[1] == pytest.approx(11 / 12)
    assert rep.recall[2] is None  # 3 retrieved at least, 12 keyframes: recall@5 not measured
    assert "recall@1" in rep.format() and rep.to_dict()["num_with_positives"] == 12
    # a query far from every keyframe has no positive and is not counted
    far = {"q": Pose(np.eye(3), np.array([0.0, 0.0, -10.0]))}
    rep2 = evaluate_retrieval({**retrieved, "q": ["v00"]}, {**queries, **far}, keyframes, 0.3, 16.0, ns=(1,))
    assert rep2.num_positives["q"] == 0 and rep2.recall[0] == pytest.approx(10 / 12)
    with pytest.raises(InputError, match="does not have"):
        evaluate_retrieval({"v01": ["nope"]}, queries, keyframes)
    with pytest.raises(InputError, match="METRES,DEGREES"):
        parse_positive("0.25")
    assert parse_positive("0.5,20") == (0.5, 20.0)
