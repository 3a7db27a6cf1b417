"""Write videos: stream frames into H.264, join segments, and mux the song.

Everything goes through the ffmpeg binary shipped with ``imageio-ffmpeg``. Frames are piped to it one
at a time (rawvideo rgb24 on stdin), so memory does not grow with the clip. Every output is written to
a temporary file beside the target and renamed only when ffmpeg finished cleanly.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import AudioError, ConfigError, InputError, OutputError, VideoError, suggest
from ..fsutil import atomic_output, check_output
from .decode import ffmpeg_exe, ffmpeg_listing, has_audio, probe

__all__ = ["FrameWriter", "concat", "mux", "count_frames", "stream_durations", "fps_fraction", "X264_PRESETS"]

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


def fps_fraction(fps: float) -> Fraction:
    """Exact frame rate for ffmpeg: ``29.97002997 -> 30000/1001``, ``25.0 -> 25/1``."""
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"frame rate {fps!r} is invalid: use a positive number such as 24 or 29.97")
    return Fraction(fps).limit_denominator(1001)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _run_ffmpeg(args: Sequence[str], *, what: str, error: type[Exception] = OutputError) -> str:
    """Run ffmpeg to completion with stderr in a temp file; raise ``error`` with its last line on failure."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            check=False,
        )
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise error(f"ffmpeg failed while {what}: {_last_line(text)}")
    return text


