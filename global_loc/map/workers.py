"""The per-keyframe work of indexing, run in this process, in worker processes, or on a Ray
cluster.

Indexing spends most of its time on work that each keyframe needs alone: local features, the
global descriptor of models that need no fitting, and the dense samples at the keypoints for
the points' reference features. :class:`KeyframeExtractor` does that work for one image;
:func:`create_workers` gives the engine that runs it for a stream of chunks of images:

- :class:`InlineWorkers`: in the calling process (``workers=1``; the map indexer node);
- :class:`ProcessWorkers`: a pool of local worker processes, one per core by default
  (``concurrent.futures`` over ``forkserver``);
- :class:`RayWorkers`: Ray tasks (https://docs.ray.io), one per chunk of keyframes, on a local
  Ray instance or an existing cluster.

Every engine returns the chunks' results in the order they were submitted, so the map built
from them is the same whatever ran the work: keyframe and point ids are assigned once, by the
:class:`~global_loc.map.builder.MapBuilder` that receives the results in order. Matching,
tracks and triangulation stay in the process that builds the map (they need all keyframes).
"""
from __future__ import annotations

import abc
import collections
import json
import logging
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..config import PipelineConf, from_dict, to_dict
from ..errors import ConfigError, GlobalLocError, InputError
from ..runtime.threads import available_cores
from ..types import LocalFeatures

logger = logging.getLogger(__name__)


@dataclass
class ExtractedKeyframe:
    """What indexing computes from one keyframe's image alone.

    Attributes:
        features: its local features (keypoints in pixels of the image).
        global_raw: (D,) float32 global descriptor before PCA, for models that need no fitting
            (None for VLAD, which learns its vocabulary from the whole map first).
        dense_samples: (N, Dr) float16 dense features at the N keypoints (the points'
            reference features for feature-metric refinement), or None without a dense source.
    """

    features: LocalFeatures
    global_raw: np.ndarray | None = None
    dense_samples: np.ndarray | None = None


class KeyframeExtractor:
    """Local features, global descriptor and dense samples of keyframe images, with the models a
    :class:`~global_loc.config.PipelineConf` names.

    Making one sets the process's malloc thresholds (``conf.malloc_trim_threshold_mib``, see
    :mod:`global_loc.runtime.memory`): with glibc's own, each SIFT keyframe faulted its scale
    space in again (19,000 page faults, half of its time).

    Args:
        conf: the preset (``features``, ``global_descriptor``, ``refinement.features``).
        extractor, global_model, dense: already-built models to use instead.
    """

    def __init__(self, conf: PipelineConf, extractor=None, global_model=None, dense=None):
        from ..features import create_extractor
        from ..refinement import create_dense_features
        from ..retrieval import create_global_model
        from ..runtime.memory import retain_freed_memory

        retain_freed_memory(conf.malloc_trim_threshold_mib)
        models_dir = conf.models_dir or None
        self.extractor = extractor or create_extractor(conf.features, device=conf.device, models_dir=models_dir)
        self.global_model = global_model or create_global_model(conf.global_descriptor, device=conf.device,
                                                                models_dir=models_dir)
        dense_conf = conf.refinement.features
        if dense is None and dense_conf.get("name"):
            dense = create_dense_features(dense_conf, device=conf.device, models_dir=models_dir)
        self.dense = dense
        # dense features that reuse the extractor's maps need each image's extraction just before
        # their own (the extractor keeps the maps of its last image only)
        self._shared = bool(self.dense is not None and hasattr(self.dense, "share")
                            and self.dense.share(self.extractor))

    def finish(self, image: np.ndarray | None, features: LocalFeatures) -> ExtractedKeyframe:
        """The global descriptor and dense samples of an image whose features are known.

        Args:
            image: (H, W) or (H, W, 3) uint8, or None when only the features are known (then no
                dense samples, and the global model must aggregate local features, as VLAD does).
        """
        from ..refinement import sample_pyramid

        global_raw = None
        if not self.global_model.requires_fit:
            global_raw = self.global_model.describe_raw(image, features)
        dense_samples = None
        if self.dense is not None and image is not None:
            dense_samples = sample_pyramid(self.dense.extract(image), features.keypoints).astype(np.float16)
        return ExtractedKeyframe(features, global_raw, dense_samples)

    def extract(self, image: np.ndarray) -> ExtractedKeyframe:
        """Everything of one keyframe image ((H, W) or (H, W, 3) uint8 RGB).

        Raises:
            InputError: an image of another shape or dtype.
        """
        return self.finish(image, self.extractor.extract(image))

    def extract_batch(self, images: list[np.ndarray]) -> list[ExtractedKeyframe]:
        """:meth:`extract` of several images; learned extractors batch them (GPU), unless the
        dense features reuse their maps (then one image at a time, each map used once)."""
        if self._shared:
            return [self.extract(im) for im in images]
        feats = self.extractor.extract_batch(images) if images else []
        return [self.finish(im, f) for im, f in zip(images, feats)]


