"""Frame sources: what each frame of a render dreams from. The first stage of the render core.

A source yields one :class:`SourceFrame` per frame of the film, in order: the frame as the camera sees it, the
frame before it, and the motion that carries the previous dream onto it. Every front end composes one:

* :func:`footage`: a clip, decoded (``video.iter_frames``), for ``dreamvid render``, a batch chunk, the UI's
  preview and strip;
* :class:`Track` (one frame at a time) and :func:`track` (over an iterator of frames): the camera move, scene cuts
  and motion, for footage and for live sources (a camera, a looped clip) alike;
* ``dreamvid.zoom.Feedback``: the infinite zoom, where each frame is the previous output moved (it needs the
  frame just dreamed, so it runs in the loop's own thread: :func:`feedback`).

Frame indices are the film's (the range that ``--start``/``--duration`` choose): a chunk or a strip that starts
at frame ``k`` sees the camera, the schedule and the song exactly as a render of the whole film does there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from . import video

__all__ = ["SourceFrame", "Track", "camera", "track", "footage", "feedback"]


@dataclass(frozen=True)
class SourceFrame:
    """One frame of a source.

    Attributes
    ----------
    k : int, the frame's index in the film
    src : uint8 (H, W, 3), the frame as the camera sees it (moved by ``[motion]`` and the music's zoom pulse)
    prev : uint8 (H, W, 3) or None, the source frame before (None: the first frame this source yields)
    flows : (bwd, fwd) float32 (H, W, 2) or None, the motion from ``prev`` to ``src`` that carries the dream
        (None: the first frame, a scene cut, no flow, or a frame a resume skips)
    cut : bool, a new shot starts at ``k``: nothing is carried into it
    skip : bool, a frame a resumed render already has (only decoded, to keep the camera and the motion in step)
    """

    k: int
    src: np.ndarray
    prev: np.ndarray | None = None
    flows: tuple[np.ndarray, np.ndarray] | None = None
    cut: bool = False
    skip: bool = False


def camera(schedule, size: tuple[int, int]) -> Callable[[int, np.ndarray], np.ndarray]:
    """``move(k, src)``: footage frame ``k`` as the camera sees it: moved by the ``[motion]`` of frames 1..k
    (accumulated: the camera travels), then by the music's zoom pulse. Call it with ``k`` rising; the first call
    may be at any ``k`` (the camera catches up)."""
    if not schedule.moving:
        return lambda k, src: _pulse(src, float(schedule.zoom[k]))
    w, h = size
    cam = [np.eye(3), 0]  # the camera's move at frame cam[1]
    motion = schedule.motion  # (n, 4), built once: a property that stacks four curves

    def move(k: int, src: np.ndarray) -> np.ndarray:
        while cam[1] < k:
            cam[1] += 1
            z, r, tx, ty = motion[cam[1]]
            cam[0] = video.compose(cam[0], video.motion_matrix((w, h), zoom=z, rotate=r, translate=(tx * w, ty * h)))
        pulse = video.motion_matrix((w, h), zoom=float(schedule.zoom[k]), center=(w / 2, h / 2))
        return video.warp_motion(src, video.compose(cam[0], pulse))

    return move


def _pulse(img: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom into the centre by ``zoom`` (a beat pulse), keeping the size."""
    import cv2

    if abs(zoom - 1.0) < 1e-4:
        return img
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class Track:
    """The camera, the scene cuts and the motion, one frame at a time: ``track(k, raw, schedule, size)`` gives film
    frame ``k`` as a :class:`SourceFrame`. ``k`` rises; gaps are allowed (a live loop takes only the frames it has
    time for), and so are changes of ``schedule`` (live controls rebuild it) and of ``size`` (the frame before is
    resized, and the motion measured afresh from it).

    Parameters
    ----------
    video_params : VideoParams (``scene_cut``, ``flow``, ``flow_max_side``)
    motion : measure the motion (False: only the camera and the cuts, e.g. to find a film's cuts)
    stage : called with ``(src, *flows)`` for each frame to dream, as soon as it is ready (the JAX dreamer copies
        it to the device ahead of the dream)
    seconds : ``"decode"`` and ``"flow"`` are added to (the report's timings)
    """

    def __init__(self, video_params, *, motion: bool = True, stage: Callable[..., None] | None = None,
                 seconds: dict[str, float] | None = None):
        self.video_params, self.motion, self.stage = video_params, motion, stage
        self.seconds = seconds if seconds is not None else {}
        self.tracker = video.MotionTracker(video_params)
        self.prev: np.ndarray | None = None
        self._camera = None  # (schedule, size, move)

    def __call__(self, k: int, raw: np.ndarray, schedule, size: tuple[int, int], *,
                 skip: bool = False) -> SourceFrame:
        """Film frame ``k`` from the raw footage frame ``raw`` (uint8 (H, W, 3) at ``size``); ``skip``: a frame a
        resume already has (the camera and the motion only keep in step)."""
        t = time.perf_counter()
        if self._camera is None or self._camera[0] is not schedule or self._camera[1] != size:
            self._camera = (schedule, size, camera(schedule, size))
        src = self._camera[2](k, raw)  # the zoom pulse moves the footage itself, so the flow (and the dream) sees it
        t = _add(self.seconds, "decode", t)
        prev = self.prev
        if prev is not None and prev.shape != src.shape:  # a new size: the frame before, resized, and fresh motion
            prev = _resize(prev, size)
            self.tracker = video.MotionTracker(self.video_params)
            self.tracker.push(prev, need=False)
        cut = False if skip or prev is None else video.scene_cut_score(prev, src) > self.video_params.scene_cut
        flows = self.tracker.push(src, cut=cut, need=self.motion and not skip)
        if self.stage is not None and not skip:
            self.stage(src, *(flows or ()))
        _add(self.seconds, "flow", t)
        self.prev = src
        return SourceFrame(k, src, prev, flows, bool(cut), skip)


def _add(seconds: dict[str, float], key: str, since: float) -> float:
    now = time.perf_counter()
    seconds[key] = seconds.get(key, 0.0) + now - since
    return now


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def track(frames: Iterable[np.ndarray], *, start: int, schedule, size: tuple[int, int], video_params,
          skip_to: int = 0, motion: bool = True, stage: Callable[..., None] | None = None,
          seconds: dict[str, float] | None = None) -> Iterator[SourceFrame]:
    """:class:`Track` over raw frames of the film from frame ``start`` on (film frames below ``skip_to`` are
    yielded with ``skip`` set and no flow: a resume has them)."""
    step = Track(video_params, motion=motion, stage=stage, seconds=seconds)
    seconds = step.seconds
    t = time.perf_counter()
    for i, raw in enumerate(frames):
        _add(seconds, "decode", t)
        yield step(start + i, raw, schedule, size, skip=start + i < skip_to)
        t = time.perf_counter()


def footage(path, info, *, first: int, start: int, count: int, size: tuple[int, int], schedule, video_params,
            skip_to: int = 0, motion: bool = True, stage=None, seconds=None,
            on_warning=None) -> Iterator[SourceFrame]:
    """Film frames ``start .. start + count`` of the clip at ``path`` (the film begins at clip frame ``first``),
    decoded at ``size`` and tracked (:func:`track`)."""
    frames = video.iter_frames(path, first=first + start, count=count, size=size, info=info, on_warning=on_warning)
    try:
        yield from track(frames, start=start, schedule=schedule, size=size, video_params=video_params,
                         skip_to=skip_to, motion=motion, stage=stage, seconds=seconds)
    finally:
        frames.close()  # the decoder's ffmpeg ends now, not at garbage collection


def feedback(image: np.ndarray, *, start: int, count: int, schedule, motion, previous: Callable[[], np.ndarray | None],
             skip_to: int = 0, seconds=None) -> Iterator[SourceFrame]:
    """The infinite zoom's frames ``start .. start + count``: frame ``k`` is the previous output (``previous()``,
    read when the frame is due) moved by the frame's motion and held to the image's look (``zoom.Feedback``)."""
    from .zoom import Feedback

    source = Feedback(image, schedule.motion, schedule.zoom, motion)
    seconds = seconds if seconds is not None else {}
    for k in range(start, start + count):
        if k < skip_to:
            yield SourceFrame(k, image, skip=True)
            continue
        t = time.perf_counter()
        src = source.source(k, previous())
        seconds["decode"] = seconds.get("decode", 0.0) + time.perf_counter() - t
        yield SourceFrame(k, src)