class FrameWriter:
    """Stream uint8 RGB frames into an H.264 MP4 (yuv420p) at an exact frame rate.

    Use as a context manager: the file appears at ``path`` only when the block exits without an
    exception; otherwise ffmpeg is killed and the temporary file removed::

        with FrameWriter("out.mp4", fps=info.fps, size=(w, h)) as writer:
            for frame in frames:
                writer.write(frame)

    Parameters
    ----------
    path : str or PathLike
        Output file (``.mp4``).
    fps : float
        Frame rate; passed to ffmpeg as a fraction (``Fraction(fps).limit_denominator(1001)``).
    size : (width, height)
        Frame size; both sides must be even (yuv420p). Frames are never resized or padded.
    crf : int
        x264 constant rate factor, 0 (lossless) .. 51; 18 is visually lossless.
    preset : str
        x264 speed preset, ``"ultrafast"`` .. ``"veryslow"``.
    overwrite : bool
        Replace an existing ``path``; otherwise :class:`OutputError` is raised before anything runs.

    Attributes
    ----------
    frames_written : int
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: float,
        size: tuple[int, int],
        crf: int = 18,
        preset: str = "medium",
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.fps = fps_fraction(fps)
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ConfigError(f"frame size {size!r} is invalid: give (width, height)") from None
        if w < 2 or h < 2 or w % 2 or h % 2:
            raise ConfigError(
                f"frame size {w}x{h} cannot be encoded: H.264 (yuv420p) needs even width and height; "
                "use dreamvid.video.output_size() to pick one"
            )
        self.size = (w, h)
        if not 0 <= int(crf) <= 51:
            raise ConfigError(f"crf {crf} is invalid: use 0 (lossless) to 51 (worst); 18 is visually lossless")
        if preset not in X264_PRESETS:
            raise ConfigError(
                f"x264 preset '{preset}' is unknown{suggest(preset, X264_PRESETS)}; use one of "
                + ", ".join(X264_PRESETS)
            )
        self.frames_written = 0
        self._closed = False
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_output(self.path, overwrite=overwrite))
        self._log = self._stack.enter_context(tempfile.TemporaryFile())
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(self.fps), "-i", "-",
            "-an", "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", str(self._tmp),
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as e:
            self._abort()
            raise OutputError(f"cannot start ffmpeg to write {self.path}: {e}") from None

    # -- internals -----------------------------------------------------------------------------------
    def _ffmpeg_message(self) -> str:
        self._log.seek(0)
        return _last_line(self._log.read().decode("utf-8", "replace"))

    def _abort(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.close()
            proc.wait()
        self._closed = True
        err = OutputError("aborted")
        self._stack.__exit__(OutputError, err, None)  # removes the temporary file

    # -- public --------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Parameters
        ----------
        frame : ndarray, shape (height, width, 3), dtype uint8
            RGB frame of exactly the writer's ``size``.
        """
        if self._closed:
            raise ValueError("write() on a closed FrameWriter")
        w, h = self.size
        if frame.dtype != np.uint8 or frame.shape != (h, w, 3):
            raise ValueError(f"expected a uint8 RGB frame of shape {(h, w, 3)}, got {frame.dtype} {frame.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            msg = self._ffmpeg_message()
            self._abort()
            raise OutputError(f"ffmpeg stopped while writing {self.path}: {msg}") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place. Raises :class:`OutputError` if ffmpeg failed."""
        if self._closed:
            return
        if self.frames_written == 0:
            self._abort()
            raise OutputError(f"no frames were written to {self.path}: the input produced no frames")
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = self._proc.wait()
        if rc != 0:
            msg = self._ffmpeg_message()
            self._abort()
            raise OutputError(f"ffmpeg failed to write {self.path}: {msg}")
        self._closed = True
        self._stack.close()  # renames the temporary file over the target

    def abort(self) -> None:
        """Kill ffmpeg and delete the temporary file; the target is left untouched."""
        if not self._closed:
            self._abort()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # a writer that was never closed must not leave ffmpeg running
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self._abort()


def _check_input(path: str | os.PathLike, kind: str, error: type[InputError]) -> Path:
    path = Path(path)
    if not path.is_file():
        raise error(f"{kind} {path} does not exist: check the path")
    if path.stat().st_size == 0:
        raise error(f"{kind} {path} is empty (0 bytes): re-export or re-download it")
    return path


def concat(segments: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Join MP4 segments written with the same settings, without re-encoding (concat demuxer, ``-c copy``).

    Parameters
    ----------
    segments : sequence of paths
        In play order.
    out : path
        Written atomically.

    Returns
    -------
    Path
        ``out``.
    """
    if not segments:
        raise InputError("no segments to join: render at least one segment first")
    paths = [_check_input(s, "segment", VideoError).resolve() for s in segments]
    out = check_output(out, overwrite=overwrite)
    with tempfile.TemporaryDirectory() as tmpdir:
        listing = Path(tmpdir) / "segments.txt"
        lines = ["file '" + str(p).replace("'", r"'\''") + "'" for p in paths]
        listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with atomic_output(out, overwrite=overwrite) as tmp:
            _run_ffmpeg(
                ["-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                 "-map", "0", "-c", "copy", "-movflags", "+faststart", str(tmp)],
                what=f"joining segments into {out}",
            )  # fmt: skip
    return out


def _open_song(song: Path):
    from moviepy import AudioFileClip

    # Ask ffmpeg first: moviepy's reader fails noisily (and leaks a half-built reader) on bad files.
    listing = ffmpeg_listing(song)
    if re.search(r"Stream #\d+:\d+.*?: Audio:", listing) is None:
        lines = [ln.strip() for ln in listing.splitlines() if ln.strip() and not ln.startswith(" ")]
        reason = lines[-1].split(": ", 1)[-1] if lines else "no audio stream"
        if "At least one output file" in reason or "Output file" in reason:
            reason = "no audio stream"
        raise AudioError(f"cannot read the song {song}: not a readable audio file ({reason}); convert it to WAV or MP3")
    try:
        clip = AudioFileClip(str(song))
    except Exception as e:  # moviepy raises OSError, IOError, KeyError, ... for unreadable files
        reason = _last_line(str(e)).rstrip(".")[:200]
        raise AudioError(
            f"cannot read the song {song}: not a readable audio file ({reason}); convert it to WAV or MP3"
        ) from None
    if not clip.duration or clip.duration <= 0:
        clip.close()
        raise AudioError(f"the song {song} holds no audio: convert it to WAV or MP3")
    return clip


def mux(
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    song: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    start: float = 0.0,
    loop_song: bool = False,
    overwrite: bool = False,
    audio_bitrate: str = "192k",
    on_warning: Callable[[str], None] | None = None,
) -> float | None:
    """Add a sound track to a rendered (silent) video, without re-encoding the video.

    The audio is prepared with moviepy and written as AAC; the video stream is copied, so its frame
    count and frame rate stay exact.

    Parameters
    ----------
    video : path
        The rendered video (its own audio, if any, is ignored).
    out : path
        Output MP4, written atomically.
    song : path or None
        Music. Longer than the video: cut to the video's duration. Shorter: the video goes on in
        silence, or with ``loop_song`` the song repeats to fill the video.
    source : path or None
        Used when ``song`` is None: the source clip's own audio from ``start`` to
        ``start + video duration``. A source without audio gives an output without audio.
    start : float
        Offset in seconds into ``source``.
    loop_song : bool
    overwrite : bool
    audio_bitrate : str
    on_warning : callable or None
        Called with a one-line message when the source's audio ends before ``start``.

    Returns
    -------
    float or None
        Duration in seconds of the audio stream written, or None when the output has no audio.

    Raises
    ------
    AudioError
        If the song is missing, empty or unreadable.
    OutputError
        If ``out`` exists without ``overwrite`` or ffmpeg fails.
    """
    from moviepy import afx

    if not math.isfinite(start) or start < 0:
        raise ConfigError(f"start {start} s is invalid: use a time >= 0 seconds")
    video = _check_input(video, "video", VideoError)
    out = check_output(out, overwrite=overwrite)
    song = _check_input(song, "song", AudioError) if song is not None else None
    source = _check_input(source, "source video", VideoError) if source is not None else None
    info = probe(video)
    vdur = info.frame_count / info.fps

    clips = []
    try:
        audio = None
        if song is not None:
            base = _open_song(song)
            clips.append(base)
            if base.duration > vdur:
                audio = base.subclipped(0, vdur)
            elif loop_song and base.duration < vdur:
                audio = base.with_effects([afx.AudioLoop(duration=vdur)])
            else:
                audio = base
        elif source is not None and has_audio(source):
            base = _open_song(source)
            clips.append(base)
            if start >= base.duration:
                if on_warning is not None:
                    on_warning(f"the audio of {source.name} ends before {start:g} s: the output has no sound")
            else:
                audio = base.subclipped(start, min(base.duration, start + vdur))
        if audio is not None:
            clips.append(audio)

        with atomic_output(out, overwrite=overwrite) as tmp:
            if audio is None:
                _run_ffmpeg(
                    ["-loglevel", "error", "-y", "-i", str(video), "-map", "0:v:0", "-c:v", "copy",
                     "-movflags", "+faststart", str(tmp)],
                    what=f"writing {out}",
                )  # fmt: skip
                return None
            with tempfile.TemporaryDirectory() as tmpdir:
                m4a = Path(tmpdir) / "audio.m4a"
                try:
                    audio.write_audiofile(str(m4a), fps=44100, codec="aac", bitrate=audio_bitrate, logger=None)
                except Exception as e:
                    what = f"the song {song}" if song is not None else f"the audio of {source}"
                    raise AudioError(
                        f"cannot decode {what} ({_last_line(str(e))[:200]}): convert it to WAV or MP3"
                    ) from None
                _run_ffmpeg(
                    ["-loglevel", "error", "-y", "-i", str(video), "-i", str(m4a),
                     "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "copy",
                     "-movflags", "+faststart", str(tmp)],
                    what=f"muxing the audio into {out}",
                )  # fmt: skip
            written = stream_durations(tmp).get("audio")
        return written if written is not None else float(audio.duration)
    finally:
        for clip in reversed(clips):
            with contextlib.suppress(Exception):
                clip.close()


_FRAME_RE = re.compile(r"frame=\s*(\d+)")
_TIME_RE = re.compile(r"time=\s*(-?\d+):(\d+):(\d+(?:\.\d+)?)")


def count_frames(path: str | os.PathLike) -> int:
    """Exact number of video frames, by decoding the first video stream with ffmpeg (``-f null``)."""
    path = _check_input(path, "video", VideoError)
    text = _run_ffmpeg(
        ["-i", str(path), "-map", "0:v:0", "-f", "null", "-"], what=f"counting the frames of {path}", error=VideoError
    )
    found = _FRAME_RE.findall(text)
    if not found:
        raise VideoError(f"cannot count the frames of {path}: ffmpeg reported no video frames")
    return int(found[-1])


def _decoded_duration(path: Path, selector: str) -> float | None:
    text = _run_ffmpeg(["-i", str(path), "-map", selector, "-f", "null", "-"], what=f"reading {path}", error=VideoError)
    found = _TIME_RE.findall(text)
    if not found:
        return None
    h, m, s = found[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def stream_durations(path: str | os.PathLike) -> dict[str, float]:
    """Durations in seconds of the first video and audio streams, measured by decoding with ffmpeg.

    Returns
    -------
    dict
        ``{"video": seconds, "audio": seconds}``; a key is absent when the stream is.
    """
    path = _check_input(path, "video", VideoError)
    result: dict[str, float] = {}
    listing = ffmpeg_listing(path)
    for kind, selector in (("video", "0:v:0"), ("audio", "0:a:0")):
        if re.search(rf"Stream #\d+:\d+.*?: {kind.capitalize()}:", listing):
            d = _decoded_duration(path, selector)
            if d is not None:
                result[kind] = d
    return result
