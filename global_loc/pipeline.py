"""The offline stages as plain functions; the command line, the benchmarks and the tests
call these (as hloc's stages mirror its command line).

- :func:`index_image_folder`: images + pose list + camera list -> map.
- :func:`index_colmap_model`: a COLMAP reconstruction + its images -> map.
- :func:`localize_image_folder`: a map + images + query list -> results.
- :func:`write_localization_results`: the pose list and the JSON log.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from .config import PipelineConf
from .errors import GlobalLocError, ImageReadError, InputError
from .geometry.camera import Camera
from .geometry.transforms import Pose
from .io.bags import BagReader, BagWriter
from .io.colmap import read_colmap_model
from .io.images import check_image_camera, image_size, read_image
from .io.text import write_poses, write_tum
from .localizer import Localizer
from .map.builder import MapBuilder
from .map.incremental import IncrementalIndexer, Offer
from .map.index import MapIndex
from .map.workers import create_workers
from .ros import conversions as conv
from .ros.frame_handler import FrameConfig, FrameHandler, Publication
from .types import Keyframe, LocalizationResult, Status

logger = logging.getLogger(__name__)


def _list_missing(names: Iterable[str], what: str, hint: str, limit: int = 5) -> None:
    names = list(names)
    if names:
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
        raise InputError(f"{len(names)} {what}: {shown}. {hint}")


def check_image_folder(images: Path, cameras: dict[str, Camera], names: Iterable[str]) -> None:
    """Check before any work that every named image exists and has its camera's size.

    One rule for images that exist but cannot be read (not an image, a truncated file): they
    pass here, and the extraction skips them with a warning and counts them (the map's
    ``skipped`` metadata, the summary at the end), as it does a file whose pixels fail to decode.

    Raises:
        InputError: listing the missing images; ImageReadError: the first size mismatch.
    """
    names = list(names)
    if not images.is_dir():
        raise InputError(f"image folder {images} does not exist")
    _list_missing(
        [n for n in names if not (images / n).is_file()],
        f"listed images are not in {images}",
        "Check --images or remove them from the list",
    )
    for n in names:
        try:
            size = image_size(images / n)
        except ImageReadError:
            continue  # unreadable: skipped and counted by the extraction
        check_image_camera(images / n, cameras[n], size)


def index_image_folder(
    images: str | os.PathLike,
    poses: dict[str, Pose],
    cameras: dict[str, Camera],
    conf: PipelineConf,
    frame_id: str = "map",
    progress: bool = False,
    workers: int = 1,
    ray_address: str | None = None,
    base: MapIndex | None = None,
) -> MapIndex:
    """Build a map from the images listed in ``poses`` (cam_from_world) with their cameras.

    Only the images named in ``poses`` are indexed, in that order. An image that turns out
    to be undecodable is skipped with a warning and recorded in the map's metadata.

    Args:
        workers: processes for the per-keyframe work (0: one per core, 1: this one);
            see :func:`global_loc.map.workers.create_workers`.
        ray_address: run that work as Ray tasks instead (``"local"``, ``"auto"`` or an address).
        base: a map to add these keyframes to (:func:`global_loc.map.update.extend_map`;
            ``conf`` then the map's preset) instead of building one from them alone.
    Raises:
        InputError: images without a camera, missing images; ImageReadError: an image whose
            size differs from its camera.
        EmptyMapError: no keyframe could be read.
        MapMismatchError: with ``base``, a preset that makes other descriptors than the map's.
    """
    images = Path(images)
    _list_missing(
        [n for n in poses if n not in cameras],
        "images in the pose list have no camera",
        "Add them to the camera file (hloc format: name MODEL WIDTH HEIGHT PARAMS...)",
    )
    check_image_folder(images, cameras, poses)
    builder = MapBuilder(conf, frame_id=frame_id)
    builder.source = {"type": "image_folder", "images": str(images), "count": len(poses)}
    _add_in_batches(builder, [(Keyframe(n, cameras[n], poses[n]), None) for n in poses], images, True, progress,
                    workers, ray_address)
    return builder.build(progress=progress) if base is None else builder.extend(base, progress=progress)


def _extract_in_order(pool, size: int, frames: Iterable[tuple[object, np.ndarray]],
                      add: Callable[[object, object], None], source: dict) -> None:
    """Send ``(meta, image)`` pairs to ``pool`` in chunks of ``size`` and give each result to
    ``add(meta, extracted)`` in the order of ``frames``; records the engine and the time in
    ``source["indexing"]``."""
    pending: collections.deque = collections.deque()

    def chunks():
        batch: list = []
        for item in frames:
            batch.append(item)
            if len(batch) >= size:
                pending.append([m for m, _ in batch])
                yield [im for _, im in batch]
                batch = []
        if batch:
            pending.append([m for m, _ in batch])
            yield [im for _, im in batch]

    source["indexing"] = pool.info()
    for extracted in pool.map(chunks()):
        for meta, e in zip(pending.popleft(), extracted):
            add(meta, e)
    source["indexing"]["extraction_s"] = round(pool.elapsed, 3)


def _chunk_size(builder: MapBuilder, pool) -> int:
    """Keyframes per task: the extractor's batch, and at least 4 for other processes (fewer
    round trips)."""
    return builder.batch_size if pool.kind == "inline" else max(4, builder.batch_size)


def _add_in_batches(builder: MapBuilder, frames, images: Path, select: bool, progress: bool,
                    workers: int = 1, ray_address: str | None = None) -> None:
    """Read and add keyframes ``[(Keyframe, id or None)]``, their per-keyframe work done by
    ``workers`` processes or Ray (:mod:`global_loc.map.workers`), the results added in order;
    an unreadable image is skipped with a warning."""
    bar = tqdm(total=len(frames), desc="extracting features", disable=not progress, unit="img")

    def selected():
        last = None
        for kf, kid in frames:
            bar.update(1)
            if select and not builder.is_new_keyframe(kf.cam_from_world, last):
                builder.skipped[kf.name] = "keyframe selection: too close to the previous keyframe"
                continue
            try:
                image = read_image(images / kf.name)
            except ImageReadError as e:
                logger.warning("skipping keyframe %s: %s", kf.name, e)
                builder.skipped[kf.name] = str(e)
                continue
            last = kf.cam_from_world
            yield (kf, kid), image

    with create_workers(builder.conf, workers, ray_address, extractor=builder.keyframe_extractor,
                        expected=len(frames)) as pool:
        _extract_in_order(pool, _chunk_size(builder, pool), selected(),
                          lambda meta, e: builder.add_extracted(meta[0], e, meta[1]), builder.source)
    bar.close()


def index_colmap_model(
    model: str | os.PathLike,
    images: str | os.PathLike,
    conf: PipelineConf,
    frame_id: str = "map",
    exclude: Iterable[str] = (),
    progress: bool = False,
    workers: int = 1,
    ray_address: str | None = None,
) -> MapIndex:
    """Build a map from a COLMAP reconstruction: its poses, cameras and registered 3D points
    are kept; extracted keypoints near COLMAP's observations take their points, and further
    points are triangulated from new matches with the poses fixed.

    Args:
        exclude: image names to leave out (e.g. for leave-one-out evaluation); their
            observations are dropped, the points stay.
        workers, ray_address: as for :func:`index_image_folder`.
    """
    cm = read_colmap_model(model)
    images = Path(images)
    exclude = set(exclude)
    kfs = [(kf, iid) for kf, iid in zip(cm.keyframes, cm.image_ids) if kf.name not in exclude]
    check_image_folder(images, {kf.name: kf.camera for kf, _ in kfs}, [kf.name for kf, _ in kfs])
    builder = MapBuilder(conf, frame_id=frame_id)
    builder.source = {"type": "colmap", "model": str(model), "images": str(images)}
    _add_in_batches(builder, kfs, images, False, progress, workers, ray_address)
    points = cm.points
    points.observations = {k: v for k, v in points.observations.items() if k not in exclude}
    return builder.build(fixed_points=points, progress=progress)


@dataclass
class QueryOutcome:
    """One query's result, or why it could not be processed."""

    name: str
    result: LocalizationResult

    def to_log(self) -> dict:
        return {"name": self.name, **self.result.to_log()}


