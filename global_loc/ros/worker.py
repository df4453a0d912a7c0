"""A drop-oldest queue with a worker thread, so that subscription callbacks never wait for heavy
work (the pattern of image_pipeline's ``camera_calibration``). No ROS needed."""
from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

logger = logging.getLogger(__name__)


class DropOldestWorker:
    """Runs ``handler(item)`` on a thread for the items :meth:`put` offers; when more than
    ``maxlen`` items wait, the oldest are dropped (and counted).

    Args:
        handler: called with each item on the worker thread; its exceptions are logged and the
            worker goes on.
        maxlen: items that may wait.
        name: the thread's name.
    """

    def __init__(self, handler: Callable, maxlen: int = 1, name: str = "global_loc_worker"):
        self.handler = handler
        self._queue: collections.deque = collections.deque(maxlen=max(1, int(maxlen)))
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self._draining = False
        self.name = name
        self.dropped = 0
        self.handled = 0
        self.latest = None

    def put(self, item) -> None:
        """Offer an item (never blocks)."""
        with self._cv:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
            self._queue.append(item)
            self.latest = item
            self._cv.notify()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0, drain: bool = False) -> None:
        """Stop after the item in hand; items still waiting are left, or handled first with
        ``drain`` (within ``timeout`` seconds)."""
        with self._cv:
            self._draining = drain
            self._running = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._running and not self._queue:
                    self._cv.wait(timeout=0.5)
                if not self._running and not (self._draining and self._queue):
                    return
                item = self._queue.popleft()
            try:
                self.handler(item)
            except Exception:  # a bug must not stop the robot's localization
                logger.exception("the worker's handler failed")
            self.handled += 1
