"""One background thread that runs submitted calls in order, so that HDF5 writes overlap the next batch's compute.

torch releases the GIL while it computes, so a write in this thread runs while the main thread's next batch does.
The queue is bounded (`depth` calls waiting), which bounds the memory held by batches not yet written. An error in
the thread is raised in the caller at the next `submit` or at `close`; later calls are skipped.
"""

from __future__ import annotations

import queue
import threading


class Background:
    def __init__(self, name: str, depth: int = 3):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            fn, args = item
            try:
                if self.error is None:
                    fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                self.error = e
            self.done(fn, args)

    def done(self, fn, args):
        """Called in the thread after each call, run or skipped (a hook for subclasses)."""

    def submit(self, fn, *args):
        self._check()
        self.queue.put((fn, args))

    def close(self):
        """Wait for every submitted call; raise the thread's error, if any."""
        self.queue.put(None)
        self.thread.join()
        self._check()

    def _check(self):
        if self.error is not None:
            raise self.error
