"""What to render and where: :class:`RenderOptions`, checked in one place for every front end.

The CLI (``render``, ``zoom``), ``batch`` job files, the UI and ``live`` all build a ``RenderOptions``; its
checks run when it is made, in microseconds and without a framework, so a bad value is one line before any work.
The dream settings themselves live in :class:`~dreamvid.config.Config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, suggest

__all__ = ["RenderOptions", "OptionError", "X264_PRESETS", "check_option"]

#: x264's speed presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


class OptionError(ConfigError):
    """A render option out of its range. ``key`` is its name as a job file spells it (the CLI's flag is
    ``--key``); the message names the flag."""

    def __init__(self, key: str, rule: str, value):
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"--{key} {rule}, got {value!r}")

    def as_key(self) -> str:
        """The message with the key as a job file spells it."""
        return f"{self.key} {self.rule}, got {self.value!r}"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: key -> (test, rule): what every front end accepts
_RULES = {
    "start": (lambda v: _number(v) and v >= 0, "must be a number of seconds >= 0"),
    "duration": (lambda v: v is None or (_number(v) and v > 0), "must be above 0 seconds"),
    "max-side": (lambda v: v is None or (_whole(v) and v >= 16), "must be at least 16"),
    "react": (lambda v: _number(v) and 0 <= v <= 10, "must be from 0 to 10"),
    "crf": (lambda v: _whole(v) and 0 <= v <= 51, "must be from 0 to 51"),
    "segment-frames": (lambda v: _whole(v) and v >= 1, "must be a whole number >= 1"),
    "fps": (lambda v: _number(v) and 1 <= v <= 240, "must be from 1 to 240"),
}


def check_option(key: str, value) -> None:
    """Raise :class:`OptionError` if ``value`` is not a valid ``key`` (``start``, ``duration``, ``max-side``,
    ``react``, ``crf``, ``segment-frames``, ``fps``, ``x264-preset``)."""
    if key == "x264-preset":
        if value not in X264_PRESETS:
            raise OptionError(key, f"'{value}' is unknown{suggest(str(value), X264_PRESETS)}; use one of "
                                   f"{', '.join(X264_PRESETS)}", value)
        return
    test, rule = _RULES[key]
    if not test(value):
        raise OptionError(key, rule, value)


@dataclass(frozen=True)
class RenderOptions:
    """What to render and where. Checked when made (:class:`OptionError`).

    Attributes
    ----------
    input, output : the footage (an image for ``feedback``) and the output video
    song : the music (its features drive the schedule; muxed in), or None: the clip's own sound is kept
    loop_song : loop a song shorter than the video
    start, duration : the part of the clip that makes the film, in seconds (duration None: to the end)
    max_side : scale down so the longest side is at most this
    react : how strongly the dream follows the music (0 off, 1 the preset's amount, 2 double)
    overwrite, resume : replace existing outputs; continue an interrupted render
    segment_frames, crf, x264_preset : how the frames are encoded, in segments
    keep_work : keep the work folder after success
    frames : (offset, count): render only the film's frames ``[offset, offset + count)`` (a batch chunk, the UI's
        strip), with the schedule, camera and song of the whole film: frame k is frame k of the whole render
        (fed back from the frame before where the range starts inside a shot, so the first ``held[0]`` frames
        warm that feedback up)
    held : (lead, trail): that many frames at the range's start and end are dreamed and handed to ``on_output``
        but not encoded (a batch chunk's warm-up and join window)
    silent : the output has no sound (default: silent for a frame range, which ``batch`` joins and muxes once;
        a strip sets False to hear the song from the range's first frame)
    piece : the output is a piece of a longer one that is encoded once when the pieces are joined (a batch chunk):
        it keeps the pieces' finer quality instead of being encoded at ``crf`` itself
    feedback, fps : ``dreamvid zoom``: ``input`` is an image and each frame dreams the previous output moved by the
        camera, at ``fps``, for ``duration`` seconds or the song's length
    """

    input: Path
    output: Path
    song: Path | None = None
    loop_song: bool = False
    start: float = 0.0
    duration: float | None = None
    max_side: int | None = None
    react: float = 1.0
    overwrite: bool = False
    resume: bool = False
    segment_frames: int = 48
    crf: int = 18
    x264_preset: str = "medium"
    keep_work: bool = False
    frames: tuple[int, int] | None = None
    held: tuple[int, int] = (0, 0)
    silent: bool | None = None
    piece: bool = False
    feedback: bool = False
    fps: float = 25.0

    def __post_init__(self) -> None:
        for key in ("start", "duration", "max-side", "react", "crf", "segment-frames", "x264-preset", "fps"):
            check_option(key, getattr(self, key.replace("-", "_")))

    @property
    def muted(self) -> bool:
        """Whether the output has no sound."""
        return self.frames is not None if self.silent is None else bool(self.silent)
