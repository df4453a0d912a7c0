"""Data types shared by the pipeline: features, keyframes and localization results.

Poses and cameras live in :mod:`global_loc.geometry` and are re-exported here.
Pixel coordinates follow OpenCV (top-left pixel centre at (0, 0)); see
:mod:`global_loc.geometry.camera`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from .geometry.camera import Camera
from .geometry.covariance import world_from_cam_covariance
from .geometry.transforms import Pose

__all__ = [
    "Camera",
    "Pose",
    "LocalFeatures",
    "Keyframe",
    "Status",
    "LocalizationResult",
]


@dataclass
class LocalFeatures:
    """Local features of one image.

    Attributes:
        keypoints: (N, 2) float32, pixels of the original image, OpenCV convention.
        descriptors: (N, D) float32, each row L2-normalised.
        scores: (N,) float32 detection scores (larger is better).
        image_size: ``(width, height)`` of the image they were extracted from.
        colors: (N, 3) uint8 RGB colour of the image at each keypoint, or None.
        extras: other outputs of the network that made them, e.g. HF-Net's
            ``global_descriptor`` (D,) float32 from the same forward pass.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]
    colors: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(-1, 2)
        n = len(self.keypoints)
        self.descriptors = np.asarray(self.descriptors, dtype=np.float32)
        if self.descriptors.ndim != 2 or len(self.descriptors) != n:
            raise ValueError(
                f"descriptors must be (N={n}, D), got shape {self.descriptors.shape}"
            )
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        if self.colors is not None:
            self.colors = np.asarray(self.colors, dtype=np.uint8).reshape(n, 3)

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def dim(self) -> int:
        return self.descriptors.shape[1]

    def subset(self, index) -> "LocalFeatures":
        """The features selected by a boolean mask or an index array."""
        return LocalFeatures(
            self.keypoints[index],
            self.descriptors[index],
            self.scores[index],
            self.image_size,
            None if self.colors is None else self.colors[index],
            dict(self.extras),
        )


@dataclass
class Keyframe:
    """A mapping image with a known pose.

    Attributes:
        name: unique name (an image file name relative to the image folder, or a bag frame
            name such as ``camera_1699999999.123456789``).
        camera: its calibrated camera.
        cam_from_world: pose of the world (map) frame in the camera frame.
        stamp: acquisition time in seconds (ROS time), or NaN where unknown.
    """

    name: str
    camera: Camera
    cam_from_world: Pose
    stamp: float = float("nan")


class Status(str, enum.Enum):
    """Outcome of one localization request."""

    LOCALIZED = "localized"
    #: from the relative poses of retrieved keyframes (essential matrices), not from 2D-3D
    #: matches: the map's 3D points were too few (:mod:`global_loc.relpose`)
    LOCALIZED_RELATIVE = "localized_relative"
    NOT_LOCALIZED = "not_localized"
    FAILED = "failed"  # the input could not be processed (unreadable image, wrong size, ...)


#: The statuses that carry a pose.
LOCALIZED_STATUSES = (Status.LOCALIZED, Status.LOCALIZED_RELATIVE)


