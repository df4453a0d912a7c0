import numpy as np
import pytest

from global_loc.geometry.tf_tree import TransformBuffer, TransformError
from global_loc.geometry.transforms import Pose, rotation_angle_deg


def yaw(deg, t=(0, 0, 0)):
    a = np.radians(deg) / 2
    return Pose.from_qt([np.cos(a), 0, 0, np.sin(a)], t)


@pytest.fixture
def robot():
    """map -> odom (dynamic), odom -> base_link (dynamic), base_link -> camera (static)."""
    tf = TransformBuffer(tolerance=0.01)
    tf.add("map", "odom", 0.0, Pose(np.eye(3), [1, 0, 0]))
    tf.add("map", "odom", 10.0, Pose(np.eye(3), [1, 0, 0]))
    tf.add("odom", "base_link", 0.0, yaw(0, (0, 0, 0)))
    tf.add("odom", "base_link", 2.0, yaw(90, (2, 0, 0)))
    tf.add("base_link", "camera_optical", 0.0, Pose.from_qt([0.5, -0.5, 0.5, -0.5], [0.2, 0, 0.5]), static=True)
    return tf


def test_chain_and_interpolation(robot):
    m_b = robot.lookup("map", "base_link", 1.0)
    assert np.allclose(m_b.t, [2.0, 0, 0])  # halfway: odom x = 1, plus map->odom 1
    assert rotation_angle_deg(m_b.R) == pytest.approx(45.0)
    m_c = robot.lookup("map", "camera_optical", 2.0)
    expected = Pose(np.eye(3), [1, 0, 0]) * yaw(90, (2, 0, 0)) * Pose.from_qt([0.5, -0.5, 0.5, -0.5], [0.2, 0, 0.5])
    assert np.allclose(m_c.matrix(), expected.matrix())
    # inverse lookups and siblings through the common ancestor
    assert np.allclose(robot.lookup("camera_optical", "map", 2.0).matrix(), expected.inverse().matrix())
    assert np.allclose(robot.lookup("odom", "odom", 3.0).matrix(), np.eye(4))


def test_static_edges_hold_at_all_times_and_dynamic_ones_do_not_extrapolate(robot):
    robot.lookup("base_link", "camera_optical", 1e6)
    robot.lookup("map", "base_link", 2.005)  # within tolerance
    with pytest.raises(TransformError, match=r"odom -> base_link at t=3.0.*span \[0.0+, 2.0+\]"):
        robot.lookup("map", "base_link", 3.0)


def test_errors_name_the_frames(robot):
    with pytest.raises(TransformError, match="frame 'lidar' does not exist.*base_link"):
        robot.lookup("map", "lidar", 1.0)
    robot.add("world", "gps", 0.0, Pose.identity(), static=True)
    with pytest.raises(TransformError, match="not connected"):
        robot.lookup("map", "gps", 1.0)
    with pytest.raises(TransformError, match="two parents"):
        robot.add("map", "base_link", 0.0, Pose.identity())


def test_out_of_order_samples():
    tf = TransformBuffer()
    for t in (3.0, 1.0, 2.0):
        tf.add("a", "b", t, Pose(np.eye(3), [t, 0, 0]))
    assert np.allclose(tf.lookup("a", "b", 1.5).t, [1.5, 0, 0])
    assert tf.edges() == [("a", "b", False, 3)]
