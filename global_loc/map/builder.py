"""The MapBuilder: keyframes with known poses -> a map.

Steps (hloc's triangulation from known poses, with HF-Net's map content):
keyframe selection by travelled distance and rotation -> local features -> global descriptors
(VLAD learns its vocabulary from the map's own descriptors) -> pairs of covisible keyframes
from poses and from retrieval -> mutual-nearest-neighbour matching with the ratio test ->
epipolar check with the known poses -> tracks -> triangulation with the poses fixed ->
filtering by reprojection error, triangulation angle and track length -> :class:`MapIndex`,
with each point's reference feature for feature-metric refinement (the robust mean of the
dense features at its observations, :mod:`global_loc.refinement.reference`).
"""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass, field

import faiss
import numpy as np
from tqdm import tqdm

from .. import __version__
from ..config import PipelineConf, load_preset, to_dict
from ..errors import EmptyMapError, ImageReadError, InputError
from ..features import LocalFeatureExtractor
from ..geometry.transforms import Pose, rotation_angle_deg
from ..geometry.triangulation import build_tracks, epipolar_errors, triangulate_tracks
from ..matching.matchers import create_pair_matcher
from ..refinement import DenseFeatures
from ..refinement.reference import robust_mean
from ..retrieval import GlobalDescriptorModel
from ..types import Keyframe, LocalFeatures
from .calibration import estimate_principal_point_offsets, shifted_camera
from .index import MapIndex
from .pairs import pairs_from_poses, pairs_from_retrieval
from .workers import ExtractedKeyframe, KeyframeExtractor

logger = logging.getLogger(__name__)


@dataclass
class FixedPoints:
    """3D points to keep as they are, e.g. the registered points of a COLMAP model.

    Attributes:
        ids: (P,) int64 point ids.
        xyz: (P, 3) float64 metres, world frame.
        rgb: (P, 3) uint8.
        errors: (P,) float32 reprojection errors, pixels.
        observations: keyframe name -> ``(xy (n, 2) float pixels in OpenCV convention,
            point rows (n,) int64)``: where each keyframe observes them.
    """

    ids: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    errors: np.ndarray
    observations: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class _Entry:
    keyframe: Keyframe
    keyframe_id: int
    features: LocalFeatures
    global_raw: np.ndarray | None
    dense_samples: np.ndarray | None = None  # (N, Dr) float16 dense features at the keypoints