@dataclass
class LocalizationRun:
    outcomes: list[QueryOutcome] = field(default_factory=list)

    @property
    def localized(self) -> dict[str, Pose]:
        return {
            o.name: o.result.cam_from_world for o in self.outcomes if o.result.success
        }


def localize_image_folder(
    localizer: Localizer,
    images: str | os.PathLike,
    queries: dict[str, Camera],
    progress: bool = False,
    on_result: Callable[[QueryOutcome], None] | None = None,
    focal_unknown: Iterable[str] = (),
) -> LocalizationRun:
    """Localize every query of an hloc query list.

    A query whose image cannot be decoded (or disagrees with its camera) gets status
    ``failed`` with the reason; the others go on.

    Args:
        on_result: called after each query (e.g. to write results as they come).
        focal_unknown: the queries whose camera is a guess: PnP estimates their focal length.
    Raises:
        InputError: missing query images (checked before any work).
    """
    images = Path(images)
    if not images.is_dir():
        raise InputError(f"image folder {images} does not exist")
    _list_missing(
        [n for n in queries if not (images / n).is_file()],
        f"query images are not in {images}",
        "Check --images or the query list",
    )
    run = LocalizationRun()
    focal_unknown = set(focal_unknown)
    for name, camera in tqdm(list(queries.items()), desc="localizing", disable=not progress, unit="img"):
        t = time.perf_counter()
        try:
            image = read_image(images / name)
            decode = time.perf_counter() - t
            result = localizer.localize(image, camera, timings={"decode": decode}, focal_unknown=name in focal_unknown)
        except ImageReadError as e:
            result = LocalizationResult(status=Status.FAILED, reason=str(e))
        outcome = QueryOutcome(name, result)
        run.outcomes.append(outcome)
        if on_result is not None:
            on_result(outcome)
    return run


