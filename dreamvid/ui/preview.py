"""The preview worker: the newest request only, dreamed as the render dreams it.

The preview of clip frame ``k`` is ``pipeline.first_frame`` on the page's film (:meth:`Studio.film`: the whole
clip at preview size, with the song, the schedule, the ``[motion]`` camera and the governor's target of a render
of it): frame ``k`` exactly as a render of the frames from ``k`` on dreams it. A still is dreamed as
``dreamvid dream`` dreams it. Every control's change records a request and returns at once; one thread dreams the
newest request, abandons a dream at its next gradient step when a newer one arrives, and a generation counter
drops any result that is no longer the newest.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["Preview", "PreviewWorker", "Decoder", "Superseded", "PREVIEW_SIDE"]

PREVIEW_SIDE = 360  # the preview's (and the strip's) longest side in pixels
# A scrub forward to frame k by fewer than _READ_ON * k + 12 frames reads on in the open decoder: a frame read costs
# ~10 ms at 360 px (decode, scale, pipe), a frame a fresh decoder drops before k ~3 ms, its start ~0.15 s.
_READ_ON = 0.3


class Superseded(Exception):
    """A newer request arrived (or the job was asked to stop): this dream is abandoned."""


@dataclass
class Preview:
    """A finished preview: the source and dreamed frame (uint8 RGB), or an error line."""

    gen: int
    key: str = ""
    source: np.ndarray | None = None
    image: np.ndarray | None = None
    seconds: float = 0.0
    message: str = ""
    error: bool = False


class Decoder:
    """Clip frames at a size, from a decoder kept open: a scrub forward reads on from where it is instead of
    decoding the clip from its start again (``video.iter_frames`` decodes and drops every frame before ``first``);
    a scrub back, or far ahead (see ``_READ_ON``), starts a new one. One thread uses it."""

    def __init__(self):
        self.frames = None  # the open frame iterator
        self._at: tuple = (None, 0)  # ((clip, size), the next frame it gives)
        self._last: tuple | None = None  # ((clip, size, k), frame): the sliders re-dream the same frame

    def read(self, clip, info, size: tuple[int, int], k: int) -> np.ndarray:
        from .. import video

        if self._last is not None and self._last[0] == (clip, size, k):
            return self._last[1]
        where, at = self._at
        if self.frames is None or where != (clip, size) or not 0 <= k - at < _READ_ON * k + 12:
            self.close()
            self.frames, at = video.iter_frames(clip, first=k, size=size, info=info), k
        frame = None
        while at <= k:
            frame = next(self.frames, None)
            if frame is None:
                self.close()
                raise InputError(f"{clip.name} gave no frame {k}")
            at += 1
        self._at, self._last = ((clip, size), at), ((clip, size, k), frame)
        return frame

    def close(self) -> None:
        frames, self.frames, self._at = self.frames, None, (None, 0)
        if frames is not None:
            frames.close()  # ends its ffmpeg


class PreviewWorker:
    """Dreams the newest preview request of a :class:`~dreamvid.ui.studio.Studio` in its own thread."""

    def __init__(self, studio):
        self._studio = studio
        self._cond = threading.Condition()
        self._req: tuple[int, int, dict, str] | None = None  # gen, frame, settings, input key
        self._gen = 0
        self.result: Preview | None = None
        self._thread: threading.Thread | None = None
        self._memo: dict = {}  # the last fresh frame's dream before the governor (Coherence.dream)
        self._still: tuple[tuple, np.ndarray] | None = None  # the last still's dream
        self._decoder = Decoder()

    def start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dreamvid-ui-preview", daemon=True)
                self._thread.start()

    def request(self, frame: int, settings: dict, key: str) -> int:
        """Record a request; returns its generation at once."""
        with self._cond:
            self._gen += 1
            self._req = (self._gen, frame, settings, key)
            self._cond.notify_all()
            return self._gen

    def wait(self, gen: int | None = None, timeout: float = 120.0) -> Preview | None:
        """The preview of request ``gen`` (default: the newest); None if a newer request superseded it (or on
        timeout): the caller shows nothing stale."""
        with self._cond:
            gen = self._gen if gen is None else gen
            self._cond.wait_for(lambda: (self.result is not None and self.result.gen >= gen) or self._gen > gen,
                                timeout=timeout)
            r = self.result
            return r if r is not None and r.gen == gen else None

    def _loop(self) -> None:
        done = 0
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda d=done: self._req is not None and self._req[0] > d, timeout=30):
                    self._decoder.close()  # idle: no decoder kept waiting
                    continue
                gen, frame, settings, key = self._req
            try:
                result = self._dream(gen, frame, settings, key, functools.partial(self._superseded, gen))
            except Superseded:
                done = gen
                continue
            except Exception as e:  # noqa: BLE001 - the page gets one line
                result = Preview(gen, message=self._studio.one_line(e), error=True)
            with self._cond:
                done = gen
                if gen == self._gen or result.error:
                    self.result = result
                self._cond.notify_all()

    def _superseded(self, gen: int) -> bool:
        return self._gen != gen

    def _dream(self, gen: int, frame: int, settings: dict, key: str, superseded) -> Preview:
        studio, inputs = self._studio, self._studio.inputs
        if not key:
            return Preview(gen, message="load a clip (and a song), or a still image, to see a preview", error=True)
        cfg = studio.config(settings)
        react = float(settings.get("react", 1.0))
        rkey = json.dumps([key, frame, react, cfg.to_dict()], sort_keys=True, default=str)
        if self.result is not None and self.result.key == rkey and not self.result.error:
            return dataclasses.replace(self.result, gen=gen)
        dreamer = studio.dreamer(cancel=superseded)
        steps = [0]

        def on_step(_info):
            if superseded():
                raise Superseded
            steps[0] += 1

        t = time.perf_counter()
        if inputs.still is not None and key == str(inputs.still):
            src, out = self._dream_still(dreamer, inputs.still_img, cfg.dream, on_step)
            what = f"{inputs.still.name} at {src.shape[1]}×{src.shape[0]}"
        else:
            from ..pipeline import first_frame

            film = studio.film(cfg, react)
            if superseded():
                raise Superseded
            raw = self._decoder.read(inputs.clip, inputs.info, film.size, frame)
            src, out = first_frame(film, dreamer, frame, raw=raw, callback=on_step, memo=self._memo)
            fp = film.schedule.frame(frame)
            target = f", strength {fp.target:.1f}" if fp.target else ""
            music = f" (music ×{fp.strength:.2f})" if film.features is not None and react > 0 else ""
            what = f"frame {frame} ({frame / film.fps:.2f} s) at {src.shape[1]}×{src.shape[0]}{target}{music}"
        dt = time.perf_counter() - t
        what = f"{what}: {'dreamed' if steps[0] else 're-used the dream'} in {dt:.2f} s"
        return Preview(gen, rkey, src, out, dt, what)

    def _dream_still(self, dreamer, img: np.ndarray, params, on_step) -> tuple[np.ndarray, np.ndarray]:
        """A still at preview size, as ``dreamvid dream`` dreams it (the last one is kept: the governor's and the
        coherence's sliders do not change it)."""
        from ..images import fit

        src = fit(img, PREVIEW_SIDE)
        key = (hashlib.blake2b(src.tobytes(), digest_size=16).hexdigest(), src.shape, repr(params))
        if self._still is None or self._still[0] != key:
            self._still = (key, dreamer.dream(src, params, callback=on_step))
        return src, self._still[1]