class MapBuilder:
    """Builds a :class:`MapIndex` from keyframes with known poses.

    Args:
        conf: a :class:`PipelineConf` (or a preset name); its ``features``,
            ``global_descriptor``, ``matching`` and ``mapping`` sections are used.
        extractor, global_model: already-built models to use instead of the configured ones.
        frame_id: name of the map frame, recorded in the map.
        dense: the dense feature source of the points' reference features (default: the one
            of ``conf.refinement.features``; none when its name is empty).

    Example::

        builder = MapBuilder(load_preset("sift"))
        for kf, image in keyframes:
            builder.add_keyframe(kf, image)
        map_index = builder.build()
    """

    def __init__(
        self,
        conf: PipelineConf | str | None = None,
        extractor: LocalFeatureExtractor | None = None,
        global_model: GlobalDescriptorModel | None = None,
        frame_id: str = "map",
        dense: DenseFeatures | None = None,
    ):
        self.conf = conf if isinstance(conf, PipelineConf) else load_preset(conf)
        self.keyframe_extractor = KeyframeExtractor(self.conf, extractor, global_model, dense)
        self.extractor = self.keyframe_extractor.extractor
        self.global_model = self.keyframe_extractor.global_model
        self.dense = self.keyframe_extractor.dense
        # built now: features LightGlue was not trained on are refused before any extraction
        self.pair_matcher = create_pair_matcher(self.conf.matching, self.conf.features, self.conf.device,
                                                self.conf.models_dir or None, getattr(self.extractor, "dim", None))
        self.frame_id = frame_id
        self._entries: list[_Entry] = []
        self._names: set[str] = set()
        self.skipped: dict[str, str] = {}  # name -> reason, for frames not taken as keyframes
        self.source: dict = {}

    # --- adding keyframes ---------------------------------------------------------------------
    @property
    def num_keyframes(self) -> int:
        return len(self._entries)

    @property
    def keyframes(self) -> list[Keyframe]:
        return [e.keyframe for e in self._entries]

    def is_new_keyframe(self, cam_from_world: Pose, last: Pose | None = None) -> bool:
        """Keyframe selection: True when the camera moved at least
        ``keyframe_min_distance_m`` or turned at least ``keyframe_min_rotation_deg`` since
        ``last`` (default: the last keyframe added); always True for the first one, or with
        both thresholds at 0."""
        m = self.conf.mapping
        if last is None and self._entries:
            last = self._entries[-1].keyframe.cam_from_world
        if last is None or (m.keyframe_min_distance_m <= 0 and m.keyframe_min_rotation_deg <= 0):
            return True
        moved = np.linalg.norm(cam_from_world.center - last.center)
        turned = rotation_angle_deg(cam_from_world.R @ last.R.T)
        return (m.keyframe_min_distance_m > 0 and moved >= m.keyframe_min_distance_m) or (
            m.keyframe_min_rotation_deg > 0 and turned >= m.keyframe_min_rotation_deg
        )

    def add_keyframe(
        self,
        keyframe: Keyframe,
        image: np.ndarray | None = None,
        features: LocalFeatures | None = None,
        keyframe_id: int | None = None,
        select: bool = True,
    ) -> bool:
        """Offer a frame; extract its features if it is selected as a keyframe.

        Args:
            keyframe: name, camera, cam_from_world, stamp.
            image: (H, W) or (H, W, 3) uint8 RGB; needed unless ``features`` is given.
            features: precomputed local features (then ``image`` may be None for models that
                aggregate local features, like VLAD).
            keyframe_id: id recorded in the map (default: the keyframe's row).
            select: apply keyframe selection (False: always add).
        Returns:
            True when the frame was added, False when keyframe selection skipped it.
        Raises:
            InputError: a duplicate name; ImageReadError: an image whose size differs from
                its camera's.
        """
        if keyframe.name in self._names:
            raise InputError(f"keyframe name '{keyframe.name}' is used twice; names must be unique")
        if select and not self.is_new_keyframe(keyframe.cam_from_world):
            self.skipped[keyframe.name] = "keyframe selection: too close to the previous keyframe"
            return False
        if image is not None:
            _check_size(keyframe, image.shape[1], image.shape[0])
        if features is None:
            if image is None:
                raise InputError(f"keyframe '{keyframe.name}': give an image or its features")
            extracted = self.keyframe_extractor.extract(image)
        else:
            extracted = self.keyframe_extractor.finish(image, features)
        self._append(keyframe, extracted, keyframe_id)
        return True

    def add_extracted(self, keyframe: Keyframe, extracted: ExtractedKeyframe, keyframe_id: int | None = None) -> None:
        """Add a keyframe whose per-keyframe work was done elsewhere (a worker process or a Ray
        task, :mod:`global_loc.map.workers`), with no keyframe selection.

        Raises:
            InputError: a duplicate name; ImageReadError: features of an image whose size
                differs from the keyframe's camera.
        """
        if keyframe.name in self._names:
            raise InputError(f"keyframe name '{keyframe.name}' is used twice; names must be unique")
        _check_size(keyframe, *extracted.features.image_size)
        self._append(keyframe, extracted, keyframe_id)

    def _append(self, keyframe: Keyframe, extracted: ExtractedKeyframe, keyframe_id: int | None) -> None:
        kid = len(self._entries) if keyframe_id is None else int(keyframe_id)
        self._entries.append(_Entry(keyframe, kid, extracted.features, extracted.global_raw,
                                    extracted.dense_samples))
        self._names.add(keyframe.name)

    @property
    def batch_size(self) -> int:
        """Keyframes to extract together (``mapping.batch_size``, or 8 on CUDA and 1 else)."""
        if self.conf.mapping.batch_size > 0:
            return self.conf.mapping.batch_size
        runner = getattr(self.extractor, "runner", None)
        return 8 if runner is not None and getattr(runner.device, "type", "cpu") == "cuda" else 1

    # --- building -------------------------------------------------------------------------------
    def build(self, fixed_points: FixedPoints | None = None, progress: bool = False) -> MapIndex:
        """Match, triangulate and assemble the map.

        Args:
            fixed_points: points kept as given (COLMAP import); extracted keypoints within
                ``mapping.colmap_association_max_px`` of their observations take them.
            progress: show progress bars.
        Returns:
            The :class:`MapIndex`.
        Raises:
            EmptyMapError: no keyframes, or too few descriptors to learn the vocabulary.
        """
        if not self._entries:
            raise EmptyMapError("no keyframes were added; there is nothing to build a map from")
        t0 = time.perf_counter()
        mc = self.conf.mapping
        entries = self._entries
        n = len(entries)
        feats = [e.features for e in entries]
        poses = [e.keyframe.cam_from_world for e in entries]
        cams = [e.keyframe.camera for e in entries]

        # 1. global descriptors (learn the vocabulary and PCA from this map)
        gm = self.global_model
        if gm.requires_fit:
            gm.fit(feats)
            raw = np.stack([gm.describe_raw(None, f) for f in feats])
        else:
            raw = np.stack([e.global_raw for e in entries])
        gm.fit_pca(raw)
        gdesc = gm.pca.transform(raw) if gm.pca is not None else raw.astype(np.float32)
        retrieval_index = self._train_retrieval_index(gdesc, progress)

        stage = {"global_descriptors": time.perf_counter() - t0}
        # 2. points that come with the keyframes (COLMAP import)
        assigned = [np.full(len(f), -1, np.int64) for f in feats]
        if fixed_points is not None:
            self._associate(fixed_points, assigned)

        # 3. pairs, matching, epipolar check
        pairs = pairs_from_poses(poses, mc.num_pairs_pose, mc.pair_max_angle_deg, mc.pair_max_distance_m)
        pairs |= pairs_from_retrieval(gdesc, mc.num_pairs_retrieval)
        pairs = sorted(pairs)
        rays = [c.rays(f.keypoints) for c, f in zip(cams, feats)]
        pair_matches: dict[tuple[int, int], np.ndarray] = {}
        num_raw = num_verified = 0
        for i, j in tqdm(pairs, desc="matching keyframe pairs", disable=not progress, unit="pair"):
            qi, qj = self.pair_matcher.match(feats[i], feats[j])
            if not len(qi):
                continue
            num_raw += len(qi)
            err = epipolar_errors(rays[i][qi], rays[j][qj], poses[i], poses[j])
            thr = mc.epipolar_max_error_px / min(cams[i].focal_length, cams[j].focal_length)
            ok = err <= thr
            ok &= (assigned[i][qi] < 0) & (assigned[j][qj] < 0)
            if ok.any():
                pair_matches[(i, j)] = np.stack([qi[ok], qj[ok]], axis=1)
                num_verified += int(ok.sum())

        stage["matching"] = time.perf_counter() - t0 - sum(stage.values())
        # 4. tracks and triangulation
        tracks = build_tracks([len(f) for f in feats], pair_matches)
        if progress:
            logger.info("triangulating %d tracks from %d pairs", len(tracks), len(pairs))
        tri = triangulate_tracks(
            tracks,
            [f.keypoints for f in feats],
            cams,
            poses,
            mc.max_reprojection_error_px,
            mc.min_triangulation_angle_deg,
            mc.min_track_length,
        )

        stage["triangulation"] = time.perf_counter() - t0 - sum(stage.values())
        # 4b. the principal points, checked against the tracks; the map uses the corrected cameras
        calibration = []
        if mc.refine_principal_point and fixed_points is None and len(tri.tracks) >= 20:
            cams, calibration = self._calibrate_principal_points(tri, feats, cams, poses)
            if calibration:  # the points again, with the corrected cameras
                tri = triangulate_tracks(tracks, [f.keypoints for f in feats], cams, poses,
                                         mc.max_reprojection_error_px, mc.min_triangulation_angle_deg,
                                         mc.min_track_length)

        stage["principal_points"] = time.perf_counter() - t0 - sum(stage.values())
        # 5. assemble: fixed points first, then the triangulated ones
        n_fixed = 0 if fixed_points is None else len(fixed_points.ids)
        n_new = len(tri.xyz)
        obs_kf, obs_kp, obs_pt = [], [], []
        for k in range(n):
            kp = np.flatnonzero(assigned[k] >= 0)
            obs_kf.append(np.full(len(kp), k))
            obs_kp.append(kp)
            obs_pt.append(assigned[k][kp])
        for p, track in enumerate(tri.tracks):
            obs_kf.append(track[:, 0])
            obs_kp.append(track[:, 1])
            obs_pt.append(np.full(len(track), n_fixed + p))
        obs_kf = np.concatenate(obs_kf).astype(np.int64)
        obs_kp = np.concatenate(obs_kp).astype(np.int64)
        obs_pt = np.concatenate(obs_pt).astype(np.int64)
        order = np.lexsort((obs_kp, obs_kf))
        obs_kf, obs_kp, obs_pt = obs_kf[order], obs_kp[order], obs_pt[order]
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(obs_kf, minlength=n), out=offsets[1:])
        kp_all = np.concatenate([f.keypoints for f in feats]) if n else np.zeros((0, 2), np.float32)
        desc_all = np.concatenate([f.descriptors for f in feats])
        feat_off = np.zeros(n + 1, np.int64)
        np.cumsum([len(f) for f in feats], out=feat_off[1:])
        flat = feat_off[obs_kf] + obs_kp
        free = {}
        if mc.store_free_features:
            is_free = np.ones(len(kp_all), bool)
            is_free[flat] = False
            free_kf = np.repeat(np.arange(n), np.diff(feat_off))[is_free]
            free_offsets = np.zeros(n + 1, np.int64)
            np.cumsum(np.bincount(free_kf, minlength=n), out=free_offsets[1:])
            free = {"free_offsets": free_offsets, "free_keypoints": kp_all[is_free].astype(np.float32),
                    "free_descriptors": desc_all[is_free].astype(np.float32)}

        point_features, dense_info = None, {}
        if self.dense is not None:
            dr = self.dense.dim
            samples = np.concatenate([
                e.dense_samples if e.dense_samples is not None else np.full((len(e.features), dr), np.nan, np.float16)
                for e in entries])
            point_features = robust_mean(samples[flat], obs_pt, n_fixed + n_new).astype(np.float16)
            dense_info = self.dense.info()

        new_rgb = np.zeros((n_new, 3), np.uint8)
        for p, track in enumerate(tri.tracks):
            cols = [feats[k].colors[i] for k, i in track if feats[k].colors is not None]
            if cols:
                new_rgb[p] = np.mean(cols, axis=0).astype(np.uint8)
        fp = fixed_points
        point_ids = np.concatenate([
            fp.ids.astype(np.int64) if fp is not None else np.zeros(0, np.int64),
            (fp.ids.max() + 1 if fp is not None and n_fixed else 0) + np.arange(n_new, dtype=np.int64),
        ])
        points_xyz = np.concatenate([fp.xyz if fp is not None else np.zeros((0, 3)), tri.xyz])
        points_rgb = np.concatenate([fp.rgb if fp is not None else np.zeros((0, 3), np.uint8), new_rgb])
        points_err = np.concatenate([fp.errors if fp is not None else np.zeros(0, np.float32), tri.errors])

        camera_list, cam_index = _distinct_cameras(cams)

        stats = {
            "keyframes": n,
            "pairs": len(pairs),
            "raw_matches": num_raw,
            "verified_matches": num_verified,
            "tracks": len(tracks),
            "triangulated_points": n_new,
            "fixed_points": n_fixed,
            "observations": int(len(obs_pt)),
            "free_keypoints": int(len(free.get("free_keypoints", ()))),
        }
        if calibration:
            stats["principal_point_corrections"] = len(calibration)
        metadata = {
            "created_by": f"global_loc {__version__}",
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "preset": to_dict(self.conf),
            "source": self.source,
            "stats": stats,
            "skipped": self.skipped,
            "camera_calibration": calibration,
        }
        m = MapIndex(
            keyframe_ids=np.array([e.keyframe_id for e in entries], np.int64),
            names=[e.keyframe.name for e in entries],
            stamps=np.array([e.keyframe.stamp for e in entries], np.float64),
            q_wxyz=np.array([p.q_wxyz for p in poses]).reshape(n, 4),
            t=np.array([p.t for p in poses]).reshape(n, 3),
            camera_index=cam_index.astype(np.int32),
            cameras=camera_list,
            global_descriptors=np.ascontiguousarray(gdesc, np.float32),
            obs_offsets=offsets,
            obs_keypoints=kp_all[flat].astype(np.float32),
            obs_descriptors=desc_all[flat].astype(np.float32),
            obs_point_index=obs_pt,
            point_ids=point_ids,
            points_xyz=points_xyz.astype(np.float64),
            points_rgb=points_rgb.astype(np.uint8),
            points_error=points_err.astype(np.float32),
            local_features=self.extractor.info(),
            global_descriptor=gm.info(),
            global_state=gm.state(),
            frame_id=self.frame_id,
            metadata=metadata,
            point_features=point_features,
            dense_features=dense_info,
            retrieval_index=retrieval_index,
            **free,
        )
        m.point_covariances(np.zeros(0, np.int64))  # kept in the map file: no localizer computes them again
        stage["assembly"] = time.perf_counter() - t0 - sum(stage.values())
        stats["build_seconds"] = round(time.perf_counter() - t0, 3)
        stats["stage_seconds"] = {k: round(v, 3) for k, v in stage.items()}
        logger.info("built map: %s", m.summary())
        return m

    def _train_retrieval_index(self, gdesc: np.ndarray, progress: bool = False):
        """The approximate retrieval index ``mapping.retrieval_index`` asks for (None: exact)."""
        from ..retrieval.index import train_index

        mc = self.conf.mapping
        kind = mc.retrieval_index
        if kind == "auto":
            kind = "flat" if len(gdesc) <= mc.exact_retrieval_max_keyframes else "ivfpq"
        if kind == "flat":
            return None
        t0 = time.perf_counter()
        try:
            trained = train_index(kind, gdesc, dict(mc.retrieval_index_params))
        except ValueError as e:  # e.g. ivfpq asked of a map of a few keyframes
            logger.warning("no %s retrieval index for this map, exact search instead: %s", kind, e)
            return None
        if progress or len(gdesc) > mc.exact_retrieval_max_keyframes:
            logger.info("%s retrieval index over %d %d-d descriptors: %.1f MiB, built in %.1f s", kind, len(gdesc),
                        gdesc.shape[1], len(trained.data) / 2**20, time.perf_counter() - t0)
        return trained

    def _calibrate_principal_points(self, tri, feats, cams, poses):
        """Principal-point offsets of the distinct cameras from the tracks (see
        :mod:`global_loc.map.calibration`); returns the per-keyframe cameras to use and one
        record per corrected camera (``original`` camera, ``delta_px``, ``std_px``, RMSE)."""
        mc = self.conf.mapping
        distinct, index = _distinct_cameras(cams)
        obs_kf = np.concatenate([t[:, 0] for t in tri.tracks]).astype(np.int64)
        obs_kp = np.concatenate([t[:, 1] for t in tri.tracks]).astype(np.int64)
        obs_pt = np.repeat(np.arange(len(tri.tracks)), [len(t) for t in tri.tracks]).astype(np.int64)
        feat_off = np.concatenate([[0], np.cumsum([len(f) for f in feats])])
        pixels = np.concatenate([f.keypoints for f in feats]).astype(np.float64)[feat_off[obs_kf] + obs_kp]
        est = estimate_principal_point_offsets(tri.xyz, obs_kf, obs_pt, pixels, distinct, poses, index)
        records, fixed = [], list(distinct)
        for c, cam in enumerate(distinct):
            d, sd = est.delta_px[c], est.std_px[c]
            significant = (np.all(np.isfinite(sd)) and sd.max() <= mc.principal_point_max_std_px
                           and np.abs(d).max() >= mc.principal_point_min_px and np.any(np.abs(d) > 3 * sd))
            if not significant:
                continue
            if np.abs(d).max() > 20:
                logger.warning("camera %d: the tracks ask for a principal-point offset of (%.1f, %.1f) px; "
                               "not applied: check its calibration", c, *d)
                continue
            fixed[c] = shifted_camera(cam, d)
            records.append({
                "original": {"model": cam.model, "width": cam.width, "height": cam.height,
                             "params": [float(v) for v in cam.params]},
                "corrected_params": [float(v) for v in fixed[c].params],
                "delta_px": [round(float(v), 4) for v in d], "std_px": [round(float(v), 4) for v in sd],
                "rmse_before_px": round(est.rmse_before_px, 4), "rmse_after_px": round(est.rmse_after_px, 4),
            })
            logger.info("camera %d: principal point moved by (%+.2f, %+.2f) px (std %.2f, %.2f): track RMSE "
                        "%.3f -> %.3f px", c, d[0], d[1], sd[0], sd[1], est.rmse_before_px, est.rmse_after_px)
        return [fixed[i] for i in index], records

    def _associate(self, fixed: FixedPoints, assigned: list[np.ndarray]) -> None:
        """Give fixed points to the nearest extracted keypoints (one keypoint per point and
        keyframe, within ``colmap_association_max_px``)."""
        r = self.conf.mapping.colmap_association_max_px
        for k, e in enumerate(self._entries):
            if e.keyframe.name not in fixed.observations:
                continue
            xy, pts = fixed.observations[e.keyframe.name]
            kps = e.features.keypoints
            if len(xy) == 0 or len(kps) == 0:
                continue
            d2, nn = faiss.knn(np.ascontiguousarray(xy, np.float32), np.ascontiguousarray(kps), 1)
            d2, nn = d2[:, 0], nn[:, 0]
            order = np.argsort(d2, kind="stable")
            taken_pts: set[int] = set()
            for o in order:
                if d2[o] > r * r:
                    break
                kp, pt = int(nn[o]), int(pts[o])
                if assigned[k][kp] >= 0 or pt in taken_pts:
                    continue
                assigned[k][kp] = pt
                taken_pts.add(pt)


def _check_size(keyframe: Keyframe, width: int, height: int) -> None:
    cam = keyframe.camera
    if (width, height) != (cam.width, cam.height):
        raise ImageReadError(f"image '{keyframe.name}' is {width}x{height} but its camera is "
                             f"{cam.width}x{cam.height}; check the camera file or the image folder")


def _distinct_cameras(cams: list) -> tuple[list, np.ndarray]:
    """The distinct cameras in order of appearance, and each keyframe's row among them (K,)."""
    distinct: list = []
    index = np.zeros(len(cams), np.int64)
    for k, c in enumerate(cams):
        if c not in distinct:
            distinct.append(c)
        index[k] = distinct.index(c)
    return distinct, index