def log_path_for(results: str | os.PathLike) -> Path:
    """The JSON log written beside a results file: ``results.txt`` -> ``results_log.json``."""
    results = Path(results)
    return results.with_name(results.stem + "_log.json")


def write_localization_results(
    results: str | os.PathLike, run: LocalizationRun, extra: dict | None = None
) -> tuple[Path, Path]:
    """Write the pose list (``name qw qx qy qz tx ty tz``, cam_from_world, localized queries
    only) and beside it the JSON log of every query.

    Returns:
        ``(results path, log path)``.
    """
    results = Path(results)
    results.parent.mkdir(parents=True, exist_ok=True)
    write_poses(results, run.localized)
    log = log_path_for(results)
    payload = dict(extra or {})
    payload["queries"] = [o.to_log() for o in run.outcomes]
    log.write_text(json.dumps(payload, indent=1))
    return results, log


# --- bags -----------------------------------------------------------------------------------------
def index_bag(
    bag: str | os.PathLike | Sequence[str | os.PathLike],
    image_topic: str | Sequence[str],
    conf: PipelineConf,
    camera_info_topic: str | None = None,
    camera: Camera | dict[str, Camera] | None = None,
    map_frame: str = "map",
    camera_frame: str | None = None,
    pose_topic: str | None = None,
    body_frame: str | None = None,
    progress: bool = False,
    workers: int = 1,
    ray_address: str | None = None,
    base: MapIndex | None = None,
) -> MapIndex:
    """Build a map from one or more recorded bags (ROS 1, ROS 2 sqlite3 or MCAP).

    Keyframe poses come from ``/tf`` + ``/tf_static`` (``map_frame`` -> the camera frame at
    each image stamp, interpolated, through the whole tree), or from ``pose_topic`` composed
    with the static extrinsics. Frames are selected by travelled distance and rotation
    (``conf.mapping``, each bag on its own) before they are decoded. Frames without a pose, and
    images that cannot be decoded, are skipped and counted in the map's metadata.

    Several bags (runs through the same map frame) make one map: keyframes are numbered in the
    order of the bags, then of time, and their names carry the bag's folder name
    (``<bag>_<topic>_<stamp>``), so that the map is the same whichever engine did the work.

    Args:
        bag: a bag, or a list of them.
        image_topic: an image topic, or several (the cameras of a rig: each camera's frames are
            selected on their own, its pose from tf at each stamp; keyframe names carry the
            topic); with several, ``camera_info_topic`` and ``camera_frame`` must be None and
            ``camera`` None or a dict topic -> camera.
        workers: processes for the per-keyframe work (0: one per core, 1: this one).
        ray_address: run that work as Ray tasks (``"local"``, ``"auto"`` or a cluster address;
            :class:`global_loc.map.workers.RayWorkers`): one task per chunk of keyframes, the
            bags read here and the images sent with the tasks.
        base: a map to add the bags' keyframes to (a new run of a mapped place;
            :func:`global_loc.map.update.extend_map`), ``conf`` then the map's preset.
    Raises:
        InputError: a missing topic or camera information; EmptyMapError: no frame had a pose.
        MapMismatchError: with ``base``, a preset that makes other descriptors than the map's.
    """
    bags = [bag] if isinstance(bag, (str, os.PathLike)) else list(bag)
    if not bags:
        raise InputError("no bag given")
    topics = [image_topic] if isinstance(image_topic, str) else list(image_topic)
    if not topics or len(set(topics)) != len(topics):
        raise InputError(f"image topics must be given once each, got {topics}")
    if len(topics) > 1 and (camera_info_topic is not None or camera_frame is not None):
        raise InputError("with several image topics each camera's camera_info and frame come from its own "
                         "topic and header: drop --camera-info-topic/--camera-frame")
    cameras = camera if isinstance(camera, dict) else {t: camera for t in topics}
    labels = [Path(b).name for b in bags]
    labels = [lb if labels.count(lb) == 1 else f"{lb}{i}" for i, lb in enumerate(labels)]
    source = {"type": "bag", "image_topic": topics[0] if len(topics) == 1 else topics,
              "pose_source": pose_topic or "tf"}
    source.update({"bag": str(bags[0])} if len(bags) == 1 else {"bags": [str(b) for b in bags]})
    indexer = IncrementalIndexer(conf, frame_id=map_frame, source=source)
    bar = tqdm(desc="reading frames", disable=not progress, unit="frame")

    def selected():
        for (path, label), topic in ((b, t) for b in zip(bags, labels) for t in topics):
            indexer.new_sequence()
            with BagReader(path, topic, camera_info_topic, cameras.get(topic), map_frame, camera_frame,
                           pose_topic, body_frame) as reader:
                bar.total = (bar.total or 0) + reader.num_frames
                for f in reader.frames():
                    bar.update(1)
                    name = f.name if len(bags) == 1 else f"{label}_{f.name}"
                    if indexer.select(name, f.map_from_cam, f.reason) != Offer.ADDED:
                        continue
                    image = indexer.decode(name, f.image)
                    if image is not None:
                        yield (name, f.stamp, f.camera, f.map_from_cam), image

    with create_workers(conf, workers, ray_address, extractor=indexer.builder.keyframe_extractor) as pool:
        _extract_in_order(pool, _chunk_size(indexer.builder, pool), selected(),
                          lambda meta, e: indexer.add_extracted(*meta, e), indexer.source)
    bar.close()
    if indexer.counts["no_pose"]:
        logger.warning("%d frames have no pose and were skipped (first: %s)", indexer.counts["no_pose"],
                       indexer.first_no_pose_reason)
    return indexer.build(progress=progress, base=base)