# --- worker side -------------------------------------------------------------------------------
_WORKER_EXTRACTORS: dict[str, KeyframeExtractor] = {}


def _worker_setup() -> None:
    """A worker process of the pool: Ctrl-C left to the parent, which stops the pool; SIGTERM
    (a supervisor stopping the whole group) ends it quietly, not through the stack dump of the
    glog handler that pycolmap installs."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _one_thread_each() -> None:
    """A worker (of the pool, or a Ray task's process): one thread per library, as the pool
    gives one process per core and Ray one task per CPU; torch only where a network imported it
    (SIFT workers do not: 220 MiB a worker)."""
    import cv2

    from ..runtime.threads import limit_blas_threads

    cv2.setNumThreads(1)
    limit_blas_threads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def extract_chunk(conf_json: str, images: list[np.ndarray]) -> list[ExtractedKeyframe]:
    """Worker entry point (process pool and Ray): :meth:`KeyframeExtractor.extract_batch` with
    the models of ``conf_json`` (a preset as JSON, :func:`~global_loc.config.to_dict`), built
    once per worker process and kept for its later chunks."""
    extractor = _WORKER_EXTRACTORS.get(conf_json)
    if extractor is None:
        extractor = _WORKER_EXTRACTORS[conf_json] = KeyframeExtractor(from_dict(PipelineConf, json.loads(conf_json)))
        _one_thread_each()
    return extractor.extract_batch(images)


# --- engines -----------------------------------------------------------------------------------
class Workers(abc.ABC):
    """Runs :func:`extract_chunk` over chunks of keyframe images.

    :meth:`map` takes an iterable of chunks (lists of images) and yields each chunk's
    ``list[ExtractedKeyframe]`` in the order of the chunks, keeping at most
    :attr:`max_in_flight` chunks submitted and not yet returned, so that images are read no
    faster than they are processed. Use as a context manager, or call :meth:`close`.
    """

    #: a short name for logs and the map's metadata
    kind = ""

    def __init__(self, conf: PipelineConf, num_workers: int):
        self.conf_json = json.dumps(to_dict(conf), sort_keys=True)
        self.num_workers = num_workers

    @property
    def max_in_flight(self) -> int:
        return 2 * self.num_workers

    @abc.abstractmethod
    def _submit(self, images: list[np.ndarray]):
        """Start one chunk; returns a handle for :meth:`_result`."""

    @abc.abstractmethod
    def _result(self, handle) -> list[ExtractedKeyframe]:
        """Wait for one chunk's result (re-raising the worker's exception)."""

    #: seconds from the first chunk taken to the last result of :meth:`map` (reading the
    #: chunks included; not the time the caller spends between results)
    elapsed = 0.0

    def map(self, chunks: Iterable[list[np.ndarray]]) -> Iterator[list[ExtractedKeyframe]]:
        pending: collections.deque = collections.deque()
        t0 = time.perf_counter()
        for chunk in chunks:
            pending.append(self._submit(chunk))
            while len(pending) >= self.max_in_flight:
                yield self._result(pending.popleft())
        while pending:
            yield self._result(pending.popleft())
        self.elapsed = time.perf_counter() - t0

    def close(self) -> None:
        """Stop the workers (idempotent)."""

    def info(self) -> dict:
        """``{"engine": ..., "workers": N}``, recorded in the map's metadata."""
        return {"engine": self.kind, "workers": self.num_workers}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.abort()  # Ctrl-C or SIGTERM: stop now, not after the chunks in hand
        else:
            self.close()

    def abort(self) -> None:
        """Stop the workers at once, dropping the work in hand (default: :meth:`close`)."""
        self.close()


class InlineWorkers(Workers):
    """The work in the calling process, with the caller's :class:`KeyframeExtractor`."""

    kind = "inline"

    def __init__(self, conf: PipelineConf, extractor: KeyframeExtractor | None = None):
        super().__init__(conf, 1)
        self.extractor = extractor or KeyframeExtractor(conf)

    @property
    def max_in_flight(self) -> int:
        return 1

    def _submit(self, images):
        return self.extractor.extract_batch(images)

    def _result(self, handle):
        return handle


