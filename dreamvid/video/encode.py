"""Write videos: stream frames into H.264, join segments, and mux the song.

Everything goes through the ffmpeg binary shipped with ``imageio-ffmpeg``. Frames are piped to it one
at a time (rawvideo rgb24 on stdin), so memory does not grow with the clip. Every output is written to
a temporary file beside the target and renamed only when ffmpeg finished cleanly.

Every path handed to ffmpeg carries the ``file:`` prefix (:func:`ffmpeg_url`), so names such as
``take:2.wav`` or ``-x.mp4`` are never read as a protocol or an option. Videos are tagged BT.709
(primaries, transfer, matrix; limited range) and converted from RGB with the BT.709 matrix, so players
do not have to guess.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import AudioError, ConfigError, InputError, OutputError, VideoError
from ..fsutil import atomic_output, check_input, check_output
from ..options import X264_PRESETS, check_option
from .decode import VideoInfo, ffmpeg_exe, ffmpeg_listing, ffmpeg_url, framecrc_packets, probe

__all__ = [
    "FrameWriter",
    "concat",
    "mux",
    "check_container",
    "check_song",
    "count_frames",
    "stream_durations",
    "fps_fraction",
    "ffmpeg_url",
    "CONTAINERS",
    "X264_PRESETS",
    "PIECE_CRF",
    "piece_crf",
]

#: Output containers that hold H.264 video with AAC sound (suffix -> muxer options).
CONTAINERS = {
    ".mp4": ["-movflags", "+faststart"],
    ".m4v": ["-movflags", "+faststart"],
    ".mov": ["-movflags", "+faststart"],
    ".mkv": [],
}

#: BT.709, limited ("tv") range: the conversion from RGB and the tags written into the stream and container.
_BT709 = [
    "-vf", ("scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
            "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"),
    "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
]  # fmt: skip

#: Sample rate of the sound track written by :func:`mux`.
AUDIO_RATE = 44100

#: The x264 crf of a piece: lossless. Each piece starts on a keyframe that rounds the picture afresh; a lossy piece's
#: new rounding differs from where its predecessor's P-frames had drifted, and the final encode keeps that step.
#: Measured (``benchmarks/joins.py``; a still dream of a photo with sensor noise, sigma 1, at 320 px, output crf 18):
#: pieces at crf 6 showed 0.49 grey levels across a join against 0.22 for the 99th percentile of other pairs, at crf 2
#: 0.19 against 0.18, lossless 0.07 against 0.09 (with lossless pieces the final encode sees exactly the dreamed
#: frames, so no join can show). The cost is disk: about 50 KB a frame at 320x240 on moving footage (crf 6: 26,
#: the old crf-18 segments: 7), i.e. about a fifth of the raw frames.
PIECE_CRF = 0


def piece_crf(crf: int) -> int:
    """The x264 crf of a piece of an output encoded at ``crf``: lossless (:data:`PIECE_CRF`), whatever ``crf``."""
    return PIECE_CRF


def _check_x264(crf: int, preset: str) -> None:
    """The crf and x264 preset, by the one rule every front end uses (:func:`~dreamvid.options.check_option`)."""
    check_option("crf", crf)
    check_option("x264-preset", preset)


def fps_fraction(fps: float | Fraction) -> Fraction:
    """Exact frame rate for ffmpeg: ``29.97002997 -> 30000/1001``, ``25.0 -> 25/1``.

    The NTSC family is recognised from its usual roundings too (``29.97``, ``23.976``, ``59.94`` ->
    ``30000/1001``, ``24000/1001``, ``60000/1001``), so a typed rate gives the same file as a probed one.
    A :class:`~fractions.Fraction` is kept as it is.
    """
    if isinstance(fps, Fraction):
        if fps <= 0:
            raise ConfigError(f"frame rate {fps} is invalid: use a positive number such as 24 or 29.97")
        return fps
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise ConfigError(f"frame rate {fps!r} is invalid: use a positive number such as 24 or 29.97") from None
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"frame rate {fps!r} is invalid: use a positive number such as 24 or 29.97")
    if abs(fps - round(fps)) < 1e-6:
        return Fraction(round(fps))
    ntsc = round(fps * 1.001)
    if ntsc >= 1 and abs(fps - ntsc * 1000 / 1001) < 5e-3 * ntsc / 30:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _concat_quote(text: str) -> str:
    """Quote one path for an ffconcat listing: single quotes, with ``'`` written as ``'\\''``."""
    if "\n" in text or "\r" in text:
        raise OutputError(f"cannot join {text!r}: ffmpeg's concat listing cannot hold a line break in a file name")
    return "'" + text.replace("'", "'\\''") + "'"


def check_container(path: str | os.PathLike) -> Path:
    """Raise :class:`OutputError` unless ``path``'s suffix names a container that holds H.264 and AAC.

    Cheap (no file is touched): call it before the first frame, so a wrong ``-o`` fails at once.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CONTAINERS:
        return path
    choices = ", ".join(CONTAINERS)
    if not suffix:
        raise OutputError(
            f"output {path} has no file extension: name it {path.name}.mp4 (dreamvid writes H.264 video with "
            f"AAC sound, in {choices})"
        )
    raise OutputError(
        f"output {path} cannot be written: a {suffix} file cannot hold H.264 video with AAC sound; "
        f"use {path.stem}.mp4 (or {choices})"
    )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _ffmpeg(args: Sequence[str], *, stdout: bool = False) -> tuple[int, str, str]:
    """Run ffmpeg to completion with stderr in a temp file: ``(return code, stdout or "", stderr)``."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=log,
            check=False,
        )
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    return proc.returncode, proc.stdout.decode("utf-8", "replace") if stdout else "", text


def _run_ffmpeg(
    args: Sequence[str], *, what: str, error: type[Exception] = OutputError, stdout: bool = False
) -> str:
    """Run ffmpeg; raise ``error`` with its last line on failure. Returns its stderr, or its stdout if ``stdout``."""
    rc, out, text = _ffmpeg(args, stdout=stdout)
    if rc != 0:
        raise error(f"ffmpeg failed while {what}: {_last_line(text)}")
    return out if stdout else text


def _has_stream(listing: str, kind: str) -> bool:
    return re.search(rf"Stream #\d+:\d+.*?: {kind}:", listing) is not None


def _packets(input_args: Sequence[str], selector: str, *, what: str) -> tuple[Fraction, list[tuple[int, int, int]]]:
    """Time base and ``(dts, pts, duration)`` of every packet of one stream, in file order, without decoding."""
    text = _run_ffmpeg(
        ["-loglevel", "error", *input_args, "-map", selector, "-c", "copy", "-f", "framecrc", "pipe:1"],
        what=what, error=VideoError, stdout=True,
    )  # fmt: skip
    tb, packets = framecrc_packets(text)
    return tb, [(dts, pts, dur) for dts, pts, dur, _ in packets]


def _span(tb: Fraction, packets: Sequence[tuple[int, int, int]]) -> Fraction:
    """Presented duration in seconds: from the first frame's start to the last frame's end."""
    first = min(p for _, p, _ in packets)
    last = max(packets, key=lambda pk: pk[1])
    return (last[1] + last[2] - first) * tb


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
    fps : float or Fraction
        Frame rate; passed to ffmpeg as an exact fraction (:func:`fps_fraction`: ``29.97 -> 30000/1001``).
    size : (width, height)
        Frame size; both sides must be even (yuv420p). Frames are never resized or padded.
    crf : int
        x264 constant rate factor, 0 (lossless) .. 51; 18 is visually lossless.
    preset : str
        x264 speed preset, ``"ultrafast"`` .. ``"veryslow"``.
    overwrite : bool
        Replace an existing ``path``; otherwise :class:`OutputError` is raised before anything runs.
    piece : bool
        The file is a piece of an output that :func:`concat` encodes once more, at this ``crf`` and
        ``preset`` (``concat(pieces, out, crf=crf, preset=preset)``). The piece is written losslessly
        (:func:`piece_crf`), so its own keyframe, which every separately encoded piece starts on, cannot show
        through the final encode. Without it each piece's first frame re-rounds the picture from scratch, and a
        still shot visibly changes at every join (``benchmarks/joins.py``).

    Attributes
    ----------
    frames_written : int
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fps: float | Fraction,
        size: tuple[int, int],
        crf: int = 18,
        preset: str = "medium",
        overwrite: bool = False,
        piece: bool = False,
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
        _check_x264(crf, preset)
        x264_crf = piece_crf(crf) if piece else int(crf)
        self.frames_written = 0
        self._closed = False
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_output(self.path, overwrite=overwrite))
        self._log = self._stack.enter_context(tempfile.TemporaryFile())
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(self.fps), "-i", "pipe:0",
            "-an", *_BT709, "-c:v", "libx264", "-preset", preset, "-crf", str(x264_crf), "-pix_fmt", "yuv420p",
            *CONTAINERS.get(self.path.suffix.lower(), []), ffmpeg_url(self._tmp),
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
    return check_input(path, what=kind, error=error, give=f"a {kind} file (re-export or re-download it)")


def concat(
    segments: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    crf: int | None = None,
    preset: str = "medium",
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Join MP4 segments written with the same settings: their packets copied, or encoded once more at ``crf``.

    **Copied** (``crf`` None or 0; concat demuxer, ``-c copy``). The packets are copied unchanged; only their
    decode timestamps are rewritten into one even sequence. x264 delays decoding by two frames (B-pyramid) once a
    segment has three frames, but not in a segment of one or two, so a short last segment would decode two
    frames early. The concat demuxer keeps each segment's own decode timestamps, which left a three-frame step
    at the join: the MP4's media duration (``mdhd``) grew by two frames and players read a wrong frame rate
    (48 + 2 frames at 25 fps read 24.04 fps). Here the decode timestamps become ``first + k / fps - delay``,
    with the largest delay of any segment, so each sample lasts exactly one frame.

    **Encoded once** (``crf`` 1..51; the segments written with ``FrameWriter(..., crf=crf, piece=True)``). Every
    separately encoded segment starts on a keyframe that rounds the picture afresh, so a copied join shows on a
    still shot: at crf 18 a still dream changes by 2-3 grey levels across each join against ~0.1 between other
    frames. Here the segments are decoded in order and go through one x264 (``crf``, ``preset``), which puts
    its keyframes where it would anyway (scene cuts, every 250 frames): a join is like any other pair of frames,
    and the file is smaller (on a still shot about half the copied join's size). The pieces are finer than the
    output (lossless, :func:`piece_crf`) so that their own joins do not show through. ``crf`` 0 copies: lossless segments
    have no joins to hide. The same segments give the same bytes, so a resumed render publishes the file an
    uninterrupted one does.

    Parameters
    ----------
    segments : sequence of paths
        In play order.
    out : path
        Written atomically.
    overwrite : bool
    crf : int or None
        Encode once more at this x264 crf; None or 0 copies the packets.
    preset : str
        x264 speed preset of that encode (:data:`X264_PRESETS`).
    on_progress : callable or None
        While encoding, called now and then with ``(frames encoded, frames in all)``.

    Returns
    -------
    Path
        ``out``.
    """
    if not segments:
        raise InputError("no segments to join: render at least one segment first")
    encode = crf is not None and int(crf) != 0
    if encode:
        _check_x264(crf, preset)
    paths = [_check_input(s, "segment", VideoError).resolve() for s in segments]
    out = check_output(out, overwrite=overwrite)
    with tempfile.TemporaryDirectory() as tmpdir:
        listing = Path(tmpdir) / "segments.ffconcat"
        lines = ["ffconcat version 1.0"] + ["file " + _concat_quote(ffmpeg_url(p)) for p in paths]
        listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
        source = ["-f", "concat", "-safe", "0", "-i", ffmpeg_url(listing)]
        tb, packets = _packets(source, "0:v:0", what=f"reading the segments of {out}")
        with atomic_output(out, overwrite=overwrite) as tmp:
            if encode:
                _run_encode(
                    ["-loglevel", "error", "-y", *source, "-map", "0:v:0", "-an", *_BT709, "-c:v", "libx264",
                     "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p",
                     *CONTAINERS.get(out.suffix.lower(), []), ffmpeg_url(tmp)],
                    what=f"encoding the segments into {out}", total=len(packets), on_progress=on_progress,
                )  # fmt: skip
            else:
                retime = _even_dts(tb, packets)
                _run_ffmpeg(
                    ["-loglevel", "error", "-y", *source, "-map", "0", "-c", "copy",
                     *(["-bsf:v", retime] if retime else []),
                     *CONTAINERS.get(out.suffix.lower(), []), ffmpeg_url(tmp)],
                    what=f"joining segments into {out}",
                )  # fmt: skip
    return out