@dataclass
class LocalizationResult:
    """What the localizer says about one query image.

    Attributes:
        status: :class:`Status`; only ``LOCALIZED`` and ``LOCALIZED_RELATIVE`` carry a pose.
        reason: why it is not localized (empty when localized), e.g.
            ``"best place: 7 inliers < min_inliers 12"``.
        cam_from_world: the estimated pose of the map frame in the camera frame, or None.
        covariance: (6, 6) float64 covariance of ``cam_from_world``, or None: over
            ``[dtheta (3), dt (3)]`` with ``R' = exp([dtheta]x) R`` (radians, camera frame) and
            ``t' = t + dt`` (metres), scaled by the a-posteriori variance of the inlier
            reprojection residuals. :meth:`world_from_cam_covariance` gives the ROS form.
        num_inliers: PnP inliers of the winning place (or the best place when it failed).
        inlier_ratio: ``num_inliers / num_matches`` of that place.
        num_matches: 2D-3D matches of that place.
        keyframes: names of the keyframes of that place, best retrieval rank first.
        retrieved: names of all retrieved keyframes, best first.
        timings: seconds spent in each stage (``decode``, ``local_features``,
            ``global_descriptor``, ``retrieval``, ``clustering``, ``matching``, ``pnp``,
            ``total``).
        inlier_keypoints: (I, 2) float32 pixels of the inlier query keypoints, or None.
        inlier_points3D: (I, 3) float64 world points matched to them, or None.
        inlier_point_rows: (I,) int64 rows of those points in the map, or None.
        mode: what produced the result: ``"global"`` (retrieval and 2D-3D matching against
            places), ``"tracking"`` (matching against the local map of a pose prior) or
            ``"flow"`` (the previous frame's inliers followed by optical flow); see
            :mod:`global_loc.tracking`; ``"relative"``: from the relative poses of retrieved
            keyframes (:mod:`global_loc.relpose`).
        tracking: what tracking said for this frame: empty when it was not tried,
            ``"localized"``, or why local-map tracking failed.
        refinement: what feature-metric refinement did (empty when it did not run): the
            ``to_log()`` of a :class:`~global_loc.refinement.featuremetric.RefinementOutcome`,
            with the pose before refinement (``q_wxyz_before``, ``t_before``).
        ambiguity: for a query where two places that look alike both fit with poses that
            disagree: the two places' keyframes and inliers, how far apart their poses are,
            and ``chosen_by`` (``"prior"``: the pose prior picked one, the result is localized;
            ``""``: refused, not localized); empty otherwise.
        prior_rejected: a global query's evidence rejected the pose prior it was given (the
            pose it found is far from the prior, or the prior agrees only with a clearly weaker
            look-alike): whoever keeps the track (the motion model) should drop it.
        rig: for a rig frame (:class:`~global_loc.rig_localizer.RigLocalizer`), per camera its
            2D-3D matches and inliers, and ``fallback``: the one camera whose own pose was used
            (None when the rig's pose was solved from several); empty otherwise.
        camera: the query camera with the focal length PnP estimated, for a query whose focal
            length was a guess (:meth:`~global_loc.localizer.Localizer.localize`'s
            ``focal_unknown``); None otherwise.
    """

    status: Status
    reason: str = ""
    cam_from_world: Pose | None = None
    covariance: np.ndarray | None = None
    num_inliers: int = 0
    inlier_ratio: float = 0.0
    num_matches: int = 0
    keyframes: list[str] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    inlier_keypoints: np.ndarray | None = None
    inlier_points3D: np.ndarray | None = None
    inlier_point_rows: np.ndarray | None = None
    mode: str = "global"
    tracking: str = ""
    refinement: dict = field(default_factory=dict)
    camera: object = None
    ambiguity: dict = field(default_factory=dict)
    prior_rejected: bool = False
    rig: dict = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """Whether the result carries a pose (``LOCALIZED`` or ``LOCALIZED_RELATIVE``)."""
        return self.status in LOCALIZED_STATUSES

    def accept(self, pnp, keypoints: np.ndarray, points3D: np.ndarray,
               point_rows: np.ndarray | None = None) -> "LocalizationResult":
        """Mark localized with the pose of ``pnp`` (a :class:`~global_loc.geometry.pnp.PnPResult`
        that passed the checks) solved from ``keypoints`` (N, 2) and ``points3D`` (N, 3), whose
        map rows are ``point_rows`` (N,) where known."""
        self.status = Status.LOCALIZED
        self.cam_from_world = pnp.cam_from_world
        self.covariance = pnp.covariance
        self.inlier_keypoints = keypoints[pnp.inliers]
        self.inlier_points3D = points3D[pnp.inliers]
        self.inlier_point_rows = None if point_rows is None else np.asarray(point_rows, np.int64)[pnp.inliers]
        self.camera = getattr(pnp, "camera", None)
        return self

    def world_from_cam_covariance(self) -> np.ndarray | None:
        """(6, 6) covariance of the camera pose in the world frame, in the convention of
        ``geometry_msgs/PoseWithCovariance``: ``[x, y, z, rot_x, rot_y, rot_z]``, metres and
        radians about the world's fixed axes; None without a pose."""
        if self.cam_from_world is None or self.covariance is None:
            return None
        return world_from_cam_covariance(self.cam_from_world, self.covariance)

    def to_log(self) -> dict:
        """A JSON-serialisable summary: no arrays but ``covariance`` (6x6 nested lists, as
        the attribute), the pose as ``q_wxyz`` and ``t`` of ``cam_from_world``, and the world
        frame's standard deviations."""
        out = {
            "status": self.status.value,
            "reason": self.reason,
            "mode": self.mode,
            "num_inliers": int(self.num_inliers),
            "num_matches": int(self.num_matches),
            "inlier_ratio": round(float(self.inlier_ratio), 4),
            "keyframes": list(self.keyframes),
            "retrieved": list(self.retrieved),
            "timings_ms": {k: round(v * 1e3, 3) for k, v in self.timings.items()},
        }
        if self.tracking:
            out["tracking"] = self.tracking
        if self.refinement:
            out["refinement"] = dict(self.refinement)
        if self.ambiguity:
            out["ambiguity"] = dict(self.ambiguity)
        if self.prior_rejected:
            out["prior_rejected"] = True
        if self.rig:
            out["rig"] = dict(self.rig)
        if self.camera is not None:  # the focal length PnP estimated for a guessed camera
            out["camera"] = {"model": self.camera.model, "width": self.camera.width, "height": self.camera.height,
                             "params": [float(v) for v in self.camera.params]}
        if self.cam_from_world is not None:
            out["q_wxyz"] = self.cam_from_world.q_wxyz.tolist()
            out["t"] = self.cam_from_world.t.tolist()
        if self.covariance is not None:  # of cam_from_world, over [dtheta (rad), dt (m)]
            out["covariance"] = np.asarray(self.covariance, np.float64).tolist()
        cov = self.world_from_cam_covariance()
        if cov is not None:
            sd = np.sqrt(np.clip(np.diag(cov), 0, None))
            out["std_position_m"] = sd[:3].round(6).tolist()
            out["std_rotation_deg"] = np.degrees(sd[3:]).round(5).tolist()
        return out
