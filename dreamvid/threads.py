"""The render core's threads: a source read ahead, writes done behind, in order, with clean shutdown.

Decoding and optical flow (which need only source frames) run ahead of the dream in one thread (:class:`Ahead`);
measures and encoding run behind it (:class:`Behind`), so the dreamer, the expensive stage, never waits on them.
Every queue is bounded: memory does not grow with the clip's length.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["Ahead", "Behind", "Inline", "join", "close_quietly"]


class Inline:
    """An iterator consumed in the loop's own thread, with :class:`Ahead`'s ``close`` (a feedback source needs
    the frame just dreamed, so it cannot run ahead)."""

    def __init__(self, it: Iterator):
        self._it = it

    def __iter__(self):
        return self._it

    def close(self):
        self._it.close()


def join(thread: threading.Thread) -> None:
    """Wait for ``thread`` to end, even through Ctrl-C; a Ctrl-C that came meanwhile is raised afterwards."""
    interrupted = None
    while thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt as e:
            interrupted = e
    if interrupted is not None:
        raise interrupted


class Ahead:
    """Runs an iterator in a thread, a few items ahead, re-raising its errors in the consumer.

    :meth:`close` stops the thread, closes the iterator (in that thread) and waits for it to end.
    """

    _END = object()

    def __init__(self, it: Iterator, depth: int = 4, name: str = "dreamvid-decode"):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(it,), name=name, daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it):
        try:
            for item in it:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer
            self._put(e)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()  # a generator's finally (the decoder's release) runs now, not at garbage collection

    def __iter__(self):
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self._stop.set()
        join(self._t)
        with contextlib.suppress(queue.Empty):
            while True:
                self._q.get_nowait()  # drop the frames read ahead


class Behind:
    """A single worker thread that does writes in order behind the loop (bounded queue).

    :meth:`close` always returns with the thread ended: it runs the pending jobs first (a finished frame is kept)
    unless told not to, and a Ctrl-C while it waits skips the jobs not yet started instead of being swallowed.
    """

    def __init__(self, depth: int = 4, name: str = "dreamvid-encode"):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._err: BaseException | None = None
        self._skip = threading.Event()
        self.busy = 0.0
        self._t = threading.Thread(target=self._run, name=name, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._err is None and not self._skip.is_set():
                t = time.perf_counter()
                try:
                    job()
                except BaseException as e:
                    self._err = e
                self.busy += time.perf_counter() - t

    def submit(self, fn: Callable[[], None]):
        self.check()
        self._q.put(fn)

    def check(self):
        if self._err is not None:
            raise self._err

    def close(self, *, drain: bool = True) -> None:
        """Stop the worker (after the pending jobs if ``drain``) and wait for it; then raise its error, if any."""
        interrupted = None
        if not drain:
            self._skip.set()
        while self._t.is_alive():
            try:
                self._q.put(None, timeout=0.05)  # the worker keeps taking jobs, so this is never stuck
                break
            except queue.Full:
                continue
            except KeyboardInterrupt as e:
                interrupted = e
                self._skip.set()
        while self._t.is_alive():
            try:
                self._t.join()
            except KeyboardInterrupt as e:
                interrupted = e
                self._skip.set()  # a second Ctrl-C: finish only the job under way
        if interrupted is not None:
            raise interrupted
        self.check()


def close_quietly(worker: Behind) -> None:
    """Close ``worker``; an error it raises is dropped (the error being raised already says what went wrong)."""
    try:
        worker.close()
    except Exception:
        pass
