"""Strict configuration dataclasses and named presets.

A preset is a YAML file with the sections of :class:`PipelineConf`. The named presets ship
in ``global_loc/presets/``; a user may pass the path of their own. A preset may start with
``inherit: NAME`` to change only some keys of another preset. Every key is checked: an
unknown key raises :class:`~global_loc.errors.ConfigError` naming the key and the keys that
exist, as PixLoc's ``BaseModel`` does for its strict configuration merge.

The ``features`` and ``global_descriptor`` sections hold ``name`` plus the options of that
model; the model's own ``Conf`` dataclass checks them (see :mod:`global_loc.features` and
:mod:`global_loc.retrieval`).
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from .errors import ConfigError

PRESETS_DIR = Path(__file__).parent / "presets"
MODEL_SECTIONS = ("features", "global_descriptor")
DEFAULT_PRESET = "sift"


@dataclass
class MatchingConf:
    """Descriptor matching: mutual nearest neighbour with Lowe's ratio test, or LightGlue.

    Attributes:
        name: ``nn`` (mutual nearest neighbour + ratio test, any features) or ``lightglue``
            (:mod:`global_loc.matching.lightglue`, ALIKED and DISK features only): the matcher
            of keyframe pairs when mapping and of the query against each keyframe of a place
            when localizing. Tracking and the relative-pose fallback match by nearest neighbour.
        ratio_threshold: max ratio of the distances to the best and to the second-best
            candidate (Lowe, IJCV 2004); 1.0 disables the test.
        mutual: keep only mutual nearest neighbours.
        max_candidates: unused since matching became exact (kept so that presets and maps
            that name it still load).
        threads: threads that share one query's matching when localizing (row blocks of the
            similarity product, each on single-threaded BLAS; see
            :func:`global_loc.matching.match_descriptors`): 0 one per core, 1 the calling thread
            only. The matches do not depend on it. Map building matches in one thread.
        lightglue_weights: LightGlue's weight file (default: the published one for the map's
            features, ``aliked_lightglue.pth`` or ``disk_lightglue.pth``).
        depth_confidence: LightGlue's early stopping (its layers stop when this share of the
            points is confident; -1: all layers), the paper's 0.95.
        width_confidence: LightGlue's point pruning (points confidently unmatchable leave;
            -1: none), the paper's 0.99.
        filter_threshold: the score a LightGlue match must exceed.
    """

    name: str = "nn"
    ratio_threshold: float = 0.8
    mutual: bool = True
    max_candidates: int = 16
    threads: int = 0
    lightglue_weights: str = ""
    depth_confidence: float = 0.95
    width_confidence: float = 0.99
    filter_threshold: float = 0.1


@dataclass
class MappingConf:
    """Map building from keyframes with known poses.

    Attributes:
        keyframe_min_distance_m, keyframe_min_rotation_deg: a frame becomes a keyframe when
            it moved at least this far *or* turned at least this much since the last keyframe
            (0 and 0 keep every frame).
        num_pairs_pose: covisible partners per keyframe chosen from the poses (nearest camera
            centres among those looking in a similar direction).
        num_pairs_retrieval: partners per keyframe chosen by global-descriptor similarity.
        pair_max_angle_deg: max angle between the optical axes of a pose-based pair.
        pair_max_distance_m: max distance between camera centres of a pose-based pair
            (0: no limit).
        epipolar_max_error_px: max Sampson distance of a match to the epipolar geometry
            given by the known poses.
        max_reprojection_error_px: max reprojection error of an observation of a point.
        min_triangulation_angle_deg: min largest angle between two rays of a point.
        min_track_length: min number of keyframes observing a point.
        colmap_association_max_px: importing a COLMAP model, max distance between a
            COLMAP observation and the extracted keypoint that takes its 3D point.
        batch_size: keyframes of equal size whose features are extracted together (0: 8 when
            the model runs on CUDA, 1 on the CPU, where batches do not pay).
        refine_principal_point: estimate each camera's principal-point offset from the tracks
            (poses fixed, :mod:`global_loc.map.calibration`) and, where it is significant (above
            3 standard deviations and ``principal_point_min_px``, with a standard deviation
            below ``principal_point_max_std_px``), build the map with the corrected camera;
            queries with the original camera are then localized with the corrected one.
        principal_point_min_px: smallest offset applied, pixels.
        principal_point_max_std_px: largest standard deviation of an applied offset, pixels
            (keyframes that all look the same way leave the principal point unobservable).
        retrieval_index: the keyframe retrieval index stored in the map: ``flat`` (exact
            search), ``hnsw`` or ``ivfpq`` (approximate, trained now; see
            :mod:`global_loc.retrieval.index`), or ``auto``: ``flat`` up to
            ``exact_retrieval_max_keyframes`` keyframes, ``ivfpq`` above.
        exact_retrieval_max_keyframes: the largest map ``auto`` searches exactly.
        retrieval_index_params: options of the approximate index (``hnsw``: ``M``,
            ``ef_construction``; ``ivfpq``: ``nlist``, ``m``, ``nbits`` 4 or 8); missing ones
            default.
        store_free_features: also keep each keyframe's keypoints that observe no 3D point
            (schema version 3), for pose from retrieved neighbours (:mod:`global_loc.relpose`)
            where the points are few; the map grows by their descriptors.
    """

    keyframe_min_distance_m: float = 0.0
    keyframe_min_rotation_deg: float = 0.0
    num_pairs_pose: int = 8
    num_pairs_retrieval: int = 5
    pair_max_angle_deg: float = 70.0
    pair_max_distance_m: float = 0.0
    epipolar_max_error_px: float = 4.0
    max_reprojection_error_px: float = 2.0
    min_triangulation_angle_deg: float = 1.5
    min_track_length: int = 2
    colmap_association_max_px: float = 2.0
    batch_size: int = 0
    refine_principal_point: bool = True
    principal_point_min_px: float = 0.1
    principal_point_max_std_px: float = 0.25
    retrieval_index: str = "auto"
    exact_retrieval_max_keyframes: int = 20000
    retrieval_index_params: dict = field(default_factory=dict)
    store_free_features: bool = False

    def __post_init__(self):
        if self.retrieval_index not in ("auto", "flat", "hnsw", "ivfpq"):
            raise ConfigError(f"mapping.retrieval_index '{self.retrieval_index}' is unknown; use auto, flat, hnsw "
                              "or ivfpq")


@dataclass
class LocalizationConf:
    """The Localizer (HF-Net's hierarchical localization).

    Attributes:
        num_retrieved: keyframes retrieved by global descriptor (top-k).
        max_places: covisibility clusters (places) solved, best-ranked first: every one of
            them, so that the strongest wins and places that look alike are noticed.
        ambiguity_min_ratio: two places whose poses disagree (``ambiguity_max_sigma``) and
            the weaker of which has at least this fraction of the stronger's PnP inliers make
            the query ``not_localized``, "ambiguous: places A and B" (perceptual aliasing: a
            confident wrong pose is worse than none). 0: the strongest place always wins.
        ambiguity_max_sigma: two places' poses agree when the 6-DoF Mahalanobis distance of
            their difference under the sum of their covariances is at most this (6.28: the
            chi-square(6) quantile of a 5-sigma event).
        ambiguity_prior_min_ratio: with a pose prior (tracking, odometry), places that fit
            and disagree are settled by the prior when exactly one of them agrees with it
            (``tracking.max_prior_deviation_m`` / ``_deg``) and that one has at least this
            fraction of the strongest one's inliers: that one wins, the reason says so. When
            the prior agrees only with a weaker place, or with none, the evidence rejects the
            prior: not localized, and the track is dropped. 1.0 (the prior settles a tie only in favour of
            the strongest place) finds a robot carried to the twin place; 0.8 trusts the track
            through near-ties and localizes more frames of a walk through look-alike places,
            but follows a kidnapped robot's twin until a view tells the places apart
            (``benchmarks/results/twin_rooms*.md``).
        min_covisible_points: 3D points two retrieved keyframes must share to fall in the
            same place.
        ransac_max_error_px: PnP-RANSAC inlier threshold, pixels.
        ransac_max_iterations: upper bound of RANSAC iterations.
        ransac_seed: seed of RANSAC's random sampling (-1: random), for repeatable runs.
        min_inliers: a place must give at least this many PnP inliers...
        min_inlier_ratio: ...and at least this fraction of its 2D-3D matches as inliers.
        max_position_std_m: ...and a position standard deviation (largest axis, from the
            pose covariance) no larger than this (0: no check).
        max_rotation_std_deg: ...and a rotation standard deviation no larger than this
            (0: no check).
        query_rotations: in-plane rotations (degrees counter-clockwise, multiples of 90) tried
            in turn until one localizes; ``[0, 180]`` helps features that are not rotation
            invariant with cameras mounted upside down or rolled (keyframes of both kinds).
        use_map_calibration: a query whose camera equals a mapping camera that the map builder
            corrected (``mapping.refine_principal_point``) is localized with the corrected one.
        map_point_uncertainty: add the map points' triangulation uncertainty to every pose's
            covariance (:func:`~global_loc.geometry.covariance.map_point_pose_covariance`):
            PnP's own covariance takes the points as exact, and a few near points whose depth
            the map knows poorly can pull the pose where the residuals do not show it.
        map_point_noise_px: the mapping keypoints' standard deviation behind those
            covariances, pixels; 0: the a-posteriori value of the map's own residuals.
        weigh_map_points: with ``map_point_uncertainty``, also refine PnP's pose with each
            point weighed by its uncertainty
            (:func:`~global_loc.geometry.pnp.refine_with_point_uncertainty`) and weigh the
            feature-metric refinement's points alike. It helps where the keypoints are precise
            (``sift``, ``r2d2``) and not where they are not (``xfeat``, whose preset turns it
            off): ``benchmarks/results/refinement.md``.
        retrieval_ef_search: with a map's ``hnsw`` retrieval index, its search queue length
            (larger: better recall, slower).
        retrieval_nprobe: with an ``ivfpq`` index, the cells searched (0: a quarter of them,
            at least 16).
        retrieval_rerank: an approximate index's candidates re-ranked exactly, as a multiple
            of ``num_retrieved``.
        covariance_scale: factor on every pose covariance, for what the model above leaves
            out: errors the map shares across a query's points (its keyframes' poses,
            calibration) and the residuals' correlation. The default is calibrated on held-out
            queries with ``global-loc evaluate``, which prints the factor a set of results asks
            for (see docs/covariance.md).
    """

    num_retrieved: int = 10
    max_places: int = 5
    ambiguity_min_ratio: float = 0.5
    ambiguity_max_sigma: float = 6.28
    ambiguity_prior_min_ratio: float = 1.0
    min_covisible_points: int = 10
    ransac_max_error_px: float = 8.0
    ransac_max_iterations: int = 10000
    ransac_seed: int = 0
    min_inliers: int = 15
    min_inlier_ratio: float = 0.15
    max_position_std_m: float = 0.0
    max_rotation_std_deg: float = 0.0
    query_rotations: list[int] = field(default_factory=lambda: [0])
    use_map_calibration: bool = True
    map_point_uncertainty: bool = True
    map_point_noise_px: float = 0.0
    weigh_map_points: bool = True
    retrieval_ef_search: int = 128
    retrieval_nprobe: int = 0
    retrieval_rerank: int = 10
    covariance_scale: float = 4.0


@dataclass
class TrackingConf:
    """Tracking against the map between global queries (frame sequences: bags and the node).

    Once a frame is localized, the next ones are localized from a pose prior (the last pose
    composed with odometry from tf, or a constant-velocity model without odometry): the map
    points of the keyframes near the prior are projected into the image and matched to the
    query keypoints; matches far from their point's projection are dropped, then PnP-RANSAC
    solves the pose as in a global query, with the same inlier checks. See
    :mod:`global_loc.tracking`.

    Attributes:
        enabled: track between global queries (false: every frame is a global query).
        global_period_s: a global query at least this often (seconds of image time), so that a
            wrong track cannot persist; where it fails, tracking answers that frame.
        max_prior_age_s: no prior (a global query) when the last localized frame is older than
            this, seconds, without odometry...
        max_prior_age_odometry_s: ... and with odometry.
        num_keyframes: keyframes nearest to the prior (camera centre, viewing direction within
            ``max_view_angle_deg``) whose points are projected.
        max_view_angle_deg: max angle between the prior's optical axis and a keyframe's.
        window_px_odometry: a match is dropped when its point projects farther than this from
            its keypoint, pixels, with an odometry prior...
        window_px_motion_model: ... and with a constant-velocity prior.
        ratio_threshold: Lowe's ratio between the best and the second-best point of the local map.
        min_inlier_ratio: a tracked pose needs at least this fraction of its matches as PnP
            inliers (right tracks have nearly all; ``localization.min_inliers`` applies too).
        max_prior_deviation_m: a tracked pose farther than this from its prior is rejected
            (and a global query decides), metres...
        max_prior_deviation_deg: ... or turned further than this, degrees.
        ransac_max_iterations: RANSAC iterations bound for tracked frames (few outliers).
        image_scale: tracked frames are described at this fraction of their size (SIFT's
            first, upsampled octave costs most of its time; the prior needs fewer, coarser
            keypoints); global queries always use the full image...
        min_image_size: ... but the longer side is not shrunk below this, pixels.
        flow_max_frames: between descriptor-based tracked frames, at most this many frames are
            tracked by optical flow from the previous frame's inliers (see
            :mod:`global_loc.tracking.flow`); 0 disables optical flow...
        flow_max_interval_s: ... and none later than this after the last descriptor-based pose,
            seconds of image time (0.25: two flow frames at 10 Hz, seven at 30 Hz).
        flow_window_px: Lucas-Kanade window side, pixels.
        flow_pyramid_levels: pyramid levels above the image (each halves it).
        flow_max_fb_error_px: a point followed back into the previous frame must land within
            this many pixels of where it started (forward-backward check).
        flow_min_tracked_ratio: flow fails when fewer than this fraction of the inliers of the
            last descriptor-based pose are followed (or are inliers): the view has changed
            enough for descriptors to find new points.
    """

    enabled: bool = True
    global_period_s: float = 2.0
    max_prior_age_s: float = 1.0
    max_prior_age_odometry_s: float = 5.0
    num_keyframes: int = 8
    max_view_angle_deg: float = 60.0
    window_px_odometry: float = 24.0
    window_px_motion_model: float = 48.0
    ratio_threshold: float = 0.8
    min_inlier_ratio: float = 0.5
    max_prior_deviation_m: float = 0.5
    max_prior_deviation_deg: float = 10.0
    ransac_max_iterations: int = 1000
    image_scale: float = 0.5
    min_image_size: int = 320
    flow_max_frames: int = 8
    flow_max_interval_s: float = 0.25
    flow_window_px: int = 21
    flow_pyramid_levels: int = 3
    flow_max_fb_error_px: float = 1.0
    flow_min_tracked_ratio: float = 0.5


@dataclass
class RefinementConf:
    """Feature-metric refinement of localized poses (PixLoc / DRAN); see
    :mod:`global_loc.refinement`.

    Attributes:
        method: ``"none"`` (PnP's pose is published) or ``"featuremetric"`` (the pose is
            refined by aligning dense features; the map must hold reference features of the
            same ``features``: maps built since schema version 2 do).
        features: the dense feature source, ``{name: <source>, ...options}`` (no name: the
            weight-free ``gradients``); the map builder stores every 3D point's reference
            feature for it (empty name: none stored).
        max_iterations: Levenberg-Marquardt iterations per pyramid level.
        damping: initial LM damping (relative to the diagonal).
        min_relative_decrease: a level stops when an iteration lowers the cost by less.
        min_robust_scale: floor of the Cauchy scale (a feature distance); the scale is the
            median residual at the start of each level.
        keypoint_weight: weight of the PnP inliers' reprojection residuals in the cost, next
            to the features' (each term normalised by its median residual; 0: features only,
            as PixLoc). It keeps the pose where the features carry little information.
        min_keypoint_scale_px: floor of the keypoint term's Cauchy scale, pixels.
        max_points: at most this many inlier points are used (evenly spread over the list).
        min_points: no refinement with fewer points that carry a reference feature.
        max_step_sigma: the refined pose is rejected when it lies further than this from the
            PnP pose, in standard deviations of PnP's covariance (0: no check)...
        min_inlier_fraction: ...or keeps fewer than this fraction of PnP's inliers within
            ``localization.ransac_max_error_px``...
        max_rmse_increase_px: ...or raises their reprojection RMSE by more than this, pixels...
        min_agreement: ...or when, at the refined pose, the median cosine similarity between the
            query's finest features and the points' references is below this (the features do
            not describe the same surface: a wrong map, a changed scene).
    """

    method: str = "none"
    features: dict = field(default_factory=lambda: {"name": "gradients"})
    max_iterations: int = 20
    damping: float = 1e-3
    min_relative_decrease: float = 1e-5
    min_robust_scale: float = 0.05
    keypoint_weight: float = 3.0
    min_keypoint_scale_px: float = 0.5
    max_points: int = 2048
    min_points: int = 12
    max_step_sigma: float = 5.0
    min_inlier_fraction: float = 0.95
    max_rmse_increase_px: float = 1.0
    min_agreement: float = 0.5

    def __post_init__(self):
        if "name" not in self.features:  # options given without the source: the default's
            self.features = {"name": "gradients", **self.features}
        if self.method not in ("none", "featuremetric"):
            raise ConfigError(
                f"refinement.method '{self.method}' is unknown; use 'none' or 'featuremetric'"
            )


@dataclass
class RelPoseConf:
    """Pose from retrieved neighbours when 2D-3D matching fails (:mod:`global_loc.relpose`;
    Zhou et al., ICRA 2020): essential matrices to the retrieved keyframes, the rotation
    averaged and the centre where their rays meet. A pose found so has status
    ``localized_relative``.

    Attributes:
        enabled: try it when no place gives a PnP pose (and on a map without 3D points).
        max_keyframes: the best-retrieved keyframes tried (at most ``localization.num_retrieved``).
        min_inliers: essential-matrix inliers a keyframe needs to count.
        ransac_max_error_px: the essential matrix's RANSAC threshold, pixels; also the Sampson
            threshold of an inlier at the refined pose.
        max_rotation_deviation_deg: a keyframe whose query rotation differs more from the
            consensus disagrees.
        max_ray_deviation_deg: a keyframe whose ray towards the query misses the centre by more
            disagrees.
        min_ray_angle_deg: the agreeing rays must spread at least this much at the centre.
        min_parallax_deg: a keyframe with less parallax to the query counts for the rotation
            only.
        min_views: keyframes that must agree (at least 2; with 3 or more, one that is wrong
            shows, and the covariance includes the spread between them)...
        min_agreement: ...and the fraction of the keyframes with a relative pose that must.
        max_position_std_m, max_rotation_std_deg: refuse a pose whose covariance is wider
            (0: no check).
        covariance_scale: factor on the covariance of a relative pose (what
            ``localization.covariance_scale`` is for PnP). The geometry's own covariance
            (:func:`~global_loc.geometry.relpose.pose_from_relative_views`) leaves out errors
            that all the keyframes share, such as the rotation-translation ambiguity of a narrow
            field of view, which every keyframe of a forward-moving robot sees alike; 12 puts
            95 % of the robot world's relative poses inside their 2-sigma bound
            (``benchmarks/relpose.py``).
    """

    enabled: bool = True
    max_keyframes: int = 10
    min_inliers: int = 30
    ransac_max_error_px: float = 2.0
    max_rotation_deviation_deg: float = 2.0
    max_ray_deviation_deg: float = 2.0
    min_ray_angle_deg: float = 5.0
    min_parallax_deg: float = 1.0
    min_views: int = 3
    min_agreement: float = 0.5
    max_position_std_m: float = 0.0
    max_rotation_std_deg: float = 0.0
    covariance_scale: float = 12.0


@dataclass
class PipelineConf:
    """A whole preset.

    Attributes:
        name: the preset's name.
        device: ``auto``, ``cpu`` or ``cuda`` (``auto``: CUDA where available).
        models_dir: folder searched (recursively) for weight files, besides
            ``$GLOBAL_LOC_MODELS`` (see :mod:`global_loc.runtime.weights`).
        features: ``{name: <extractor>, ...options}`` (see :mod:`global_loc.features`).
        global_descriptor: ``{name: <model>, ...options}`` (see :mod:`global_loc.retrieval`).
        blas_threads: threads of BLAS (numpy, scipy, faiss) and faiss's OpenMP, set
            process-wide when a Localizer is made (0: the libraries' default, a
            thread per core); see :mod:`global_loc.runtime.threads`.
        malloc_trim_threshold_mib: with glibc, freed heap memory a localizing or indexing
            process keeps (MiB) instead of giving it back to the kernel and faulting it in again
            the next frame, set process-wide when a Localizer or a KeyframeExtractor is made (0:
            glibc's own adaptive thresholds); see :mod:`global_loc.runtime.memory`.
        matching, mapping, localization, tracking, refinement, relpose: the stages' options.
    """

    name: str = DEFAULT_PRESET
    device: str = "auto"
    models_dir: str = ""
    blas_threads: int = 1
    malloc_trim_threshold_mib: int = 256
    features: dict = field(default_factory=lambda: {"name": "sift"})
    global_descriptor: dict = field(default_factory=lambda: {"name": "vlad"})
    matching: MatchingConf = field(default_factory=MatchingConf)
    mapping: MappingConf = field(default_factory=MappingConf)
    localization: LocalizationConf = field(default_factory=LocalizationConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    refinement: RefinementConf = field(default_factory=RefinementConf)
    relpose: RelPoseConf = field(default_factory=RelPoseConf)


# --------------------------------------------------------------------------------------------
def _check_type(value, tp, where: str):
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not one of {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if args and args[-1] is not Ellipsis and origin is tuple:
            return tuple(_check_type(v, a, where) for v, a in zip(value, args))
        if args:
            return type(value)(_check_type(v, args[0], where) for v in value)
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls, data: dict | None, where: str = ""):
    """Build the dataclass ``cls`` from ``data``, checking every key and type.

    Keys missing from ``data`` keep their defaults; nested dataclasses are merged the same way.

    Raises:
        ConfigError: for an unknown key (the message names it and lists the known keys) or a
            value of the wrong type.
    """
    if data is None:
        data = {}
    if is_dataclass(data) and isinstance(data, cls):
        return copy.deepcopy(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ConfigError(
            f"unknown configuration key '{(where + '.') if where else ''}{unknown[0]}'; "
            f"known keys of {cls.__name__}: {', '.join(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        sub = f"{where}.{name}" if where else name
        if is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, sub)
        else:
            kwargs[name] = _check_type(value, tp, sub)
    return cls(**kwargs)


def known_keys(cls, data: dict, where: str = "") -> tuple[dict, list[str]]:
    """``data`` without the keys that the dataclass ``cls`` (and its nested dataclasses) does
    not have, and the dotted names of the keys dropped: for configurations recorded by a newer
    global_loc (a map's preset), whose new options this version cannot use."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    out, dropped = {}, []
    for k, v in (data or {}).items():
        name = f"{where}.{k}" if where else k
        if k not in known:
            dropped.append(name)
        elif is_dataclass(hints[k]) and isinstance(v, dict):
            out[k], more = known_keys(hints[k], v, name)
            dropped += more
        else:
            out[k] = v
    return out, dropped


def to_dict(conf) -> dict:
    """The plain-dict form of a configuration dataclass (for YAML, JSON and the map)."""
    return dataclasses.asdict(conf)


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def available_presets() -> list[str]:
    """Names of the presets shipped with global_loc."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _read_preset_dict(name_or_path: str, seen: tuple = ()) -> dict:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        source = path
    elif (PRESETS_DIR / f"{name_or_path}.yaml").exists():
        source = PRESETS_DIR / f"{name_or_path}.yaml"
    else:
        raise ConfigError(
            f"unknown preset '{name_or_path}': it is neither a YAML file nor one of the "
            f"presets {', '.join(available_presets())}"
        )
    if str(source) in seen:
        raise ConfigError(f"preset {source} inherits from itself")
    try:
        data = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"preset {source} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {source} must be a mapping of sections")
    parent = data.pop("inherit", None)
    name = data.get("name", source.stem)
    if parent is not None:
        base = _read_preset_dict(str(parent), seen + (str(source),))
        for section in MODEL_SECTIONS:  # another model: its options replace the parent's
            child = data.get(section)
            if isinstance(child, dict) and child.get("name", base[section].get("name")) != base[section].get("name"):
                base[section] = {}
        data = deep_merge(base, data)
    data["name"] = name
    return data


def parse_override(text: str) -> dict:
    """``"localization.min_inliers=20"`` -> ``{"localization": {"min_inliers": 20}}``.

    The value is parsed as YAML (numbers, booleans, lists); anything else stays a string.
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    out: dict = {}
    cur = out
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = parsed
    return out


def _apply_overrides(data: dict, overrides) -> dict:
    """``data`` with ``section.key=value`` overrides; switching a model drops the previous
    model's options."""
    for o in overrides or []:
        change = parse_override(o)
        for section in MODEL_SECTIONS:
            new_name = change.get(section, {}).get("name")
            if new_name and new_name != data.get(section, {}).get("name"):
                data[section] = {}
        data = deep_merge(data, change)
    return data


def _nested(key: str, value) -> dict:
    out: dict = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def get_key(data: dict, key: str):
    """``data["a"]["b"]`` for ``key`` ``"a.b"``, or None where a part is missing."""
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


#: keyframe selection of a camera stream or a bag where the preset selects none (every frame):
#: the ``defaults`` of :func:`resolve_conf` for ``global-loc index --bag`` and the map indexer node
STREAM_KEYFRAME_DEFAULTS = {"mapping.keyframe_min_distance_m": 0.2, "mapping.keyframe_min_rotation_deg": 10.0}


def resolve_conf(preset: str | None = None, overrides=(), settings: dict | None = None,
                 base: dict | None = None, defaults: dict | None = None) -> PipelineConf:
    """The configuration of a run, resolved in one place and one order, each layer over the last:

    1. the preset: ``preset`` (a named preset or a YAML file); without one, ``base`` (the
       preset recorded in a map, with the map's model options) or the default preset (sift);
    2. ``defaults`` (``{"section.key": value}``): what a kind of input needs where the preset
       leaves a value at 0/empty, e.g. keyframe selection for a bag or a camera stream;
    3. ``overrides``: ``section.key=value`` strings (``--set``, the nodes' ``preset_overrides``);
    4. ``settings`` (``{"section.key": value}``): the CLI flags and node parameters the user
       *set*; a None value is one left at its default, and changes nothing. A setting wins over
       an override of the same key (a warning says so when they differ).

    Raises:
        ConfigError: an unknown preset or key, a value of the wrong type, a preset without a
            model name.
    """
    import logging

    data = copy.deepcopy(base) if base is not None and not preset else _read_preset_dict(preset or DEFAULT_PRESET)
    for key, value in (defaults or {}).items():
        if not get_key(data, key):
            data = deep_merge(data, _nested(key, value))
    data = _apply_overrides(data, overrides)
    overridden = {}
    for o in overrides or []:
        k, _, v = o.partition("=")
        overridden[k.strip()] = get_key(_apply_overrides({}, [o]), k.strip())
    for key, value in (settings or {}).items():
        if value is None:
            continue
        if key in overridden and overridden[key] != value:
            logging.getLogger("global_loc").warning(
                "%s=%r (override) is replaced by the setting given explicitly: %r", key, overridden[key], value)
        data = deep_merge(data, _nested(key, value))
    conf = from_dict(PipelineConf, data)
    for section in ("features", "global_descriptor"):
        if "name" not in getattr(conf, section):
            raise ConfigError(f"preset section '{section}' needs a 'name'")
    return conf


def load_preset(name_or_path: str | None = None, overrides: list[str] | None = None) -> PipelineConf:
    """Load a named preset or a YAML file, apply ``key=value`` overrides, and check it
    (:func:`resolve_conf` without a map, defaults or settings).

    Raises:
        ConfigError: unknown preset, unknown key, or a value of the wrong type.
    """
    return resolve_conf(name_or_path, overrides)