@dataclass
class BagLocalization:
    """The outcome of :func:`localize_bag`: one publication per processed frame."""

    names: list[str] = field(default_factory=list)
    publications: list = field(default_factory=list)

    @property
    def num_localized(self) -> int:
        return sum(p.localized for p in self.publications)


def localize_bag(
    localizer: Localizer,
    bag: str | os.PathLike,
    image_topic: str,
    camera_info_topic: str | None = None,
    camera: Camera | None = None,
    frames=None,
    every: int = 1,
    progress: bool = False,
    on_frame: Callable | None = None,
) -> BagLocalization:
    """Localize the frames of a bag as the localizer node would, with the bag's tf.

    Args:
        frames: :class:`~global_loc.ros.frame_handler.FrameConfig` (map, odom, base, camera
            frames); the map frame defaults to the map's.
        every: localize one frame in ``every``.
        on_frame: called with ``(name, publication)`` after each frame.
    """
    frames = frames or FrameConfig(map_frame=localizer.map.frame_id)
    out = BagLocalization()
    with BagReader(bag, image_topic, camera_info_topic, camera, frames.map_frame,
                   frames.camera_frame or None) as reader:
        handler = FrameHandler(localizer, frames, reader.lookup)
        total = (reader.num_frames + every - 1) // every
        bar = tqdm(total=total, desc="localizing", disable=not progress, unit="frame")
        for k, f in enumerate(reader.frames()):
            if k % every:
                continue
            t = time.perf_counter()
            try:
                image = f.image()
            except ImageReadError as e:
                pub = Publication(f.stamp_ns, LocalizationResult(status=Status.FAILED, reason=str(e)))
                handler.diagnostics.update(pub)
            else:
                pub = handler.handle(image, f.camera, f.stamp_ns, f.frame_id, time.perf_counter() - t)
            out.names.append(f.name)
            out.publications.append(pub)
            if on_frame is not None:
                on_frame(f.name, pub)
            bar.update(1)
        bar.close()
    return out


