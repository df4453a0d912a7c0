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
