"""Indexing while a robot drives: keyframes are offered one by one, the map is written on
request, at shutdown, and every few keyframes, so that stopping loses nothing indexed.

A save builds the whole map from every keyframe while the map is small; once the saved map
holds ``incremental_after`` keyframes, a save adds only the keyframes since the last one to the
map it wrote then (:func:`~global_loc.map.update.extend_map`: the vocabulary, the principal
point corrections, old points and ids fixed), so that it costs time in proportion to what was
added, not to the map's size (``benchmarks/save_time.py``). ``global-loc index`` builds once,
from all keyframes (:meth:`IncrementalIndexer.build`).

The map indexer node and ``global-loc index --bag`` both feed frames through
:class:`IncrementalIndexer`.
"""
from __future__ import annotations

import enum
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import PipelineConf
from ..errors import EmptyMapError, ImageReadError
from ..geometry.camera import Camera
from ..geometry.transforms import Pose
from ..types import Keyframe
from .builder import MapBuilder
from .index import MapIndex
from .storage import write_map
from .workers import ExtractedKeyframe

logger = logging.getLogger(__name__)


class Offer(str, enum.Enum):
    """What became of an offered frame."""

    ADDED = "added"
    NOT_SELECTED = "not_selected"  # too close to the last keyframe
    NO_POSE = "no_pose"
    BAD_IMAGE = "bad_image"


