"""The map in memory: the global-descriptor index of keyframes and the local map."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from ..types import Keyframe


@dataclass
class MapIndex:
    """A map: keyframes with poses and global descriptors, 3D points and their observations.

    Keyframes are rows ``0..K-1``; the observations of keyframe ``i`` are rows
    ``obs_offsets[i]:obs_offsets[i+1]`` of the ``obs_*`` arrays (compressed-row layout); only
    keypoints that observe a 3D point are stored. Points are rows ``0..P-1``.

    Attributes:
        keyframe_ids: (K,) int64 ids (COLMAP image ids for an imported model).
        names: K keyframe names.
        stamps: (K,) float64 seconds, NaN where unknown.
        q_wxyz: (K, 4) float64 and ``t``: (K, 3) float64: ``cam_from_world`` of each keyframe.
        camera_index: (K,) int32 row in ``cameras``.
        cameras: the distinct cameras.
        global_descriptors: (K, Dg) float32, L2-normalised.
        obs_offsets: (K + 1,) int64.
        obs_keypoints: (O, 2) float32 pixels, OpenCV convention.
        obs_descriptors: (O, Dl) float16 (or float32) local descriptors, L2-normalised.
        obs_point_index: (O,) int64 row of the observed point.
        point_ids: (P,) int64; points_xyz: (P, 3) float64 metres in the map frame;
        points_rgb: (P, 3) uint8; points_error: (P,) float32 mean reprojection error, px.
        local_features, global_descriptor: ``{"name", "dim", "conf"}`` of the models that made
            the descriptors.
        global_state: learned arrays of the global descriptor (VLAD vocabulary, PCA).
        frame_id: name of the map frame.
        metadata: free-form build information (configuration, source, statistics).
        point_features: (P, Dr) float16 (or float32) reference features of the points for
            feature-metric refinement (:mod:`global_loc.refinement.reference`; NaN rows: none),
            or None for a map without them (schema version 1, or built without a source).
        dense_features: ``{"name", "dim", "conf"}`` of the dense feature source of
            ``point_features`` (empty without them).
        free_offsets: (K + 1,) int64; free_keypoints: (F, 2) float32 pixels; free_descriptors:
            (F, Dl) float16 or float32: the keyframes' keypoints that observe no 3D point
            (schema version 3; None: empty, the map keeps none).
        retrieval_index: the approximate retrieval index trained for ``global_descriptors``
            (a :class:`~global_loc.retrieval.index.TrainedIndex`), or None: exact search.
    """

    keyframe_ids: np.ndarray
    names: list[str]
    stamps: np.ndarray
    q_wxyz: np.ndarray
    t: np.ndarray
    camera_index: np.ndarray
    cameras: list[Camera]
    global_descriptors: np.ndarray
    obs_offsets: np.ndarray
    obs_keypoints: np.ndarray
    obs_descriptors: np.ndarray
    obs_point_index: np.ndarray
    point_ids: np.ndarray
    points_xyz: np.ndarray
    points_rgb: np.ndarray
    points_error: np.ndarray
    local_features: dict
    global_descriptor: dict
    global_state: dict = field(default_factory=dict)
    frame_id: str = "map"
    metadata: dict = field(default_factory=dict)
    point_features: np.ndarray | None = None
    dense_features: dict = field(default_factory=dict)
    free_offsets: np.ndarray | None = None
    free_keypoints: np.ndarray | None = None
    free_descriptors: np.ndarray | None = None
    retrieval_index: object | None = None

    def __post_init__(self):
        if self.free_offsets is None:
            self.free_offsets = np.zeros(len(self.names) + 1, np.int64)
            self.free_keypoints = np.zeros((0, 2), np.float32)
            self.free_descriptors = np.zeros((0,) + self.obs_descriptors.shape[1:], self.obs_descriptors.dtype)
        self.validate()
        self._name_to_row = {n: i for i, n in enumerate(self.names)}
        self._point_sets: list[np.ndarray] | None = None
        self._point_covariances: tuple[float | None, np.ndarray, float] | None = None

    # --- sizes -----------------------------------------------------------------------------
    @property
    def num_keyframes(self) -> int:
        return len(self.names)

    @property
    def num_points3D(self) -> int:
        return len(self.point_ids)

    @property
    def num_observations(self) -> int:
        return len(self.obs_point_index)

    @property
    def num_free_features(self) -> int:
        """Keypoints kept that observe no 3D point (0 when the map keeps none)."""
        return len(self.free_keypoints)

    def validate(self) -> None:
        """Check that the arrays agree with each other.

        Raises:
            InputError: naming the first inconsistency.
        """
        k = len(self.names)
        checks = [
            (len(set(self.names)) == k, "keyframe names must be unique"),
            (self.keyframe_ids.shape == (k,), "keyframe_ids must be (K,)"),
            (self.stamps.shape == (k,), "stamps must be (K,)"),
            (self.q_wxyz.shape == (k, 4) and self.t.shape == (k, 3), "poses must be (K, 4), (K, 3)"),
            (self.camera_index.shape == (k,), "camera_index must be (K,)"),
            (k == 0 or (self.camera_index.min() >= 0 and self.camera_index.max() < len(self.cameras)),
             "camera_index out of range"),
            (self.global_descriptors.ndim == 2 and len(self.global_descriptors) == k,
             "global_descriptors must be (K, D)"),
            (self.obs_offsets.shape == (k + 1,) and self.obs_offsets[0] == 0
             and self.obs_offsets[-1] == len(self.obs_point_index)
             and np.all(np.diff(self.obs_offsets) >= 0), "obs_offsets inconsistent"),
            (len(self.obs_keypoints) == len(self.obs_point_index) == len(self.obs_descriptors),
             "observation arrays differ in length"),
            (len(self.obs_point_index) == 0 or (self.obs_point_index.min() >= 0
             and self.obs_point_index.max() < len(self.point_ids)), "obs_point_index out of range"),
            (self.points_xyz.shape == (len(self.point_ids), 3), "points_xyz must be (P, 3)"),
            (self.point_features is None or (self.point_features.ndim == 2
             and len(self.point_features) == len(self.point_ids)), "point_features must be (P, Dr)"),
            (self.free_offsets is not None and self.free_offsets.shape == (k + 1,) and self.free_offsets[0] == 0
             and self.free_offsets[-1] == len(self.free_keypoints) == len(self.free_descriptors)
             and np.all(np.diff(self.free_offsets) >= 0), "free_offsets inconsistent"),
            (len(self.free_keypoints) == 0 or len(self.obs_descriptors) == 0
             or self.free_descriptors.shape[1] == self.obs_descriptors.shape[1],
             "free and observation descriptors differ in size"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(f"inconsistent map: {msg}")

    # --- keyframes ---------------------------------------------------------------------------
    def row_of(self, name: str) -> int:
        """Row of the keyframe called ``name``.

        Raises:
            KeyError: for an unknown name.
        """
        return self._name_to_row[name]

    def cam_from_world(self, i: int) -> Pose:
        return Pose.from_qt(self.q_wxyz[i], self.t[i])

    def camera(self, i: int) -> Camera:
        return self.cameras[int(self.camera_index[i])]

    def keyframe(self, i: int) -> Keyframe:
        """Keyframe ``i`` (name, camera, cam_from_world, stamp)."""
        return Keyframe(self.names[i], self.camera(i), self.cam_from_world(i), float(self.stamps[i]))

    def observation_rows(self, i: int) -> slice:
        return slice(int(self.obs_offsets[i]), int(self.obs_offsets[i + 1]))

    def keyframe_features(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All the local features the map keeps of keyframe ``i``: those observing a 3D point,
        then the free ones.

        Returns:
            ``(keypoints (N, 2) float32 pixels, descriptors (N, Dl) as stored, point_index (N,)
            int64 row of the observed point, -1 for a free keypoint)``.
        """
        o, f = self.observation_rows(i), slice(int(self.free_offsets[i]), int(self.free_offsets[i + 1]))
        nf = f.stop - f.start
        return (np.concatenate([self.obs_keypoints[o], self.free_keypoints[f]]),
                _matchable(np.concatenate([self.obs_descriptors[o],
                                           self.free_descriptors[f].astype(self.obs_descriptors.dtype)])),
                np.concatenate([self.obs_point_index[o], np.full(nf, -1, np.int64)]))

    def without_points(self) -> "MapIndex":
        """The same keyframes (poses, global descriptors, cameras) and all their kept keypoints,
        without 3D points: every observation becomes a free keypoint. A map for pose from
        retrieved neighbours alone (:mod:`global_loc.relpose`), e.g. to measure it, or the state
        of keyframes not yet triangulated."""
        k = self.num_keyframes
        kps, descs = [], []
        for i in range(k):
            kp, d, _ = self.keyframe_features(i)
            kps.append(kp)
            descs.append(d)
        free_offsets = np.zeros(k + 1, np.int64)
        np.cumsum([len(x) for x in kps], out=free_offsets[1:])
        dl = self.obs_descriptors.shape[1:]
        return MapIndex(
            keyframe_ids=self.keyframe_ids, names=list(self.names), stamps=self.stamps, q_wxyz=self.q_wxyz,
            t=self.t, camera_index=self.camera_index, cameras=list(self.cameras),
            global_descriptors=self.global_descriptors, obs_offsets=np.zeros(k + 1, np.int64),
            obs_keypoints=np.zeros((0, 2), np.float32), obs_descriptors=np.zeros((0,) + dl, self.obs_descriptors.dtype),
            obs_point_index=np.zeros(0, np.int64), point_ids=np.zeros(0, np.int64),
            points_xyz=np.zeros((0, 3)), points_rgb=np.zeros((0, 3), np.uint8), points_error=np.zeros(0, np.float32),
            local_features=dict(self.local_features), global_descriptor=dict(self.global_descriptor),
            global_state=dict(self.global_state), frame_id=self.frame_id, metadata=dict(self.metadata),
            point_features=None, dense_features={},
            retrieval_index=self.retrieval_index,
            free_offsets=free_offsets,
            free_keypoints=np.concatenate(kps) if kps else np.zeros((0, 2), np.float32),
            free_descriptors=np.concatenate(descs) if descs else np.zeros((0,) + dl, self.obs_descriptors.dtype),
        )

    def points_of(self, i: int) -> np.ndarray:
        """Sorted unique (n,) int64 point rows observed by keyframe ``i``."""
        if self._point_sets is None:
            self._point_sets = [
                np.unique(self.obs_point_index[self.observation_rows(j)])
                for j in range(self.num_keyframes)
            ]
        return self._point_sets[i]

    def num_shared_points(self, i: int, j: int) -> int:
        """Covisibility: the number of 3D points keyframes ``i`` and ``j`` both observe."""
        return int(len(np.intersect1d(self.points_of(i), self.points_of(j), assume_unique=True)))

    def point_covariances(self, rows, noise_px: float | None = None) -> np.ndarray:
        """Triangulation covariances of the points at ``rows``, with the keyframe poses exact.

        Computed for the whole map on the first call from its own observations
        (:func:`~global_loc.geometry.covariance.triangulation_covariances`), then kept.

        Args:
            rows: (N,) int point rows.
            noise_px: the keypoints' standard deviation, pixels; None: the a-posteriori value
                of the map's reprojection residuals (:attr:`point_noise_px`).
        Returns:
            (N, 3, 3) float32, m^2, world frame; infinite where a point is not determined.
        """
        if self._point_covariances is None or self._point_covariances[0] != noise_px:
            from ..geometry.covariance import triangulation_covariances

            kf = np.repeat(np.arange(self.num_keyframes), np.diff(self.obs_offsets))
            cov, used = triangulation_covariances(
                self.points_xyz, kf, self.obs_point_index, self.obs_keypoints,
                [self.camera(i) for i in range(self.num_keyframes)],
                [self.cam_from_world(i) for i in range(self.num_keyframes)], noise_px)
            self._point_covariances = (noise_px, cov, used)
        return self._point_covariances[1][np.asarray(rows, np.int64)]

    def stored_point_covariances(self) -> tuple[np.ndarray, float] | None:
        """The points' covariances with the map's own noise, ``((P, 3, 3) float32, noise_px)``,
        where they have been computed (the map builder does, and version 3 maps keep them), or
        None."""
        c = self._point_covariances
        return None if c is None or c[0] is not None else (c[1], c[2])

    def restore_point_covariances(self, covariances: np.ndarray, noise_px: float) -> None:
        """Take ``covariances`` (P, 3, 3) with the map's own noise ``noise_px`` as computed (a
        map file's, from :meth:`stored_point_covariances`), so that none is computed again.

        Raises:
            InputError: an array that is not (P, 3, 3).
        """
        if np.shape(covariances) != (self.num_points3D, 3, 3):
            raise InputError(f"inconsistent map: point covariances of shape {np.shape(covariances)} for "
                             f"{self.num_points3D} points")
        self._point_covariances = (None, covariances, float(noise_px))

    @property
    def point_noise_px(self) -> float:
        """The keypoints' standard deviation that the map's reprojection residuals show
        (``sqrt(sum r^2 / (2 O - 3 P))``), pixels; computed with :meth:`point_covariances`."""
        if self._point_covariances is None:
            self.point_covariances(np.zeros(0, np.int64))
        return self._point_covariances[2]

    def covisibility(self, rows) -> np.ndarray:
        """(n, n) int64 matrix of the 3D points each pair of the given keyframes both observe
        (its diagonal: the points each observes), from one sparse product of their rows of the
        incidence matrix, built from their own observations only: no work, and nothing read,
        in proportion to the map's size."""
        from scipy.sparse import csr_matrix

        rows = np.asarray(rows, np.int64).reshape(-1)
        counts = self.obs_offsets[rows + 1] - self.obs_offsets[rows]
        first = np.repeat(self.obs_offsets[rows] - (np.cumsum(counts) - counts), counts)
        points = np.asarray(self.obs_point_index[first + np.arange(int(counts.sum()))], np.int64)
        sub = csr_matrix((np.ones(len(points), np.int32), (np.repeat(np.arange(len(rows)), counts), points)),
                         shape=(len(rows), self.num_points3D))
        sub.sum_duplicates()
        sub.data[:] = 1  # a keyframe observing a point twice counts once
        return np.asarray((sub @ sub.T).toarray(), np.int64)

    def gather_observations(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors and point rows of all observations of the given keyframes (a descriptor
        that is not finite, which only a damaged file holds, comes as zeros: it matches nothing).

        Returns:
            ``(descriptors (O, Dl) as stored, point_index (O,) int64)``.
        """
        idx = np.concatenate(
            [np.arange(self.obs_offsets[r], self.obs_offsets[r + 1]) for r in rows]
        ) if len(rows) else np.zeros(0, np.int64)
        return _matchable(self.obs_descriptors[idx]), self.obs_point_index[idx]

    def check_localizable(self) -> None:
        """Raise when no query could ever be localized against this map: it has no 3D point
        (and keeps no free keypoints for the relative-pose fallback).

        Raises:
            EmptyMapError: with what to record instead.
        """
        from ..errors import EmptyMapError

        if self.num_points3D == 0 and self.num_free_features == 0:
            raise EmptyMapError(
                f"the map would hold no 3D point ({self.num_keyframes} keyframe(s), no feature seen by two of "
                "them with enough parallax), so no query could be localized; not written. Record keyframes that "
                "see the same scene from viewpoints some decimetres apart: a longer run (a map needs at least "
                "two overlapping keyframes; global-loc index takes one every 0.2 m or 10 deg from a bag, "
                "--min-distance lowers it), or check that the poses are right (global-loc inspect --bag)")

    def summary(self) -> str:
        """One paragraph describing the map."""
        observed = int(np.unique(np.asarray(self.obs_point_index)).size) if self.num_observations else 0
        track = self.num_observations / max(observed, 1)  # over the points that have an observation
        lf, gd = self.local_features, self.global_descriptor
        free = f", {self.num_free_features} free keypoints" if self.num_free_features else ""
        if observed < self.num_points3D:  # e.g. a COLMAP model's points that no extracted keypoint observes
            free += f", {self.num_points3D - observed} points without an observation (never matched)"
        if self.retrieval_index is not None:
            free += f", {self.retrieval_index.kind} retrieval index"
        return (
            f"{self.num_keyframes} keyframes, {self.num_points3D} 3D points, "
            f"{self.num_observations} observations (mean track length {track:.2f}){free}, "
            f"{len(self.cameras)} camera(s); local features {lf.get('name')} ({lf.get('dim')}-d), "
            f"global descriptor {gd.get('name')} ({gd.get('dim')}-d); frame '{self.frame_id}'"
        )


_EXPONENT_BITS = {np.dtype(np.float16): (np.uint16, np.uint16(0x7C00)),
                  np.dtype(np.float32): (np.uint32, np.uint32(0x7F800000))}


def _matchable(descriptors: np.ndarray) -> np.ndarray:
    """``descriptors`` (a fresh copy, changed in place) with rows that are not finite set to
    zero. The map reader does not read every descriptor at opening (gigabytes for a large map):
    a NaN would reach matching and, through the mutual check's column maxima, spoil every match
    of its place; a zero row matches nothing instead. An exponent test on the bits: 0.3 ms for
    the 7356 x 128 float16 descriptors of a temple query (``np.isfinite``: 1.5 ms)."""
    if descriptors.dtype in _EXPONENT_BITS:
        uint, mask = _EXPONENT_BITS[descriptors.dtype]
        bad = ((descriptors.view(uint) & mask) == mask).any(axis=1)  # all exponent bits set: inf or NaN
    else:
        bad = ~np.isfinite(descriptors).all(axis=1)
    if bad.any():
        descriptors[bad] = 0
    return descriptors


def kept_features(m: MapIndex, i: int):
    """What map ``m`` keeps of keyframe row ``i`` as
    :class:`~global_loc.types.LocalFeatures` (its observations, then its free keypoints;
    descriptors float32, scores 1, the image size of its camera) and the point row each
    keypoint observes ((N,) int64, -1: free): the input of an update or a merge, which have
    no images."""
    from ..types import LocalFeatures

    kp, desc, point = m.keyframe_features(i)
    cam = m.camera(i)
    return (LocalFeatures(np.asarray(kp, np.float32), np.asarray(desc, np.float32), np.ones(len(kp), np.float32),
                          (cam.width, cam.height)), np.asarray(point, np.int64))