def write_bag_results(
    run: BagLocalization,
    tum_path: str | os.PathLike,
    out_bag: str | os.PathLike | None = None,
    out_bag_format: str = "mcap",
    pose_topic: str = "/global_loc/pose",
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """Write the TUM trajectory (``map_from_camera`` of every localized frame), its JSON log,
    and optionally a bag with what the node would have published: the pose
    (``geometry_msgs/PoseWithCovarianceStamped``) and ``/tf`` (``map -> odom``).

    Returns:
        ``(tum path, log path)``.
    """
    tum_path = Path(tum_path)
    tum_path.parent.mkdir(parents=True, exist_ok=True)
    write_tum(tum_path, [(p.stamp_ns * 1e-9, p.map_from_cam) for p in run.publications if p.localized])
    log = log_path_for(tum_path)
    entries = []
    for name, p in zip(run.names, run.publications):
        e = {"name": name, "stamp": p.stamp_ns * 1e-9, **p.result.to_log()}
        if p.note:
            e["note"] = p.note
        entries.append(e)
    log.write_text(json.dumps({**(extra or {}), "queries": entries}, indent=1))
    if out_bag is not None:
        with BagWriter(out_bag, out_bag_format) as bag:
            T = bag.types
            for p in run.publications:
                if p.pose is None:
                    continue
                bag.write(pose_topic, "geometry_msgs/msg/PoseWithCovarianceStamped", p.stamp_ns,
                          conv.make_pose_with_covariance_stamped(T, p.map_frame, p.stamp_ns, p.pose,
                                                                 p.covariance))
                if p.transform is not None:
                    parent, child, pose = p.transform
                    bag.write("/tf", "tf2_msgs/msg/TFMessage", p.stamp_ns, conv.make_tf_message(
                        T, [conv.make_transform_stamped(T, parent, child, p.stamp_ns, pose)]))
    return tum_path, log


@dataclass
class RigFrame:
    """One rig frame of :func:`localize_bag_rig`.

    Attributes:
        stamp_ns: the first camera's image stamp.
        names: per camera, its frame's name, or None where that camera had no image within the
            slop.
        result: the :class:`~global_loc.types.LocalizationResult` (``cam_from_world``: the
            rig's, i.e. ``base_from_world``).
    """

    stamp_ns: int
    names: list
    result: LocalizationResult

    @property
    def map_from_base(self) -> Pose | None:
        return None if not self.result.success else self.result.cam_from_world.inverse()


def rig_frames(readers: Sequence, slop_ns: int):
    """Group the frames of several cameras' :class:`~global_loc.io.bags.BagReader` (one topic
    each) into rig frames: each frame of the first camera with, per other camera, its frame
    nearest in stamp within ``slop_ns`` (None where there is none). Frames of the other
    cameras that fall between the first camera's are left out. Streams; yields lists of
    :class:`~global_loc.io.bags.BagFrame` or None, first camera first."""
    others = [iter(r.frames()) for r in readers[1:]]
    heads: list[list] = [[] for _ in others]  # per other camera, frames not yet consumed
    done = [False] * len(others)
    for f in readers[0].frames():
        group = [f]
        for k, it in enumerate(others):
            while not done[k] and (not heads[k] or heads[k][-1].stamp_ns <= f.stamp_ns + slop_ns):
                nxt = next(it, None)
                if nxt is None:
                    done[k] = True
                else:
                    heads[k].append(nxt)
            heads[k] = [g for g in heads[k] if g.stamp_ns >= f.stamp_ns - slop_ns]
            near = [g for g in heads[k] if abs(g.stamp_ns - f.stamp_ns) <= slop_ns]
            best = min(near, key=lambda g: abs(g.stamp_ns - f.stamp_ns), default=None)
            if best is not None:
                heads[k].remove(best)
            group.append(best)
        yield group


def localize_bag_rig(
    localizer: Localizer,
    bag: str | os.PathLike,
    image_topics: Sequence[str],
    base_frame: str = "base_link",
    slop_s: float = 0.01,
    progress: bool = False,
    odom_frame: str = "odom",
) -> list[RigFrame]:
    """Localize a bag's rig frames as the localizer node would with several cameras: the images
    of ``image_topics`` taken within ``slop_s`` of each other, each camera's extrinsics
    ``cam_from_base`` from the bag's tf, one pose of ``base_frame`` per rig frame
    (:class:`~global_loc.ros.rig_handler.RigFrameHandler`: the cameras' matches pooled,
    generalized PnP, the one camera that sees the map where only one does; tracked between
    global queries when the localizer's ``tracking.enabled``, with the odometry
    ``odom_frame -> base_frame`` from the bag's tf).

    Raises:
        InputError: fewer than two topics, or a topic twice.
    """
    from contextlib import ExitStack

    from .ros.rig_handler import RigFrameHandler

    topics = list(image_topics)
    if len(topics) < 2 or len(set(topics)) != len(topics):
        raise InputError(f"a rig needs two or more distinct image topics, got {topics}")
    out: list[RigFrame] = []
    with ExitStack() as stack:
        readers = [stack.enter_context(BagReader(bag, t, map_frame=localizer.map.frame_id)) for t in topics]
        frames = FrameConfig(map_frame=localizer.map.frame_id, odom_frame=odom_frame, base_frame=base_frame)
        handler = RigFrameHandler(localizer, frames, readers[0].lookup, topics)
        bar = tqdm(total=readers[0].num_frames, desc="localizing rig frames", disable=not progress, unit="frame")
        for group in rig_frames(readers, int(slop_s * 1e9)):
            t = time.perf_counter()
            images, cameras, camera_frames = [], [], []
            for f in group:
                image = None
                if f is not None:
                    try:
                        image = f.image()
                    except ImageReadError:
                        image = None  # a broken image: that camera sits this frame out
                images.append(image)
                # no image from this camera in this frame: it sits out (placeholders)
                cameras.append((f or group[0]).camera)
                camera_frames.append((f or group[0]).frame_id)
            pub = handler.handle_rig(images, cameras, group[0].stamp_ns, camera_frames, time.perf_counter() - t)
            missing = handler.diagnostics.problems.get("tf_rig_camera")
            if missing is not None:  # a bag's tf does not change: no later frame would have it
                raise InputError(f"{missing.message} (in the bag's tf)")
            out.append(RigFrame(group[0].stamp_ns, [f.name if f is not None else None for f in group], pub.result))
            bar.update(1)
        bar.close()
    return out