class IncrementalIndexer:
    """Collects keyframes and writes the map.

    Args:
        conf: the preset (keyframe selection in ``conf.mapping``).
        map_path: where :meth:`save` writes; None: :meth:`save` only builds.
        frame_id: the map frame recorded in the map.
        autosave_every: write the map after every N added keyframes (0: never by itself).
        source: what the frames come from, recorded in the map's metadata with the counts of
            frames offered, without pose, not selected and undecodable.
        incremental_after: once a saved map holds this many keyframes, later saves extend it
            with the keyframes added since (0: every save rebuilds the whole map).

    Thread-safe: a node may offer frames from a worker thread while a service saves;
    :meth:`select` never waits for a build (it has a lock of its own), so selection keeps up
    with the camera while the map is being written.
    """

    def __init__(self, conf: PipelineConf, map_path: str | os.PathLike | None = None,
                 frame_id: str = "map", autosave_every: int = 0, source: dict | None = None,
                 incremental_after: int = 0):
        self.builder = MapBuilder(conf, frame_id=frame_id)
        self.source = dict(source or {})
        self.map_path = None if map_path is None else Path(map_path)
        self.autosave_every = int(autosave_every)
        self.counts = {o.value: 0 for o in Offer}
        self._lock = threading.RLock()  # the builder
        self._select_lock = threading.Lock()  # counts and the last selected pose
        self._added_since_save = 0
        self.incremental_after = int(incremental_after)
        self._saved: MapIndex | None = None  # the last map written, and how many keyframes it holds
        self._saved_count = 0
        self._last_selected: Pose | None = None
        self.first_no_pose_reason = ""

    def offer(self, name: str, stamp: float, camera: Camera, map_from_cam: Pose | None,
              image: Callable[[], np.ndarray] | np.ndarray, reason: str = "") -> Offer:
        """Offer one frame: :meth:`select`, then :meth:`add` when it is a keyframe.

        Args:
            name, stamp: keyframe name and time (seconds).
            camera: its camera.
            map_from_cam: the camera pose in the map frame, or None when unknown (``reason``
                says why).
            image: the pixels, or a function that decodes them (called only for selected frames).
        Returns:
            What became of the frame.
        Raises:
            InputError: an image whose size differs from its camera (a configuration error,
                not a bad frame).
        """
        offer = self.select(name, map_from_cam, reason)
        if offer != Offer.ADDED:
            return offer
        return self.add(name, stamp, camera, map_from_cam, image)

    def select(self, name: str, map_from_cam: Pose | None, reason: str = "") -> Offer:
        """Keyframe selection alone (cheap: no pixels), against the last *selected* frame, so
        that a node can select at the camera's rate and extract features at its own pace.

        Returns:
            ``ADDED`` when the frame is a keyframe (then call :meth:`add` with it), otherwise
            what became of it (counted).
        """
        with self._select_lock:
            if map_from_cam is None:
                self.counts[Offer.NO_POSE.value] += 1
                self.first_no_pose_reason = self.first_no_pose_reason or reason
                return Offer.NO_POSE
            cam_from_world = map_from_cam.inverse()
            if not self.builder.is_new_keyframe(cam_from_world, self._last_selected):
                self.counts[Offer.NOT_SELECTED.value] += 1
                return Offer.NOT_SELECTED
            self._last_selected = cam_from_world
            return Offer.ADDED

    def new_sequence(self) -> None:
        """Start another recording (the next bag): the next frame with a pose is a keyframe, and
        selection goes on from it."""
        with self._select_lock:
            self._last_selected = None

    def decode(self, name: str, image: Callable[[], np.ndarray] | np.ndarray) -> np.ndarray | None:
        """The pixels of a selected frame, or None when they cannot be decoded (counted, logged,
        recorded in the map's metadata)."""
        try:
            return image() if callable(image) else image
        except ImageReadError as e:
            logger.warning("skipping frame %s: %s", name, e)
            with self._lock:
                self.builder.skipped[name] = str(e)
            with self._select_lock:
                self.counts[Offer.BAD_IMAGE.value] += 1
            return None

    def add(self, name: str, stamp: float, camera: Camera, map_from_cam: Pose,
            image: Callable[[], np.ndarray] | np.ndarray) -> Offer:
        """Extract the features of a selected keyframe and add it (autosaving when due).

        Returns:
            ``ADDED``, or ``BAD_IMAGE`` when the image cannot be decoded (counted, logged).
        Raises:
            InputError: an image whose size differs from its camera.
        """
        pixels = self.decode(name, image)
        if pixels is None:
            return Offer.BAD_IMAGE
        with self._lock:
            self.builder.add_keyframe(Keyframe(name, camera, map_from_cam.inverse(), stamp), pixels, select=False)
        return self._added()

    def add_extracted(self, name: str, stamp: float, camera: Camera, map_from_cam: Pose,
                      extracted: ExtractedKeyframe) -> Offer:
        """Add a selected keyframe whose per-keyframe work was done elsewhere
        (:mod:`global_loc.map.workers`), autosaving when due."""
        with self._lock:
            self.builder.add_extracted(Keyframe(name, camera, map_from_cam.inverse(), stamp), extracted)
        return self._added()

    def _added(self) -> Offer:
        with self._lock:
            self._added_since_save += 1
            due = self.autosave_every and self._added_since_save >= self.autosave_every
        with self._select_lock:
            self.counts[Offer.ADDED.value] += 1
        if due:
            try:
                self.save()
            except EmptyMapError as e:  # not yet: the next keyframes may give points
                logger.warning("autosave skipped: %s", str(e).split(";")[0])
        return Offer.ADDED

    @property
    def num_keyframes(self) -> int:
        return self.builder.num_keyframes

    def build(self, progress: bool = False, base: MapIndex | None = None) -> MapIndex:
        """Build the map from the keyframes so far (with ``base``: ``base`` with them added,
        :meth:`MapBuilder.extend <global_loc.map.builder.MapBuilder.extend>`).

        Raises:
            EmptyMapError: no keyframe yet.
        """
        with self._lock:
            self._record_source()
            if base is not None:
                return self.builder.extend(base, progress=progress)
            return self.builder.build(progress=progress)

    def _record_source(self) -> None:
        """The builder's source record with the counts so far (call with ``_lock`` held).

        Raises:
            EmptyMapError: no keyframe yet."""
        with self._select_lock:
            c = dict(self.counts)
        if self.builder.num_keyframes == 0:
            offered = sum(c.values())
            extra = (f": {c['no_pose']} have no pose ({self.first_no_pose_reason})" if c["no_pose"] else "")
            raise EmptyMapError(f"none of the {offered} frames offered could be indexed{extra}")
        self.builder.source = {
            **self.source, "frames": sum(c.values()), "without_pose": c["no_pose"],
            "not_selected": c["not_selected"], "undecodable": c["bad_image"],
        }

    def save(self, progress: bool = False) -> MapIndex:
        """Write the map to ``map_path`` (atomically): the whole map built again, or, once the
        last saved map holds ``incremental_after`` keyframes, that map with the keyframes added
        since (the same map when none was).

        Raises:
            EmptyMapError: the map would hold no 3D point (:meth:`MapIndex.check_localizable`):
                nothing is written, an earlier file stays.
        """
        from .update import extend_map

        with self._lock:
            self._record_source()
            count = self.builder.num_keyframes
            base = self._saved if (self._saved is not None and self.incremental_after
                                   and self._saved.num_keyframes >= self.incremental_after) else None
            if base is None:
                m = self.builder.build(progress=progress)
            elif count == self._saved_count:
                m = base
            else:
                m = extend_map(self.builder, base, progress, entries=self.builder._entries[self._saved_count:])
        m.check_localizable()
        if self.map_path is not None and m is not self._saved:
            write_map(m, self.map_path)
            logger.info("wrote %s: %s", self.map_path, m.summary())
        with self._lock:
            self._added_since_save = 0
            self._saved, self._saved_count = (m if self.incremental_after else None), count
        return m
