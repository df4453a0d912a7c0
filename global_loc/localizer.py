"""The Localizer: hierarchical localization of one image against a map.

Sarlin, Cadena, Siegwart and Dymczyk, "From Coarse to Fine: Robust Hierarchical Localization
at Large Scale" (HF-Net), CVPR 2019:

1. local features and a global descriptor of the query;
2. top-k keyframes by global descriptor (faiss);
3. covisibility clustering of the retrieved keyframes into places;
4. per place, best-ranked first: 2D-3D matches between the query's descriptors and the
   observations of the place's 3D points (mutual nearest neighbour + ratio test over points);
5. PnP-RANSAC with non-linear refinement (pycolmap) for every place (up to ``max_places``); of
   those whose pose passes the inlier thresholds the strongest wins, unless another one fits too
   (at least ``ambiguity_min_ratio`` of its inliers) with a pose that disagrees: then the query
   is ``not_localized``, "ambiguous" (perceptual aliasing: places that look alike), unless a
   pose prior (tracking) agrees with one of them only;
6. optionally (``refinement.method: featuremetric``), feature-metric refinement of that pose
   (PixLoc / DRAN, :mod:`global_loc.refinement`), kept only when it passes its checks;
7. when no place passes (``relpose.enabled``), the pose from the relative poses of the retrieved
   keyframes (essential matrices, :mod:`global_loc.relpose`), with status
   ``localized_relative``; a map without 3D points goes there straight away.

When no place passes, the result says "not localized", with the reason, and carries no pose.
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager

import cv2
import numpy as np

from . import __version__
from .config import LocalizationConf, PipelineConf, known_keys, load_preset, resolve_conf, to_dict
from .errors import ConfigError, EmptyMapError, ImageReadError, MapMismatchError
from .features import EXTRACTORS, LocalFeatureExtractor, create_extractor
from .features.base import rescale_keypoints
from .geometry.camera import Camera
from .geometry.covariance import point_weights
from .geometry.covisibility import covisibility_clusters
from .geometry.pnp import acceptance_problems, estimate_absolute_pose
from .map.index import MapIndex
from .map.storage import read_map
from .matching.matchers import create_place_matcher
from .refinement import create_dense_features
from .refinement.featuremetric import FeatureMetricRefiner
from .relpose import RelativePoseLocalizer
from .retrieval import GlobalDescriptorModel, create_global_model
from .retrieval.index import RetrievalIndex
from .runtime.memory import retain_freed_memory
from .runtime.threads import limit_blas_threads
from .tracking import FlowTracker, LocalMapTracker, PosePrior
from .types import LocalFeatures, LocalizationResult, Status

logger = logging.getLogger(__name__)

#: Maps with up to this many observations get their points' covariances when the localizer
#: starts (0.09 s for the robot world's 135 k); larger ones at their first query, so that a
#: memory-mapped map opens without reading all its observations.
EAGER_POINT_COVARIANCES_MAX_OBSERVATIONS = 2_000_000

STAGES = (
    "decode",
    "preprocess",
    "local_features",
    "global_descriptor",
    "retrieval",
    "clustering",
    "flow",
    "local_map",
    "matching",
    "pnp",
    "relative_pose",
    "refinement",
    "total",
)


class _Timer:
    def __init__(self):
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] = self.times.get(stage, 0.0) + time.perf_counter() - t


def _same_conf(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _map_features_conf(map_index: MapIndex) -> dict:
    """The local features' options recorded in the map, with the values that options added
    since had before (an extractor's ``legacy_conf``) where the record lacks them."""
    name, conf = map_index.local_features["name"], dict(map_index.local_features["conf"])
    try:
        legacy = getattr(EXTRACTORS.get(name), "legacy_conf", {})
    except ConfigError:
        legacy = {}
    return {**legacy, **conf}


def conf_for_map(map_index: MapIndex, preset: str | None = None, overrides=(), models_dir: str | None = None,
                 device: str | None = None, settings: dict | None = None) -> PipelineConf:
    """The configuration to localize against ``map_index`` (:func:`~global_loc.config.resolve_conf`).

    Without ``preset``: the preset recorded in the map, with the map's own model options (so the
    descriptors match). Then the ``section.key=value`` overrides (e.g.
    ``features.backend=onnxruntime``), then ``settings`` (``{"section.key": value}``: the flags
    and node parameters a user set; None: not set), and the models folder and device where given.

    Raises:
        ConfigError: see :func:`~global_loc.config.resolve_conf`.
    """
    base = None
    if not preset:
        data = map_index.metadata.get("preset") or to_dict(load_preset())
        if not isinstance(data, dict):
            data = to_dict(load_preset())
        base, dropped = known_keys(PipelineConf, dict(data))
        if dropped:
            logger.warning("the map's preset has options this global_loc %s does not know, left out: %s",
                           __version__, ", ".join(dropped))
        base["features"] = dict(_map_features_conf(map_index), name=map_index.local_features["name"])
        base["global_descriptor"] = dict(map_index.global_descriptor["conf"], name=map_index.global_descriptor["name"])
    settings = {**(settings or {}), "models_dir": str(models_dir) if models_dir else None, "device": device or None}
    return resolve_conf(preset, overrides, settings, base=base)


class Localizer:
    """Localizes query images against a :class:`MapIndex`.

    Making one sets two things process-wide: the BLAS threads (``conf.blas_threads``,
    :mod:`global_loc.runtime.threads`) and glibc's malloc thresholds
    (``conf.malloc_trim_threshold_mib``, :mod:`global_loc.runtime.memory`: a frame's large
    temporaries reuse the last frame's pages instead of faulting new ones in).

    Args:
        map_index: the map.
        conf: a :class:`PipelineConf` or preset name for the ``matching`` and
            ``localization`` sections; by default, the preset recorded in the map. Its
            ``features`` and ``global_descriptor`` must equal the map's, since the map's
            descriptors were made with them.
        extractor, global_model: already-built models to use (checked against the map).
    Raises:
        EmptyMapError: a map without keyframes, or without 3D points unless ``relpose`` is
            enabled and the map keeps its keyframes' features (then every query goes to
            pose from neighbours).
        MapMismatchError: models that differ from the map's (name, size or configuration);
            feature-metric refinement asked of a map without reference features of the
            configured dense source.
    """

    def __init__(
        self,
        map_index: MapIndex,
        conf: PipelineConf | str | None = None,
        extractor: LocalFeatureExtractor | None = None,
        global_model: GlobalDescriptorModel | None = None,
    ):
        if map_index.num_keyframes == 0:
            raise EmptyMapError("the map has no keyframes; rebuild it with keyframes that have images")
        self.map = map_index
        if conf is None:
            conf = conf_for_map(map_index)
        elif not isinstance(conf, PipelineConf):
            conf = load_preset(conf)
        self.conf = conf
        if map_index.num_points3D == 0 or map_index.num_observations == 0:
            if not (conf.relpose.enabled and map_index.num_free_features):
                raise EmptyMapError(
                    "the map has no triangulated 3D points, so no query can be localized against it by "
                    "PnP; check that its keyframes overlap and that their poses are right"
                    + ("" if map_index.num_free_features else
                       ", or build it with mapping.store_free_features=true for pose from neighbours alone")
                    + ("" if conf.relpose.enabled else " and localize with relpose.enabled=true"))
            logger.warning("the map has no 3D points: every query is localized from its neighbours' relative "
                           "poses (status localized_relative)")
        limit_blas_threads(conf.blas_threads)
        retain_freed_memory(conf.malloc_trim_threshold_mib)
        self.extractor = extractor or create_extractor(conf.features, device=conf.device,
                                                       models_dir=conf.models_dir or None)
        self.global_model = global_model or create_global_model(
            conf.global_descriptor, device=conf.device, models_dir=conf.models_dir or None)
        self._check_models()
        if self.global_model.requires_fit or map_index.global_state:
            self.global_model.load_state(map_index.global_state)
        if self.global_model.dim != map_index.global_descriptors.shape[1]:
            raise MapMismatchError(
                f"the map's global descriptors are {map_index.global_descriptors.shape[1]}-d, "
                f"{self.global_model.name} gives {self.global_model.dim}-d ones"
            )
        lc = conf.localization
        self.index = RetrievalIndex(map_index.global_descriptors, conf.device, map_index.retrieval_index,
                                    nprobe=lc.retrieval_nprobe, rerank=lc.retrieval_rerank,
                                    ef_search=lc.retrieval_ef_search)
        self.place_matcher = create_place_matcher(map_index, conf.matching, conf.features, conf.device,
                                                  conf.models_dir or None)
        self.tracker = LocalMapTracker(map_index, conf.tracking, conf.localization, conf.matching,
                                       self.point_uncertainty)
        self.camera_corrections = camera_corrections(map_index) if conf.localization.use_map_calibration else {}
        self.flow = FlowTracker(conf.tracking, conf.localization, self.point_uncertainty)
        self._flow_ref = None  # the last call's localized frame, for optical flow
        self._estimate_focal = False  # the query in hand has a guessed focal length
        if map_index.num_observations <= EAGER_POINT_COVARIANCES_MAX_OBSERVATIONS:
            self.point_uncertainty(np.zeros(0, np.int64))  # the points' covariances now, not in the first query
        self.dense = self.refiner = None
        if conf.refinement.method == "featuremetric":
            self.dense = create_dense_features(conf.refinement.features, device=conf.device,
                                               models_dir=conf.models_dir or None)
            if hasattr(self.dense, "share"):  # a network's map: reuse the extractor's (DRAN)
                self.dense.share(self.extractor)
            self._check_dense()
            self.refiner = FeatureMetricRefiner(conf.refinement)
        self.relpose = None
        if conf.relpose.enabled:
            self.relpose = RelativePoseLocalizer(map_index, conf.relpose, conf.matching,
                                                 seed=conf.localization.ransac_seed)

    @classmethod
    def from_path(cls, map_path: str | os.PathLike, conf: PipelineConf | str | None = None) -> "Localizer":
        """Load the map at ``map_path`` and build a localizer for it."""
        return cls(read_map(map_path), conf)

    @property
    def loc_conf(self) -> LocalizationConf:
        return self.conf.localization

    def _check_models(self) -> None:
        check_map_models(self.map, self.extractor, self.global_model)

    def _check_dense(self) -> None:
        theirs = self.map.dense_features
        if self.map.point_features is None or not theirs.get("name"):
            raise MapMismatchError(
                "the map holds no reference features for feature-metric refinement (it was written "
                "by an older global_loc, schema version 1, or built without refinement.features); "
                "rebuild it with `global-loc index` or localize without --refine featuremetric"
            )
        mine = self.dense.info()
        if mine["name"] != theirs["name"] or not _same_conf(mine["conf"], theirs["conf"]) \
                or mine["dim"] != self.map.point_features.shape[1]:
            raise MapMismatchError(
                f"the map's reference features are of dense source '{theirs['name']}' {theirs.get('conf')}, "
                f"refinement.features asks for '{mine['name']}' {mine['conf']}; rebuild the map with "
                "these refinement.features or use the map's"
            )

    # ---------------------------------------------------------------------------------------
    def localize(
        self,
        image: np.ndarray,
        camera: Camera,
        features: LocalFeatures | None = None,
        timings: dict[str, float] | None = None,
        prior: PosePrior | None = None,
        global_first: bool = False,
        focal_unknown: bool = False,
        global_descriptor: np.ndarray | None = None,
    ) -> LocalizationResult:
        """Localize one query image: a global query, or tracking from a pose prior.

        Args:
            image: (H, W) uint8 grey or (H, W, 3) uint8 RGB, of the size of ``camera``.
            camera: the query camera; where it equals a mapping camera whose principal point
                the map builder corrected, the corrected one is used (``camera_corrections``).
            features: precomputed local features of ``image`` (skips extraction).
            timings: stage times already spent (e.g. ``{"decode": ...}``) to include.
            prior: a predicted pose (:class:`~global_loc.tracking.PosePrior`, e.g. from
                :class:`~global_loc.tracking.MotionModel`): with ``conf.tracking.enabled``,
                optical flow from the previous call's localized frame is tried (when that
                call localized this image's predecessor, within ``flow_max_frames`` frames and
                ``flow_max_interval_s`` of the last descriptor-based pose, and ``features`` is
                not given), then tracking against the local map, and a
                global query runs when both fail. Tracking uses the image as it is (no
                ``query_rotations``). In a global query the prior settles places that look
                alike (:meth:`_choose`).
            global_first: with a prior, run the global query first and track only when it
                fails (the periodic check that a track is right).
            focal_unknown: ``camera``'s focal length is a guess (a photo without calibration or
                EXIF focal length): PnP estimates it (result ``camera``); no tracking and no
                feature-metric refinement for such a query.
            global_descriptor: (D,) float32, the query's global descriptor in this map's space
                where already known (a keyframe of another map made with the same model,
                :mod:`global_loc.map.merge`); used by the global query's first orientation
                instead of describing ``image``.
        Returns:
            A :class:`LocalizationResult`: ``LOCALIZED`` with ``cam_from_world`` and its
            covariance, or ``NOT_LOCALIZED`` with the reason; ``mode`` says what produced it
            (``"global"``, ``"tracking"``: the local map, ``"flow"``: optical flow),
            ``tracking`` what tracking said.
        Raises:
            ImageReadError: an image whose size differs from the camera's.
        """
        camera = self.camera_corrections.get(camera, camera)
        h, w = image.shape[:2]
        if (w, h) != (camera.width, camera.height):
            raise ImageReadError(
                f"the query image is {w}x{h} but its camera is {camera.width}x{camera.height}"
            )
        timer = _Timer()
        timer.times.update(timings or {})
        t_start = time.perf_counter()
        result = LocalizationResult(status=Status.NOT_LOCALIZED, reason="no query orientation was tried")
        track = prior is not None and self.conf.tracking.enabled and not focal_unknown
        self._estimate_focal = focal_unknown  # read by _localize_place, for this call only
        tracked = None
        flow_ref, self._flow_ref = self._flow_ref, None  # only the next call may follow this one
        try:
            tc = self.conf.tracking
            scale = min(1.0, max(tc.image_scale, tc.min_image_size / max(image.shape[:2])))
            track_features = features
            if track and not global_first and features is None and self.flow.enabled and flow_ref is not None:
                flowed = self.flow.track(image, camera, prior, flow_ref, timer)
                if flowed.success:
                    tracked = result = flowed
                    return result
            if track and not global_first:
                if track_features is None:
                    track_features = self._extract(image, 0, timer, scale)
                tracked = self.tracker.track(track_features, camera, prior, timer)
                if tracked.success:
                    result = tracked
                    return result
            if features is None and track_features is not None and scale == 1.0:
                features = track_features
            if track and features is None:
                features = self._extract(image, 0, timer)
            result = self._global_query(image, camera, features, timer, prior if track else None, global_descriptor)
            if track and global_first and not result.success and not result.prior_rejected:
                tracked = self.tracker.track(features, camera, prior, timer)  # full-resolution features
                if tracked.success:
                    result = tracked
            return result
        finally:
            if tracked is not None:
                result.tracking = "localized" if tracked.success else tracked.reason
            if self.refiner is not None and result.status == Status.LOCALIZED and not focal_unknown:
                with timer("refinement"):
                    self._refine(image, camera, result)
            if self.conf.tracking.enabled:  # also when not localized: it ends the frame
                with timer("flow"):
                    self._flow_ref = self.flow.reference(image, result, flow_ref,
                                                         prior.age_s if prior is not None else 0.0)
            timer.times["total"] = timer.times.get("decode", 0.0) + time.perf_counter() - t_start
            result.timings = {s: timer.times.get(s, 0.0) for s in STAGES}

    def _refine(self, image: np.ndarray, camera: Camera, result: LocalizationResult) -> None:
        """Feature-metric refinement of a localized ``result`` in place: its pose is replaced
        when the refiner accepts; ``result.refinement`` says what happened. The covariance
        stays PnP's (a bound that still holds for a pose the checks kept near it)."""
        rows = result.inlier_point_rows
        if rows is None or result.inlier_points3D is None:
            result.refinement = {"accepted": False, "reason": "the map rows of the inliers are unknown"}
            return
        weights = None
        uncertainty = self.point_uncertainty(rows)
        if uncertainty is not None and uncertainty[2]:  # the points' uncertainty in the query, as in PnP
            weights = point_weights(camera, result.cam_from_world, result.inlier_points3D, *uncertainty[:2])
        outcome = self.refiner.refine(
            self.dense.extract(image), camera, result.cam_from_world, result.inlier_points3D,
            self.map.point_features[rows].astype(np.float32), result.inlier_keypoints, result.covariance,
            self.loc_conf.ransac_max_error_px, weights)
        result.refinement = outcome.to_log()
        if outcome.accepted:
            result.cam_from_world = outcome.cam_from_world

    def _global_query(self, image, camera, features, timer, prior: PosePrior | None = None,
                      global_descriptor: np.ndarray | None = None) -> LocalizationResult:
        """The hierarchical query, over ``query_rotations`` until one localizes."""
        result = LocalizationResult(status=Status.NOT_LOCALIZED, reason="no query orientation was tried")
        for k, rotation in enumerate(self.loc_conf.query_rotations):
            attempt = self._localize_oriented(image, camera, int(rotation), features if k == 0 else None, timer,
                                              prior if rotation == 0 else None,
                                              global_descriptor if k == 0 else None)
            if k == 0 or attempt.success or attempt.num_inliers > result.num_inliers:
                result = attempt
            if attempt.success:
                if rotation:
                    result.reason = f"localized with the query rotated by {rotation} deg"
                break
        return result

    def _extract(self, image, turns: int, timer, scale: float = 1.0) -> LocalFeatures:
        """Local features of ``image`` turned ``turns`` quarter-turns (and shrunk by ``scale``),
        keypoints in pixels of ``image``; the time goes to the ``preprocess`` and
        ``local_features`` stages."""
        view = np.ascontiguousarray(np.rot90(image, turns)) if turns else image
        with timer("local_features"):
            if scale != 1.0:
                h, w = view.shape[:2]
                small = cv2.resize(view, (max(1, round(w * scale)), max(1, round(h * scale))),
                                   interpolation=cv2.INTER_AREA)
                features = self.extractor.extract(small)
                features = LocalFeatures(
                    rescale_keypoints(features.keypoints, w / small.shape[1], h / small.shape[0]),
                    features.descriptors, features.scores, (w, h), features.colors, dict(features.extras))
            else:
                features = self.extractor.extract(view)
            pre = getattr(self.extractor, "last_timings", {}).get("preprocess", 0.0)
            timer.times["preprocess"] = timer.times.get("preprocess", 0.0) + pre
            timer.times["local_features"] = timer.times.get("local_features", 0.0) - pre
            if turns:
                features = _unrotate(features, turns, image.shape[1], image.shape[0])
        return features

    def _localize_oriented(self, image, camera, rotation: int, features, timer,
                           prior: PosePrior | None = None, global_descriptor: np.ndarray | None = None
                           ) -> LocalizationResult:
        """One attempt with the image turned ``rotation`` degrees counter-clockwise (a multiple
        of 90) before extraction; keypoints are mapped back to the original image. ``prior``
        settles places that look alike (:meth:`_choose`)."""
        lc = self.loc_conf
        result = LocalizationResult(status=Status.NOT_LOCALIZED)
        if rotation % 90:
            raise ConfigError(f"query rotations must be multiples of 90 degrees, got {rotation}")
        turns = (rotation // 90) % 4
        view = np.ascontiguousarray(np.rot90(image, turns)) if turns else image
        if features is None:
            features = self._extract(image, turns, timer)
        retrieved, places = self._places(view, features, timer, global_descriptor)
        result.retrieved = [self.map.names[i] for i in retrieved]
        if len(features) < 4:
            result.reason = f"the query has {len(features)} local features"
            return result
        best, solved = None, []
        for place in places[: lc.max_places]:  # every place: the strongest wins, look-alikes are noticed
            # a place with fewer matches than this can neither win nor rival the strongest so far
            # (its inliers are at most its matches): its PnP is skipped, the answer is the same
            bound = 0.0 if not solved else max(a.num_inliers for a in solved) * (
                lc.ambiguity_min_ratio if lc.ambiguity_min_ratio > 0 else 1.0)
            attempt = self._localize_place(features, camera, place, timer, bound)
            if best is None or attempt.num_inliers > best.num_inliers:
                best = attempt
            if attempt.status == Status.LOCALIZED:
                solved.append(attempt)
        if solved:
            best = self._choose(solved, prior)
            if prior is not None and best.success and not self._agrees_with(best, prior):
                best.prior_rejected = True  # found elsewhere: the track was wrong
        if not retrieved:
            result.reason = "no keyframe was retrieved"
            return result
        if (best is None or not best.success) and self.relpose is not None and not self._estimate_focal \
                and not (best is not None and best.ambiguity):
            with timer("relative_pose"):
                relative = self.relpose.localize(features, camera, retrieved)
            if relative.success or best is None:
                if not relative.success:
                    relative.reason = f"relative pose: {relative.reason}"
                best = relative
            else:
                best.reason = f"{best.reason}; relative pose: {relative.reason}"
        best.retrieved = result.retrieved  # not None: a map without points has relpose (checked at start)
        return best

    def _agrees_with(self, result: LocalizationResult, prior: PosePrior) -> bool:
        """Whether ``result``'s pose lies within the tracking gate of ``prior``
        (``tracking.max_prior_deviation_m`` and ``_deg``)."""
        from .geometry.transforms import pose_error

        tc = self.conf.tracking
        dt, dr = pose_error(result.cam_from_world, prior.cam_from_world)
        return dt <= tc.max_prior_deviation_m and dr <= tc.max_prior_deviation_deg

    def _choose(self, solved: list[LocalizationResult], prior: PosePrior | None) -> LocalizationResult:
        """The answer among the places whose pose passed the checks (``solved``, not empty).

        The strongest (most inliers) wins, unless rivals disagree with it: places with at least
        ``ambiguity_min_ratio`` of its inliers whose pose is more than ``ambiguity_max_sigma``
        (Mahalanobis, 6-DoF) away. Then, with a ``prior``, the one contender that agrees with
        it wins if it has at least ``ambiguity_prior_min_ratio`` of the strongest's inliers
        (``ambiguity["chosen_by"] == "prior"``); otherwise the query is ``not_localized``,
        "ambiguous: places A and B ...", and when the prior agreed with a weaker contender only,
        or with none of them, ``prior_rejected`` is set (the track is dropped, and tracking does
        not answer the frame)."""
        from .evaluation import mahalanobis_distance
        from .geometry.transforms import pose_error

        lc = self.loc_conf
        ranked = sorted(solved, key=lambda a: -a.num_inliers)
        best = ranked[0]
        if lc.ambiguity_min_ratio <= 0:
            return best
        rivals = []
        for other in ranked[1:]:
            if other.num_inliers < lc.ambiguity_min_ratio * best.num_inliers:
                break
            if best.covariance is not None and other.covariance is not None:
                sigma = mahalanobis_distance(other.cam_from_world, best.cam_from_world,
                                             np.asarray(best.covariance) + np.asarray(other.covariance))
            else:
                sigma = float("inf")
            if sigma > lc.ambiguity_max_sigma:  # else: one place seen through two clusters
                rivals.append((other, sigma))
        if not rivals:
            return best
        other, sigma = rivals[0]
        dt, dr = pose_error(best.cam_from_world, other.cam_from_world)
        name = lambda r: r.keyframes[0] if r.keyframes else "?"  # noqa: E731
        ambiguity = {"places": [list(best.keyframes), list(other.keyframes)],
                     "inliers": [best.num_inliers, other.num_inliers],
                     "distance_m": round(dt, 4), "angle_deg": round(dr, 3), "sigma": round(sigma, 1),
                     "chosen_by": ""}
        both = (f"places {name(best)} and {name(other)} both fit ({best.num_inliers} and {other.num_inliers} "
                f"inliers) with poses {dt:.2f} m and {dr:.1f} deg apart ({sigma:.0f} sigma)")
        rejected = False
        if prior is not None:
            contenders = [best] + [r for r, _ in rivals]
            agreeing = [r for r in contenders if self._agrees_with(r, prior)]
            if len(agreeing) == 1 and agreeing[0].num_inliers >= lc.ambiguity_prior_min_ratio * best.num_inliers:
                chosen = agreeing[0]
                chosen.reason = f"ambiguous: {both}; the {prior.source} prior chose {name(chosen)}"
                chosen.ambiguity = {**ambiguity, "chosen_by": "prior", "chosen": list(chosen.keyframes)}
                return chosen
            # the prior agrees with a weaker look-alike only, or with none of the places that fit:
            # the map's evidence is against the track (tracking must not answer this frame)
            rejected = len(agreeing) <= 1
            ambiguity["prior"] = ("agrees with a weaker place only" if len(agreeing) == 1 else
                                  f"agrees with {len(agreeing)} of the places")
        out = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=list(best.keyframes),
                                 num_inliers=best.num_inliers, num_matches=best.num_matches,
                                 inlier_ratio=best.inlier_ratio, ambiguity=ambiguity, prior_rejected=rejected)
        out.reason = f"ambiguous: {both}" + (f"; the {prior.source} prior {ambiguity['prior']}" if prior else "")
        return out

    def retrieve(self, image: np.ndarray, k: int | None = None) -> list[str]:
        """Place recognition alone: the names of the ``k`` keyframes whose global descriptors
        are nearest to the query's, best first (the first step of a global query, without the
        query rotations).

        Args:
            image: (H, W) uint8 grey or (H, W, 3) uint8 RGB.
            k: how many (default ``localization.num_retrieved``).
        Returns:
            At most ``k`` keyframe names (fewer when the map has fewer keyframes).
        """
        timer = _Timer()
        features = self._extract(image, 0, timer)
        gdesc = self.global_model(image, features)
        _, idx = self.index.search(gdesc, int(k or self.loc_conf.num_retrieved))
        return [self.map.names[int(i)] for i in idx[0] if i >= 0]

    def point_uncertainty(self, rows) -> tuple[np.ndarray, float, bool] | None:
        """The map points at ``rows``: their (N, 3, 3) triangulation covariances (m^2), the
        keypoints' standard deviation behind them (pixels) and whether PnP weighs the points
        by them (``localization.weigh_map_points``); None when
        ``localization.map_point_uncertainty`` is off."""
        lc = self.loc_conf
        if not lc.map_point_uncertainty:
            return None
        cov = self.map.point_covariances(rows, lc.map_point_noise_px if lc.map_point_noise_px > 0 else None)
        return cov, self.map.point_noise_px, lc.weigh_map_points

    def _places(self, view: np.ndarray, features: LocalFeatures, timer,
                gdesc: np.ndarray | None = None) -> tuple[list[int], list[list[int]]]:
        """Retrieval and covisibility clustering: ``(retrieved keyframe rows, best first;
        places)``, places empty when the map has no points or the query fewer than 4 features;
        ``gdesc``: the query's global descriptor where known."""
        lc = self.loc_conf
        with timer("global_descriptor"):
            if gdesc is None:
                gdesc = self.global_model(view, features)
            gdesc = np.asarray(gdesc, np.float32).reshape(-1)
        with timer("retrieval"):
            _, idx = self.index.search(gdesc, lc.num_retrieved)
            retrieved = [int(i) for i in idx[0] if i >= 0]
        places = []
        if self.map.num_points3D and retrieved and len(features) >= 4:
            with timer("clustering"):
                places = covisibility_clusters(retrieved, self.map.covisibility(retrieved), lc.min_covisible_points)
        return retrieved, places

    def _match_place(self, features: LocalFeatures, place: list[int], timer):
        """2D-3D matches of the query's features to the points observed in ``place``
        (:class:`~global_loc.matching.Matches`, ``db``: point rows)."""
        with timer("matching"):
            return self.place_matcher.match(features, place)

    def place_matches(self, image: np.ndarray, camera: Camera, timings: dict[str, float] | None = None,
                      features: LocalFeatures | None = None) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
        """The global query up to 2D-3D matching, for callers that solve the pose themselves
        (camera rigs, :class:`~global_loc.rig_localizer.RigLocalizer`): local features, global
        descriptor, top-k retrieval, covisibility clustering, and per place (up to
        ``max_places``, best-ranked first) the mutual nearest-neighbour + ratio-test matches.

        Args:
            image: (H, W) or (H, W, 3) uint8, the size of ``camera`` (no ``camera_corrections``
                are applied: pass the corrected camera).
            timings: where the stage times are added, seconds (``local_features``,
                ``global_descriptor``, ``retrieval``, ``clustering``, ``matching``).
            features: the image's local features, where already extracted.
        Returns:
            ``[(keyframe names, keypoints (K, 2) float32 pixels, points3D (K, 3) float64 world
            metres)]`` per place; empty when the map has no points or nothing was retrieved.
        """
        timer = _Timer()
        if features is None:
            features = self._extract(image, 0, timer)
        _, places = self._places(image, features, timer)
        out = []
        for place in places[: self.loc_conf.max_places]:
            m = self._match_place(features, place, timer)
            out.append(([self.map.names[i] for i in place], features.keypoints[m.query], self.map.points_xyz[m.db]))
        if timings is not None:
            for k, v in timer.times.items():
                timings[k] = timings.get(k, 0.0) + v
        return out

    def _localize_place(self, features: LocalFeatures, camera: Camera, place: list[int], timer,
                        min_matches: float = 0.0) -> LocalizationResult:
        """2D-3D matching against the observations of ``place`` (keyframe rows), then PnP-RANSAC
        and the acceptance checks; PnP is skipped when the place has fewer than
        ``min_matches`` matches (it could not change the answer)."""
        lc = self.loc_conf
        res = LocalizationResult(status=Status.NOT_LOCALIZED, keyframes=[self.map.names[i] for i in place])
        matches = self._match_place(features, place, timer)
        res.num_matches = len(matches)
        if len(matches) < max(4, lc.min_inliers):
            res.reason = f"{len(matches)} 2D-3D matches < min_inliers {lc.min_inliers}"
            return res
        if len(matches) < min_matches:
            res.reason = f"{len(matches)} 2D-3D matches: too few to rival a place already solved"
            return res
        kpts = features.keypoints[matches.query]
        xyz = self.map.points_xyz[matches.db]
        with timer("pnp"):
            uncertainty = self.point_uncertainty(matches.db) or (None, 1.0, False)
            pnp = estimate_absolute_pose(
                kpts, xyz, camera, lc.ransac_max_error_px, lc.ransac_max_iterations, lc.ransac_seed,
                lc.covariance_scale, *uncertainty, estimate_focal_length=self._estimate_focal,
            )
        if pnp is None:
            res.reason = f"PnP-RANSAC found no pose from {len(matches)} matches"
            return res
        res.num_inliers = pnp.num_inliers
        res.inlier_ratio = pnp.num_inliers / len(matches)
        reasons = acceptance_problems(pnp, len(matches), lc)
        if reasons:
            res.reason = "; ".join(reasons)
            return res
        return res.accept(pnp, kpts, xyz, matches.db)



def check_map_models(map_index: MapIndex, extractor, global_model) -> None:
    """Check that ``extractor`` and ``global_model`` make the descriptors ``map_index`` holds
    (same names and identity options, same local descriptor size).

    Raises:
        MapMismatchError: naming the model, the options that differ and what to do.
    """
    for what, model, theirs in (
        ("local features", extractor, dict(map_index.local_features, conf=_map_features_conf(map_index))),
        ("global descriptor", global_model, map_index.global_descriptor),
    ):
        mine = {"name": model.name, "conf": model.identity_conf()}
        if mine["name"] != theirs["name"]:
            raise MapMismatchError(
                f"the map was built with {what} '{theirs['name']}', the preset in use makes "
                f"'{mine['name']}'; use the map's preset or rebuild the map"
            )
        conf_mine = mine["conf"]
        if not _same_conf(conf_mine, theirs["conf"]):
            diff = sorted(
                k for k in set(conf_mine) | set(theirs["conf"])
                if conf_mine.get(k) != theirs["conf"].get(k)
            )
            raise MapMismatchError(
                f"the map's {what} '{theirs['name']}' were made with other options "
                f"({', '.join(diff)}: map {[theirs['conf'].get(k) for k in diff]}, "
                f"now {[conf_mine.get(k) for k in diff]}); use the map's preset or rebuild the map"
            )
        if what == "local features" and model.dim != theirs["dim"]:
            raise MapMismatchError(
                f"the map's local descriptors are {theirs['dim']}-d, {model.name} gives "
                f"{model.dim}-d ones"
            )


def camera_corrections(map_index: MapIndex) -> dict[Camera, Camera]:
    """Original mapping camera -> the camera the map builder corrected it to (its principal
    point, see :mod:`global_loc.map.calibration`), from the map's metadata."""
    out = {}
    for rec in map_index.metadata.get("camera_calibration", []) or []:
        o = rec["original"]
        out[Camera(o["model"], o["width"], o["height"], np.array(o["params"], np.float64))] = Camera(
            o["model"], o["width"], o["height"], np.array(rec["corrected_params"], np.float64))
    return out


def _unrotate(features: LocalFeatures, turns: int, width: int, height: int) -> LocalFeatures:
    """Keypoints of an image turned ``turns`` quarter-turns counter-clockwise (``np.rot90``),
    mapped back to pixels of the original ``width`` x ``height`` image (OpenCV convention)."""
    k = features.keypoints.astype(np.float64)
    x, y = k[:, 0], k[:, 1]
    if turns == 1:  # (x, y) -> (y, W-1-x)
        x, y = width - 1 - y, x
    elif turns == 2:
        x, y = width - 1 - x, height - 1 - y
    elif turns == 3:  # (x, y) -> (H-1-y, x)
        x, y = y, height - 1 - x
    return LocalFeatures(np.stack([x, y], axis=1), features.descriptors, features.scores, (width, height),
                         features.colors, dict(features.extras))
