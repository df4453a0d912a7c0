"""Tracking against the map between global queries.

A global query (retrieval, covisibility clustering, 2D-3D matching against whole places,
PnP-RANSAC) costs most of a frame's time budget on a small CPU. Between global queries, the
pose of the previous frame predicts where the map points are in the next one; matching only
those points, in a window around their projection, is a fraction of the work. The idea is
ORB-SLAM's "track local map" (Mur-Artal, Montiel and Tardos, "ORB-SLAM: a Versatile and
Accurate Monocular SLAM System", T-RO 2015, section V-D), here against a fixed, prebuilt map:

- :class:`MotionModel` keeps the last localized poses and predicts a :class:`PosePrior` for a
  new frame: the last pose composed with the odometry's motion since then (tf), or a
  constant-velocity extrapolation without odometry; none when the last pose is too old.
- :class:`LocalMapTracker` localizes one frame from a prior: the keyframes nearest to the
  prior, their 3D points projected with it, windowed descriptor matching with a ratio test,
  and PnP-RANSAC with the same inlier checks as a global query, plus a bound on how far the
  pose may move from its prior.

A pose never comes from a prior alone: every tracked pose is solved from its own 2D-3D inliers.
"""
from .local_map import LocalMapTracker
from .motion import MotionModel, PosePrior

__all__ = ["LocalMapTracker", "MotionModel", "PosePrior"]