class ProcessWorkers(Workers):
    """A pool of ``num_workers`` local worker processes (``forkserver``: the workers start from
    a clean process that has imported the extraction code once, not from a copy of the caller
    with its threads). Each builds the models once and runs single-threaded."""

    kind = "processes"

    def __init__(self, conf: PipelineConf, num_workers: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        super().__init__(conf, num_workers)
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        self._pool = ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=_worker_setup)

    def _submit(self, images):
        try:
            return self._pool.submit(extract_chunk, self.conf_json, images)
        except BrokenProcessPool as e:
            raise self._died(e) from None

    def _result(self, handle):
        try:
            return handle.result()
        except BrokenProcessPool as e:
            raise self._died(e) from None

    def _died(self, e) -> GlobalLocError:
        self._stop_broken()
        return GlobalLocError(f"an indexing worker process died ({e}); if the machine ran out of memory, "
                              "give fewer --workers (each holds the models and a few images), or --workers 1")

    def _stop_broken(self) -> None:
        """Stop a pool one of whose workers died. ``concurrent.futures`` joins the other workers
        then, and one started just before (or blocked on a queue lock the dead one held) never
        exits: its join would hang for ever (CPython 3.11), here and at interpreter exit. So the
        workers are killed until the pool's manager thread has finished."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        thread = getattr(pool, "_executor_manager_thread", None)
        for _ in range(100):
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                if proc is not None and proc.is_alive():
                    proc.kill()
            if thread is None or not thread.is_alive():
                break
            thread.join(0.1)
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        """Kill the workers (they ignore SIGINT, leaving it to this process): no orphan is left."""
        self._stop_broken()


class RayWorkers(Workers):
    """Ray tasks, one per chunk of keyframes.

    Args:
        address: ``"local"`` starts a Ray instance on this machine (or joins the one ``RAY_ADDRESS``
            names); ``"auto"`` joins the cluster running on this machine; ``HOST:PORT`` or
            ``ray://HOST:10001`` joins a remote cluster. Every node of a cluster needs
            ``global_loc`` (and the model weights under the same ``models_dir``) installed.
        num_workers: the number of tasks kept in flight is twice this; 0: the cluster's CPUs.
        init_kwargs: further arguments of ``ray.init`` (e.g. ``num_cpus`` for a local instance).

    Raises:
        InputError: Ray is not installed, or the cluster cannot be joined.
    """

    kind = "ray"

    def __init__(self, conf: PipelineConf, address: str = "local", num_workers: int = 0, **init_kwargs):
        try:
            import ray
        except ImportError:
            raise InputError("--ray needs the ray package: pip install 'ray>=2.9'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            kwargs.update(init_kwargs)
            try:
                ray.init(address=None if address == "local" else address, **kwargs)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
                hint = ("start one with `ray start --head` (and `ray start --address HEAD:6379` on the other "
                        "nodes), or give --ray without a value for a Ray instance of this command's own")
                raise InputError(f"cannot join the Ray cluster '{address}': {str(e).rstrip('.')}. {hint}") from None
            self._started = True
        if num_workers <= 0:
            num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        super().__init__(conf, num_workers)
        self._conf_ref = ray.put(self.conf_json)
        self._task = ray.remote(num_cpus=1)(extract_chunk)

    def _submit(self, images):
        return self._task.remote(self._conf_ref, images)

    def _result(self, handle):
        return self._ray.get(handle)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _on_gpu(extractor: KeyframeExtractor | None) -> bool:
    runner = getattr(getattr(extractor, "extractor", None), "runner", None)
    return getattr(getattr(runner, "device", None), "type", "cpu") == "cuda"


#: With ``workers=0``, fewer keyframes than this are done in the calling process: starting the
#: workers (about 2 s: Python, OpenCV, the models) costs more than they save on so few.
MIN_KEYFRAMES_FOR_PROCESSES = 40


def create_workers(conf: PipelineConf, num_workers: int = 0, ray_address: str | None = None,
                   extractor: KeyframeExtractor | None = None, expected: int | None = None,
                   **ray_init) -> Workers:
    """The engine for indexing's per-keyframe work.

    Args:
        num_workers: worker processes (0: one per available core, or this process alone for
            fewer than :data:`MIN_KEYFRAMES_FOR_PROCESSES` ``expected`` keyframes, or when
            ``extractor``'s network runs on CUDA: one process batches for the GPU
            (``mapping.batch_size``) where each worker would load its own copy; 1: this
            process). Under Ray, the tasks in flight are twice this (0: the cluster's CPUs).
        ray_address: run on Ray (see :class:`RayWorkers`); None: on this machine.
        extractor: the caller's models, used when the work stays in this process.
        expected: the number of keyframes to come, where known.
    Raises:
        ConfigError: a negative worker count; InputError: Ray asked for and not installed, or
            its cluster cannot be joined.
    """
    if num_workers < 0:
        raise ConfigError(f"workers must be 0 (one per core) or positive, got {num_workers}")
    if ray_address is not None:
        return RayWorkers(conf, ray_address, num_workers, **ray_init)
    n = num_workers
    if n == 0:
        few = expected is not None and expected < MIN_KEYFRAMES_FOR_PROCESSES
        n = 1 if few or _on_gpu(extractor) else available_cores()
    if n == 1:
        return InlineWorkers(conf, extractor)
    return ProcessWorkers(conf, n)