def _run_encode(
    args: Sequence[str], *, what: str, total: int, on_progress: Callable[[int, int], None] | None
) -> None:
    """Run an ffmpeg encode to completion, reporting ``(frames done, total)`` from its ``-progress`` lines.

    Raises :class:`OutputError` with ffmpeg's last line on failure; ffmpeg is killed if ``on_progress`` raises.
    """
    with tempfile.TemporaryFile() as log:
        try:
            proc = subprocess.Popen(
                [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1", *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            )  # fmt: skip
        except OSError as e:
            raise OutputError(f"cannot start ffmpeg for {what}: {e}") from None
        try:
            for line in proc.stdout:
                if on_progress is not None and line.startswith(b"frame=") and line[6:].strip().isdigit():
                    on_progress(min(int(line[6:]), total), total)
        except BaseException:  # the callback raised (Ctrl-C included): no ffmpeg is left running
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        rc = proc.wait()
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if rc != 0:
        raise OutputError(f"ffmpeg failed while {what}: {_last_line(text)}")


def _even_dts(tb: Fraction, packets: Sequence[tuple[int, int, int]]) -> str | None:
    """A ``setts`` filter giving constant-rate packets evenly spaced decode timestamps, or None if they have them.

    ``packets`` are ``(dts, pts, duration)`` in decode order, in units of ``tb``. The k-th packet gets
    ``dts = p0 + k * step - delay``: ``p0`` the first presentation time, ``step`` the frame duration and
    ``delay`` the first segment's own delay, or more if a later segment needs more to keep every
    ``dts <= pts``. Variable-rate input is left alone.
    """
    if not packets:
        return None
    pts = sorted(p for _, p, _ in packets)
    steps = {b - a for a, b in itertools.pairwise(pts)}
    if len(steps) > 1 or 0 in steps:
        return None
    step = steps.pop() if steps else packets[0][2]
    if step <= 0:
        return None
    # at least the first segment's own delay, so segments that already agree are copied untouched
    delay = max(0, packets[0][1] - packets[0][0], max(s - p for s, (_, p, _) in zip(pts, packets, strict=True)))
    want = [(pts[0] + k * step - delay, step) for k in range(len(packets))]
    if [(d, dur) for d, _, dur in packets] == want:
        return None
    # Relative to the first packet's PTS and in seconds over TB: ffmpeg may shift the timestamps and change
    # the time base between the demuxer and this filter, so no absolute value from the listing is used.
    back = (delay + packets[0][1] - pts[0]) * tb
    st = float(step * tb)
    # pts=PTS is spelled out: left to its default, this ffmpeg's setts writes the DTS into the PTS too.
    return f"setts=pts=PTS:dts=STARTPTS+round((N*{st!r}-{float(back)!r})/TB):duration=round({st!r}/TB)"


def _song_reason(text: str, path: Path) -> str:
    """The useful part of ffmpeg's stderr about an audio input ``path``, in a few words, without the path."""
    if "matches no streams" in text or "does not contain any stream" in text:
        return "no audio stream"
    line = _last_line(text)
    for name in (ffmpeg_url(path), str(path)):
        line = line.replace(name, "")
    line = re.sub(r"^(\[[^]]*\] )?Error [^:]*: ", "", line)  # "Error opening input files: Invalid data ..."
    return line.strip(" :.")[:200] or "ffmpeg could not decode it"


def _audio_filter(skip: int, keep: int) -> str:
    """Resample to :data:`AUDIO_RATE`, keep samples ``[skip, skip + keep)`` and restart the clock at zero."""
    return (
        f"aresample={AUDIO_RATE},atrim=start_sample={skip}:end_sample={skip + keep},"
        "asetpts=N/SR/TB"
    )


def _audio_args(path: Path, *, skip: int, keep: int, loop: bool, bitrate: str) -> tuple[list[str], list[str]]:
    """The input and output ffmpeg arguments that turn ``path``'s first audio stream into the sound track."""
    inputs = (["-stream_loop", "-1"] if loop else []) + ["-i", ffmpeg_url(path)]
    outputs = ["-af", _audio_filter(skip, keep), "-ac", "2", "-c:a", "aac", "-b:a", bitrate]
    return inputs, outputs


def _source_audio_args(path: Path, *, at: float, keep: int, bitrate: str) -> tuple[list[str], list[str]]:
    """Like :func:`_audio_args`, for a clip's own sound placed by its timestamps (the mux reads them with
    ``-copyts``): the sound from ``at`` seconds on the clip's clock, silence where the audio stream starts later
    (or has a gap: aresample's ``async`` fill), then ``keep`` samples."""
    trim = (f"atrim=start={at!r},asetpts=PTS-{at!r}/TB,aresample={AUDIO_RATE}:async=1:first_pts=0,"
            f"atrim=end_sample={keep},asetpts=N/SR/TB")
    return ["-i", ffmpeg_url(path)], ["-af", trim, "-ac", "2", "-c:a", "aac", "-b:a", bitrate]


def check_song(path: str | os.PathLike, *, seconds: float = 1.0) -> Path:
    """Raise :class:`AudioError` unless ``path`` decodes as audio the way :func:`mux` reads it.

    The first ``seconds`` go through the mux's own ffmpeg arguments (decode, resample, AAC) into nothing:
    cheap enough to call before the first frame of a render.
    """
    path = _check_input(path, "song", AudioError)
    inputs, outputs = _audio_args(path, skip=0, keep=max(1, round(seconds * AUDIO_RATE)), loop=False, bitrate="64k")
    rc, packets, text = _ffmpeg(
        ["-loglevel", "error", *inputs, "-map", "0:a:0", *outputs, "-f", "framecrc", "pipe:1"], stdout=True
    )
    if rc != 0:
        raise AudioError(
            f"cannot read the song {path}: not a readable audio file ({_song_reason(text, path)}); "
            "convert it to WAV or MP3"
        )
    if not any(line and not line.startswith("#") for line in packets.splitlines()):
        # also what keeps a looped song from looping forever over nothing
        raise AudioError(f"the song {path} holds no audio (0 samples): convert it to WAV or MP3")
    return path


def mux(
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    song: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    start: float = 0.0,
    song_start: float = 0.0,
    loop_song: bool = False,
    overwrite: bool = False,
    audio_bitrate: str = "192k",
    on_warning: Callable[[str], None] | None = None,
    source_info: VideoInfo | None = None,
) -> float | None:
    """Add a sound track to a rendered (silent) video, without re-encoding the video.

    One ffmpeg run: the video stream is copied (its frames and timestamps stay exact), the audio is
    decoded, resampled to 44.1 kHz stereo, cut to the sample and encoded as AAC. The sound never runs past
    the last frame, so the file lasts exactly ``frames / fps`` seconds.

    Parameters
    ----------
    video : path
        The rendered video (its own audio, if any, is ignored).
    out : path
        Output file (:data:`CONTAINERS`), written atomically.
    song : path or None
        Music. Longer than the video: cut to the video's duration. Shorter: the video goes on in
        silence, or with ``loop_song`` the song repeats to fill the video.
    source : path or None
        Used when ``song`` is None: the source clip's own audio, placed by its timestamps, not counted from its
        first sample: what played with the source frame the render starts with plays with the first frame (and
        an audio stream that starts after the video, as in many MPEG-TS and edited files, starts after it here
        too). A source without audio gives an output without audio.
    start : float
        Where the render starts in ``source``, in seconds: at the source frame nearest to it, as
        ``decode.frame_range`` counts.
    song_start : float
        Offset in seconds into the song (a render of a part of a film hears the song from the part's start).
    loop_song : bool
    overwrite : bool
    audio_bitrate : str
    on_warning : callable or None
        Called with a one-line message when the source's audio ends before ``start``.
    source_info : VideoInfo or None
        ``probe(source)``, when the caller already has it; otherwise it is probed here.

    Returns
    -------
    float or None
        Duration in seconds of the audio stream written, or None when the output has no audio.

    Raises
    ------
    AudioError
        If the song is missing, empty or unreadable.
    OutputError
        If ``out`` exists without ``overwrite``, its container cannot hold H.264 + AAC, or ffmpeg fails.
    """
    if not math.isfinite(start) or start < 0:
        raise ConfigError(f"start {start} s is invalid: use a time >= 0 seconds")
    video = _check_input(video, "video", VideoError)
    check_container(out)
    out = check_output(out, overwrite=overwrite)
    song = check_song(song) if song is not None else None
    source = _check_input(source, "source video", VideoError) if source is not None else None
    tb, packets = _packets(["-i", ffmpeg_url(video)], "0:v:0", what=f"reading {video}")
    if not packets:
        raise VideoError(f"{video} has no video frames: render at least one frame")
    keep = math.floor(_span(tb, packets) * AUDIO_RATE)  # samples: never past the last frame

    audio = None
    if song is not None:
        audio = _audio_args(song, skip=round(song_start * AUDIO_RATE), keep=keep, loop=loop_song,
                            bitrate=audio_bitrate)
    elif source is not None and _has_stream(ffmpeg_listing(source), "Audio"):
        info = source_info if source_info is not None else probe(source)
        first = round(start * info.fps)  # the render's first frame, on the clip's own clock:
        audio = _source_audio_args(source, at=info.start + first / info.fps, keep=keep, bitrate=audio_bitrate)

    with atomic_output(out, overwrite=overwrite) as tmp:
        timed = song is None and audio is not None  # the clip's timestamps, as its frames were decoded
        args = ["-loglevel", "error", "-y", *(["-copyts"] if timed else []), "-i", ffmpeg_url(video)]
        if audio is None:
            args += ["-map", "0:v:0", "-c:v", "copy"]
        else:
            inputs, outputs = audio
            args += [*inputs, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *outputs]
        rc, _, text = _ffmpeg([*args, *CONTAINERS.get(out.suffix.lower(), []), ffmpeg_url(tmp)])
        if rc != 0:
            path = song if song is not None else source
            if audio is None or ffmpeg_url(path) not in text:
                raise OutputError(f"ffmpeg failed while writing {out}: {_last_line(text)}")
            what = f"the song {song}" if song is not None else f"the audio of {source}"
            raise AudioError(f"cannot decode {what} ({_song_reason(text, path)}): convert it to WAV or MP3")
        if audio is None:
            return None
        if timed and not _has_stream(ffmpeg_listing(tmp), "Audio"):  # ffmpeg leaves out a stream with no sample
            if on_warning is not None:
                on_warning(f"the audio of {source.name} ends before {start:g} s: the output has no sound")
            return None
        atb, apackets = _packets(["-i", ffmpeg_url(tmp)], "0:a:0", what=f"reading {out}")
    # what plays: from the video's start (the encoder's priming samples sit before it) to the last sample
    return float(max(p + d for _, p, d in apackets) * atb) if apackets else 0.0


_FRAME_RE = re.compile(r"frame=\s*(\d+)")
_TIME_RE = re.compile(r"time=\s*(-?\d+):(\d+):(\d+(?:\.\d+)?)")


def count_frames(path: str | os.PathLike) -> int:
    """Exact number of video frames, by decoding the first video stream with ffmpeg (``-f null``)."""
    path = _check_input(path, "video", VideoError)
    text = _run_ffmpeg(
        ["-i", ffmpeg_url(path), "-map", "0:v:0", "-f", "null", "-"],
        what=f"counting the frames of {path}", error=VideoError,
    )  # fmt: skip
    found = _FRAME_RE.findall(text)
    if not found:
        raise VideoError(f"cannot count the frames of {path}: ffmpeg reported no video frames")
    return int(found[-1])


def _decoded_duration(path: Path, selector: str) -> float | None:
    text = _run_ffmpeg(
        ["-i", ffmpeg_url(path), "-map", selector, "-f", "null", "-"], what=f"reading {path}", error=VideoError
    )
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
        if _has_stream(listing, kind.capitalize()):
            d = _decoded_duration(path, selector)
            if d is not None:
                result[kind] = d
    return result
