"""The MapBuilder: keyframes with known poses -> a map.

Keyframe selection by travelled distance and rotation and the per-keyframe work (local
features, raw global descriptors, dense samples: :mod:`global_loc.map.workers`) happen as
keyframes are added; :meth:`MapBuilder.build` then runs the stages of
:mod:`global_loc.map.stages` (global descriptors, pairs, pair matching with the epipolar
check, tracks and triangulation, principal-point check, assembly) into a :class:`MapIndex`
(hloc's triangulation from known poses, with HF-Net's map content).
"""
from __future__ import annotations

import datetime
import logging
import time
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..config import PipelineConf, load_preset, to_dict
from ..errors import EmptyMapError, ImageReadError, InputError
from ..features import LocalFeatureExtractor
from ..geometry.transforms import Pose, rotation_angle_deg
from ..matching.matchers import create_pair_matcher
from ..refinement import DenseFeatures
from ..retrieval import GlobalDescriptorModel
from ..types import Keyframe, LocalFeatures
from . import stages
from .index import MapIndex
from .stages import FixedPoints
from .workers import ExtractedKeyframe, KeyframeExtractor

logger = logging.getLogger(__name__)


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
        """Match, triangulate and assemble the map: the stages of :mod:`global_loc.map.stages`
        in order, each timed (``metadata["stats"]["stage_seconds"]``).

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
        mc, entries = self.conf.mapping, self._entries
        feats = [e.features for e in entries]
        poses = [e.keyframe.cam_from_world for e in entries]
        cams = [e.keyframe.camera for e in entries]
        clock = _StageClock()

        gdesc = stages.global_descriptors(self.global_model, feats, [e.global_raw for e in entries])
        retrieval_index = stages.train_retrieval_index(gdesc, mc, progress)
        clock.lap("global_descriptors")
        assigned = stages.associate_fixed_points(fixed_points, [e.keyframe.name for e in entries], feats,
                                                 mc.colmap_association_max_px)
        pairs = stages.select_pairs(poses, gdesc, mc)
        matches = stages.match_pairs(self.pair_matcher, feats, cams, poses, pairs, assigned, mc, progress)
        clock.lap("matching")
        tracks, points = stages.triangulate(feats, cams, poses, matches, mc, progress)
        clock.lap("triangulation")
        calibration: list[dict] = []
        if mc.refine_principal_point and fixed_points is None and len(points.tracks) >= 20:
            cams, calibration, points = stages.check_principal_points(tracks, points, feats, cams, poses, mc)
        clock.lap("principal_points")
        arrays = stages.assemble(feats, assigned, points, fixed_points,
                                 [e.dense_samples for e in entries] if self.dense is not None else None,
                                 self.dense.dim if self.dense is not None else 0, mc.store_free_features)
        stats = {
            "keyframes": len(entries), "pairs": len(pairs), "raw_matches": matches.num_raw,
            "verified_matches": matches.num_verified, "tracks": len(tracks), "triangulated_points": len(points.xyz),
            "fixed_points": 0 if fixed_points is None else len(fixed_points.ids),
            "observations": int(len(arrays["obs_point_index"])),
            "free_keypoints": int(len(arrays.get("free_keypoints", ()))),
        }
        if calibration:
            stats["principal_point_corrections"] = len(calibration)
        m = self._map_index(entries, poses, cams, gdesc, retrieval_index, arrays, stats, calibration)
        clock.lap("assembly")
        stats["build_seconds"] = round(clock.total(), 3)
        stats["stage_seconds"] = {k: round(v, 3) for k, v in clock.laps.items()}
        logger.info("built map: %s", m.summary())
        return m

    def extend(self, base: MapIndex, progress: bool = False) -> MapIndex:
        """``base`` with the keyframes added here: a new run of a mapped place, without a
        rebuild (:func:`global_loc.map.update.extend_map`: old ids, poses, points kept, old
        points extended, new ones triangulated). This builder must use the map's preset
        (:func:`global_loc.localizer.conf_for_map`).

        Raises:
            MapMismatchError: models that make other descriptors than the map's; InputError: a
                keyframe name the map holds; EmptyMapError: no keyframe added.
        """
        from .update import extend_map

        return extend_map(self, base, progress)

    def _map_index(self, entries, poses, cams, gdesc, retrieval_index, arrays: dict, stats: dict,
                   calibration: list[dict]) -> MapIndex:
        """The :class:`MapIndex` of the assembled arrays, with the keyframes, models and metadata."""
        n = len(entries)
        camera_list, cam_index = stages.distinct_cameras(cams)
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
            global_descriptors=gdesc,
            local_features=self.extractor.info(),
            global_descriptor=self.global_model.info(),
            global_state=self.global_model.state(),
            frame_id=self.frame_id,
            metadata=metadata,
            dense_features=self.dense.info() if self.dense is not None else {},
            retrieval_index=retrieval_index,
            **arrays,
        )
        m.point_covariances(np.zeros(0, np.int64))  # kept in the map file: no localizer computes them again
        return m


class _StageClock:
    """Seconds spent in each named stage, in order."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.t0


def _check_size(keyframe: Keyframe, width: int, height: int) -> None:
    cam = keyframe.camera
    if (width, height) != (cam.width, cam.height):
        raise ImageReadError(f"image '{keyframe.name}' is {width}x{height} but its camera is "
                             f"{cam.width}x{cam.height}; check the camera file or the image folder")
