"""Tracking against the map between global queries.

A global query (retrieval, covisibility clustering, 2D-3D matching against whole places,
PnP-RANSAC) costs most of a frame's time budget on a small CPU. Between global queries, the
pose of the previous frame predicts which map points the next one sees and where; matching
only those points, and keeping the matches that land near their projection, is a fraction of
the work. The idea is
ORB-SLAM's "track local map" (Mur-Artal, Montiel and Tardos, "ORB-SLAM: a Versatile and
Accurate Monocular SLAM System", T-RO 2015, section V-D), here against a fixed, prebuilt map:

- :class:`MotionModel` keeps the last localized poses and predicts a :class:`PosePrior` for a
  new frame: the last pose composed with the odometry's motion since then (tf), or a
  constant-velocity extrapolation without odometry; none when the last pose is too old.
- :class:`LocalMapTracker` localizes one frame from a prior: the keyframes nearest to the
  prior, their 3D points projected with it, descriptor matching to those points (mutual, ratio
  test) with matches kept only near their projection, and PnP-RANSAC with the same inlier checks as a global query, plus a bound on how far the
  pose may move from its prior.

- :class:`FlowTracker` follows the previous frame's inliers into the next frame with optical
  flow (no descriptors), for up to ``flow_max_interval_s`` of image time (and at most
  ``flow_max_frames`` frames) between two local-map steps.

A pose never comes from a prior alone: every tracked pose is solved from its own 2D-3D inliers.
The prior chooses the keyframes, never the matches: a ratio test among the few points of a
window passes for wrong matches too, and wrong matches chosen near a wrong prior's projections
agree with it, so PnP would confirm it (the kidnapping test of ``test/test_tracking.py``).
"""
from .flow import FlowReference, FlowTracker
from .local_map import LocalMapTracker
from .motion import MotionModel, PosePrior

__all__ = ["FlowReference", "FlowTracker", "LocalMapTracker", "MotionModel", "PosePrior"]
