"""Read videos: probe their properties and stream their frames as uint8 RGB arrays.

Everything goes through the ffmpeg binary shipped with ``imageio-ffmpeg`` (the same one that encodes),
so a clip decodes the same way whatever OpenCV is installed: OpenCV 4.8 and 5.0 disagree on the frame
rate of a variable-rate clip (``CAP_PROP_FPS`` is ``r_frame_rate`` in one and ``avg_frame_rate`` in the
other) and neither tone-maps HDR. Frames are piped from ffmpeg one at a time (rawvideo rgb24), so nothing
here holds a whole clip in memory. Every path handed to ffmpeg carries the ``file:`` prefix, so names such
as ``take:2.mp4`` or ``-clip.mp4`` are never read as a protocol or an option.

Time. :func:`probe` reads the timestamp of every video packet (a stream copy into ffmpeg's ``framecrc``
muxer: nothing is decoded), and decides:

- **constant rate**: every frame lies within 0.3 frame of ``k / fps``. ``fps`` is the exact rate
  (``30000/1001``, not 29.97) and frames come out one for one.
- **an even grid with gaps** (a camera that dropped frames): every frame lies on the grid of the most
  common frame interval, some slots empty. ``fps`` is the grid's rate and the gaps hold the previous frame.
- **variable rate** (phones, screen recorders): frames come out at a constant ``fps``, the clip's average
  rate (frames / span), snapped to the nearest common rate (23.976, 24, 25, 29.97, 30, 50, 60, ...) when
  within 2 %. ``frame_count = round(span * fps)``, where the span runs from the first frame to the end of
  the last.

In the last two cases output frame ``k`` is the source frame on screen at time ``k / fps``, to the nearest
half output frame (ffmpeg's ``fps`` filter, ``round=near``: each source frame's start is rounded to the
nearest output tick, so timestamps rounded by the container do not shift frames; sparse stretches repeat
frames, dense ones drop frames). Motion keeps real time and the clip's own sound stays in sync;
:attr:`VideoInfo.variable_rate` is true.

Either way ``frame_count / fps`` is the clip's real duration, which is what the mux cuts the sound to.

Orientation. A rotation tag (display matrix, or the legacy ``rotate`` tag) is applied explicitly: ffmpeg's
own autorotation is switched off and the matching ``transpose`` is put into the filter chain, so
:attr:`VideoInfo.width`/``height`` (the upright size) and the frames come from the same parsed angle.

Colour. YUV is converted with the matrix the stream is tagged with. An untagged stream is taken as players
take it: BT.709 when it is HD (at least 1280 wide or 720 high), BT.601 when it is smaller. 10-bit and 12-bit
streams come out as 8-bit RGB. HDR streams (PQ ``smpte2084`` or HLG ``arib-std-b67``) are
tone-mapped to BT.709 SDR (``zscale`` to linear light with a 203-nit reference white, BT.709 primaries,
``tonemap=mobius``); when the bundled ffmpeg lacks ``zscale`` they are decoded as they are and a warning
says so.
"""

from __future__ import annotations

import functools
import math
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import ConfigError, VideoError
from ..fsutil import check_input

__all__ = [
    "VideoInfo",
    "probe",
    "output_size",
    "frame_range",
    "iter_frames",
    "has_audio",
    "ffmpeg_exe",
    "ffmpeg_listing",
]

#: Transfer characteristics that mark a stream as HDR.
HDR_TRANSFERS = ("smpte2084", "arib-std-b67")

#: Frame rates a variable-rate clip is snapped to (when its average is within 2 % of one).
_COMMON_RATES = tuple(
    sorted(
        {Fraction(r) for r in (5, 6, 8, 10, 12, 15, 16, 18, 20, 24, 25, 30, 48, 50, 60, 72, 90, 100, 120, 144, 240)}
        | {Fraction(25, 2)}
        | {Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240)}
    )
)

#: ffmpeg's AV_NOPTS_VALUE as ``framecrc`` prints it.
_NOPTS = -(2**63)
#: AV_PKT_FLAG_DISCARD: a packet decoded only to prime the decoder (edit lists); it is never shown.
_FLAG_DISCARD = 0x4


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped with ``imageio-ffmpeg``."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_url(path: str | os.PathLike) -> str:
    """``path`` as ffmpeg must see it: with the ``file:`` prefix, so no part of the name reads as a protocol
    (``take:2.wav``) or an option (``-x.mp4``). Every path decode and encode hand to ffmpeg goes through it."""
    return "file:" + os.fspath(path)


@functools.cache
def _ffmpeg_version() -> tuple[int, int]:
    """(major, minor) of the bundled ffmpeg; (99, 0) for a build that names no release (a git snapshot)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    found = re.match(r"ffmpeg version n?(\d+)\.(\d+)", proc.stdout.decode("utf-8", "replace"))
    return (int(found.group(1)), int(found.group(2))) if found else (99, 0)


def _passthrough() -> list[str]:
    """Output option that passes frames through as the filters made them (``-fps_mode`` came in ffmpeg 5.1 and
    replaced ``-vsync``, which ffmpeg 8 no longer has; imageio-ffmpeg 0.5 bundles ffmpeg 4.2)."""
    return ["-fps_mode", "passthrough"] if _ffmpeg_version() >= (5, 1) else ["-vsync", "passthrough"]


@functools.cache
def _has_filter(name: str) -> bool:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-filters"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    listing = proc.stdout.decode("utf-8", "replace")
    return re.search(rf"^\s*\S+\s+{re.escape(name)}\s", listing, re.MULTILINE) is not None


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a video file.

    Attributes
    ----------
    path : Path
    fps : float
        Frames per second of the decoded frames (e.g. ``29.97002997`` for 30000/1001). For a variable-rate
        clip this is the constant rate :func:`iter_frames` resamples to (see the module notes).
    width, height : int
        Frame size in pixels, upright (after the rotation tag is applied).
    frame_count : int
        Number of frames :func:`iter_frames` yields for the whole clip.
    duration : float
        ``frame_count / fps`` in seconds: the clip's real length.
    has_audio : bool
        Whether the file holds at least one audio stream.
    variable_rate : bool
        Whether the source frames are unevenly spaced (and are resampled to ``fps`` by timestamp).
    source_frames : int
        Number of frames stored in the stream (equals ``frame_count`` for a constant-rate clip).
    rotation : int
        Clockwise rotation in degrees (0, 90, 180, 270) applied to the stored frames to show them upright.
    pixel_format : str
        The stream's pixel format as ffmpeg names it (``"yuv420p"``, ``"yuv420p10le"``, ...).
    color_transfer : str
        The stream's transfer characteristic tag (``"bt709"``, ``"smpte2084"``, ...); ``""`` when untagged.
    color_matrix : str
        The stream's YUV matrix tag (``"bt709"``, ``"bt470bg"``, ...); ``""`` when untagged (then decoded as BT.709
        when HD, at least 1280 wide or 720 high, else as BT.601).
    hdr : bool
        Whether the transfer is HDR (PQ or HLG); such frames are tone-mapped to SDR when decoded.
    """

    path: Path
    fps: float
    width: int
    height: int
    frame_count: int
    duration: float
    has_audio: bool
    variable_rate: bool = False
    source_frames: int = 0
    rotation: int = 0
    pixel_format: str = ""
    color_transfer: str = ""
    hdr: bool = False
    color_matrix: str = ""
    #: For decoding: the exact frame rate (``Fraction``), the time of the first frame on ffmpeg's clock and of
    #: the last source frame after the first (seconds).
    rate: Fraction | None = None
    start: float = 0.0
    last: float = 0.0


def _check_file(path: str | os.PathLike) -> Path:
    return check_input(path, what="video", error=VideoError, give="a video file (re-export or re-download it)")


def ffmpeg_listing(path: str | os.PathLike) -> str:
    """The stderr of ``ffmpeg -i file:path``: the container and stream listing, or why it cannot be read."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_url(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    return proc.stderr.decode("utf-8", "replace")


_AUDIO_RE = re.compile(r"Stream #\d+:\d+.*?: Audio:")


def has_audio(path: str | os.PathLike) -> bool:
    """Return whether ``path`` holds an audio stream (parsed from ``ffmpeg -i``)."""
    return _AUDIO_RE.search(ffmpeg_listing(path)) is not None


# -- the stream listing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stream:
    width: int
    height: int
    pixel_format: str
    transfer: str
    matrix: str  # the YUV matrix tag (ffmpeg's colorspace name, "bt709", "bt470bg", ...), "" when untagged
    rotation: int  # clockwise degrees, a multiple of 90
    rates: tuple[float, ...]  # the listing's "fps" (average) and "tbr", where given


_VIDEO_LINE_RE = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: (?P<rest>.*)$")
_PIX_RE = re.compile(r"^[^,]+, (?P<pix>[a-z0-9_]+)(?:\((?P<props>[^)]*)\))?")
_SIZE_RE = re.compile(r", (\d+)x(\d+)[ ,\n]|, (\d+)x(\d+)$")
_RATE_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")
_MATRIX_RE = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG_RE = re.compile(r"^\s*rotate\s*:\s*(-?[\d.]+)\s*$", re.MULTILINE)


def _video_stream(listing: str) -> _Stream | None:
    """Parse the first video stream that is not a cover picture from ``ffmpeg -i``'s listing (input part)."""
    text = re.split(r"^(?:Output #0|Stream mapping:)", listing, maxsplit=1, flags=re.MULTILINE)[0]
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _VIDEO_LINE_RE.match(line)
        if not m or "(attached pic)" in line:
            continue
        rest = m.group("rest")
        block = []  # the stream's metadata and side data: the indented lines up to the next stream
        for follow in lines[i + 1 :]:
            if re.match(r"^\s*Stream #", follow) or not follow.startswith("    "):
                break
            block.append(follow)
        block_text = "\n".join(block)
        pix = _PIX_RE.match(rest)
        pixel_format = pix.group("pix") if pix else ""
        transfer = matrix = ""
        if pix and pix.group("props"):
            for token in (t.strip() for t in pix.group("props").split(",")):
                if token.count("/") == 2:  # matrix/primaries/transfer
                    matrix, _, transfer = token.split("/")
                elif token.startswith(("bt", "smpte", "arib", "iec", "fcc", "ycgco", "chroma")):
                    matrix = transfer = token  # one name: matrix, primaries and transfer agree
        matrix = "" if matrix == "unknown" else matrix
        size = _SIZE_RE.search(rest[pix.end() :] if pix else rest)
        width = height = 0
        if size:
            width, height = (int(v) for v in (size.group(1, 2) if size.group(1) else size.group(3, 4)))
        rates = []
        for value, kilo, _ in _RATE_RE.findall(rest):
            with_k = float(value) * (1000 if kilo else 1)
            if math.isfinite(with_k) and with_k > 0:
                rates.append(with_k)
        rotation = 0
        found = _MATRIX_RE.search(block_text)
        if found:  # counter-clockwise degrees of the display matrix
            rotation = -float(found.group(1))
        else:
            tag = _ROTATE_TAG_RE.search(block_text)
            if tag:  # the legacy tag: clockwise degrees
                rotation = float(tag.group(1))
        rotation = int(round(rotation / 90.0)) * 90 % 360
        return _Stream(width, height, pixel_format, transfer, matrix, rotation, tuple(rates))
    return None


# -- timestamps -------------------------------------------------------------------------------------------------------
def framecrc_packets(text: str) -> tuple[Fraction, list[tuple[int, int, int, int]]]:
    """Time base and ``(dts, pts, duration, flags)`` of every packet in ffmpeg's ``framecrc`` output (one stream)."""
    tb = Fraction(1, 1)
    packets = []
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            tb = Fraction(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            if len(fields) < 4:
                continue
            flags = next((int(f[2:], 16) for f in fields[6:] if f.startswith("F=")), 0)
            packets.append((int(fields[1]), int(fields[2]), int(fields[3]), flags))
    return tb, packets


def _parse_packets(text: str) -> tuple[Fraction, list[tuple[int, int]]]:
    """Time base and the ``(pts, duration)`` of every shown packet, from ffmpeg's ``framecrc`` output."""
    tb, packets = framecrc_packets(text)
    raw = [(dts, pts, dur) for dts, pts, dur, flags in packets if not flags & _FLAG_DISCARD]
    if any(pts == _NOPTS for _, pts, _ in raw) and all(dts != _NOPTS for dts, _, _ in raw):
        # MPEG-PS/TS stamp only some packets: take the decode times, moved by the decoder's delay
        delays = sorted(pts - dts for dts, pts, _ in raw if pts != _NOPTS)
        delay = delays[len(delays) // 2] if delays else 0
        return tb, [(dts + delay, dur) for dts, _, dur in raw]
    return tb, [(pts, dur) for _, pts, dur in raw]


def _snap(rate: float, rel: float) -> Fraction | None:
    best = min(_COMMON_RATES, key=lambda r: abs(float(r) - rate))
    return best if abs(float(best) - rate) <= rel * rate else None


def _regular(times: list[float], rate: Fraction) -> bool:
    """Whether frame ``i`` lies within 0.3 frame of ``i / rate`` for every ``i`` (times start at 0)."""
    r = float(rate)
    return all(abs(t * r - i) <= 0.3 for i, t in enumerate(times))


@dataclass(frozen=True)
class _Timing:
    rate: Fraction
    frame_count: int
    variable: bool
    start: float
    last: float  # the last source frame's time, seconds after the first


def _timing(tb: Fraction, packets: list[tuple[int, int]], listed_rates: tuple[float, ...]) -> _Timing:
    """Decide the output rate and frame count from the packets' timestamps (see the module notes)."""
    known = [(p, d) for p, d in packets if p != _NOPTS]
    n = len(packets)
    fallback = next((_snap(r, 0.002) or Fraction(r).limit_denominator(1001) for r in listed_rates), Fraction(25))
    if len(known) < n:  # no timestamps (e.g. a raw elementary stream): trust the listed rate
        return _Timing(fallback, n, False, 0.0, (n - 1) / float(fallback))
    known.sort()
    t0 = known[0][0]
    times = [float((p - t0) * tb) for p, _ in known]
    start = float(t0 * tb)
    if n == 1:
        dur = known[0][1]
        rate = fallback
        if dur > 0:
            rate = _snap(float(1 / (dur * tb)), 0.002) or Fraction(1 / (dur * tb)).limit_denominator(1001)
        return _Timing(rate, 1, False, start, 0.0)
    span_shown = times[-1]
    if span_shown <= 0:  # every frame at the same instant
        return _Timing(fallback, n, False, start, 0.0)
    mean_rate = (n - 1) / span_shown
    intervals = sorted(known[i + 1][0] - known[i][0] for i in range(n - 1))
    median_ticks = intervals[len(intervals) // 2]
    candidates = [
        _snap(mean_rate, 0.002),
        *(_snap(r, 0.002) for r in listed_rates),
        Fraction(mean_rate).limit_denominator(1001),
    ]
    if median_ticks > 0:
        candidates.append(1 / (median_ticks * tb))
    for rate in candidates:
        if rate is not None and rate > 0 and _regular(times, rate):
            return _Timing(rate, n, False, start, span_shown)
    median = float(median_ticks * tb) if median_ticks > 0 else span_shown / (n - 1)
    # frames missing from an even grid (a phone that dropped frames): keep the grid's rate, hold across the gaps
    grid = _snap(1 / median, 0.002) or (1 / (median_ticks * tb) if median_ticks > 0 else None)
    if grid is not None and 0 < grid <= 1000:
        ticks = [t * float(grid) for t in times]
        slots = [round(x) for x in ticks]
        if all(abs(x - k) <= 0.3 for x, k in zip(ticks, slots)) and all(a < b for a, b in zip(slots, slots[1:])):
            return _Timing(grid, slots[-1] + 1, True, start, span_shown)
    # variable rate: resample to the average rate over the span, from the first frame to the end of the last
    last = float(known[-1][1] * tb)
    if not 0 < last <= 4 * median:
        last = median
    span = span_shown + last
    average = n / span
    rate = _snap(average, 0.02) or Fraction(round(average * 100), 100)
    return _Timing(rate, max(1, round(span * rate)), True, start, span_shown)


def _first_frame_decodes(path: Path) -> subprocess.Popen:
    """Start decoding the first frame (to a tiny grey image), to tell a readable stream from a broken one."""
    return subprocess.Popen(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-i", ffmpeg_url(path),
         "-map", "0:V:0", "-frames:v", "1", "-vf", "scale=8:8", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _one_line(text: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("Last message")]
    line = lines[-1] if lines else "no message"
    line = re.sub(r"^(?:\[[^\]]*\] *)+", "", line)  # "[dec:h264 @ 0x55...] " prefixes
    return line[:limit]


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's frame rate, upright size, real frame count and duration, and whether it has sound.

    Reads every packet's timestamp without decoding (see the module notes for how the rate and count of a
    variable-rate clip are chosen) and decodes the first frame.

    Parameters
    ----------
    path : str or PathLike
        A video file the bundled ffmpeg can read.

    Returns
    -------
    VideoInfo

    Raises
    ------
    VideoError
        If the file is missing, empty, corrupt, not a video, or has no decodable frame.
    """
    path = _check_file(path)
    first = _first_frame_decodes(path)
    try:
        scan = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-copyts", "-i", ffmpeg_url(path),
             "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "pipe:1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
        decoded, first_err = first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    listing = scan.stderr.decode("utf-8", "replace")
    if scan.returncode < 0:  # killed by a signal: some static ffmpeg builds crash on some containers
        raise VideoError(
            f"the bundled ffmpeg crashed (signal {-scan.returncode}) reading {path}: convert it to MP4 (H.264) "
            "with another ffmpeg, or update imageio-ffmpeg"
        )
    stream = _video_stream(listing)
    if stream is None:
        unreadable = ("Invalid data found" in listing or "moov atom not found" in listing
                      or not re.search(r"^Input #0", listing, re.MULTILINE))  # fmt: skip
        if unreadable:
            raise VideoError(
                f"cannot open {path} as a video: the file is corrupt or not a video ({_one_line(listing)}); "
                "try converting it to MP4 (H.264) with ffmpeg"
            )
        what = "sound only" if _AUDIO_RE.search(listing) else "no video stream"
        raise VideoError(f"{path} holds {what}: give a video file")
    tb, packets = _parse_packets(scan.stdout.decode("utf-8", "replace"))
    if not packets or not decoded:
        why = _one_line(first_err.decode("utf-8", "replace")) if first_err.strip() else "no frame in the stream"
        raise VideoError(
            f"{path} has no decodable video frames ({why}): the file is truncated or its video cannot be "
            "decoded; re-export it as MP4 (H.264)"
        )
    timing = _timing(tb, packets, stream.rates)
    width, height = stream.width, stream.height
    if width <= 0 or height <= 0:
        raise VideoError(f"{path} has no readable frame size: re-export it as MP4 (H.264)")
    if stream.rotation in (90, 270):
        width, height = height, width
    rate = timing.rate
    if not 0 < rate <= 1000:
        raise VideoError(f"{path} has no valid frame rate ({float(rate)!r}): re-export it with a fixed frame rate")
    return VideoInfo(
        path=path,
        fps=float(rate),
        width=width,
        height=height,
        frame_count=timing.frame_count,
        duration=timing.frame_count / float(rate),
        has_audio=_AUDIO_RE.search(listing) is not None,
        variable_rate=timing.variable,
        source_frames=len(packets),
        rotation=stream.rotation,
        pixel_format=stream.pixel_format,
        color_transfer=stream.transfer,
        hdr=stream.transfer in HDR_TRANSFERS,
        color_matrix=stream.matrix,
        rate=rate,
        start=timing.start,
        last=timing.last,
    )


def output_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """Size of the rendered frames: same aspect, longest side at most ``max_side``, both sides even.

    H.264 in yuv420p needs even dimensions, so odd sides are rounded down. Frames are never upscaled.

    Parameters
    ----------
    width, height : int
        Source frame size in pixels.
    max_side : int or None
        Limit for the longest side; ``None`` keeps the source size (only rounding odd sides down).

    Returns
    -------
    (width, height) : tuple of int
        Both even and >= 2.
    """
    if width < 2 or height < 2:
        raise ConfigError(f"frame size {width}x{height} is too small: both sides must be at least 2 pixels")
    scale = 1.0
    if max_side is not None:
        if max_side < 2:
            raise ConfigError(f"max side {max_side} is too small: use at least 2 (e.g. 512)")
        scale = min(1.0, max_side / max(width, height))
    w = max(2, int(width * scale + 0.5) // 2 * 2)
    h = max(2, int(height * scale + 0.5) // 2 * 2)
    return w, h


def frame_range(info: VideoInfo, start: float = 0.0, duration: float | None = None) -> tuple[int, int]:
    """Translate a time window into frame indices.

    Parameters
    ----------
    info : VideoInfo
    start : float
        Start time in seconds, >= 0.
    duration : float or None
        Length in seconds (> 0); ``None`` runs to the end. A window past the end is shortened.

    Returns
    -------
    (first, count) : tuple of int
        ``first = round(start * fps)`` and the number of frames, >= 1.

    Raises
    ------
    ConfigError
        If ``start`` is negative or beyond the end, or ``duration`` is not positive.
    """
    if not math.isfinite(start) or start < 0:
        raise ConfigError(f"start {start} s is invalid: use a time >= 0 seconds")
    if duration is not None and (not math.isfinite(duration) or duration <= 0):
        raise ConfigError(f"duration {duration} s is invalid: use a positive number of seconds")
    first = int(round(start * info.fps))
    if first >= info.frame_count:
        raise ConfigError(
            f"start {start:g} s is beyond the end of {info.path.name} ({info.duration:.2f} s long): "
            "choose an earlier start"
        )
    available = info.frame_count - first
    if duration is None:
        return first, available
    return first, max(1, min(available, int(round(duration * info.fps))))


def _check_size(size: tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"frame size {size!r} is invalid: give (width, height)") from None
    if w < 1 or h < 1:
        raise ConfigError(f"frame size {w}x{h} is invalid: both sides must be positive")
    return w, h


#: HDR (PQ or HLG) to BT.709 SDR: linear light with a 203-nit reference white (ITU-R BT.2408), BT.709
#: primaries, mobius tone curve (linear up to 0.3, highlights rolled off), back to the BT.709 transfer.
_TONEMAP = (
    "zscale=transfer=linear:npl=203,format=gbrpf32le,zscale=primaries=bt709,"
    "tonemap=tonemap=mobius:desat=0,zscale=transfer=bt709:matrix=bt709:range=pc,format=gbrp"
)
_TRANSPOSE = {90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}


#: How every decoded frame is scaled to the size asked for (``video.AsRecorded`` scales the same way).
SCALE_FLAGS = "flags=area+accurate_rnd+full_chroma_int"


def _filters(info: VideoInfo, first: int, count: int, size: tuple[int, int], tonemap: bool) -> str:
    rate = info.rate if info.rate is not None else Fraction(info.fps).limit_denominator(1001)
    chain = []
    if _has_filter("tpad"):
        # The fps filter ends the stream at the last frame's start plus its duration, and decoders often give the
        # last frame no duration (WebM from browsers, some MP4s): that frame would never be shown. Clones of it
        # carry it past the end; the trim below cuts the stream at exactly ``frame_count``.
        tail = max(0.0, info.duration - info.last) + 2 / float(rate)
        chain.append(f"tpad=stop_mode=clone:stop_duration={tail:.6f}")
    chain.append(f"fps=fps={rate.numerator}/{rate.denominator}:start_time={info.start!r}")
    chain.append(f"trim=start_frame={first}:end_frame={first + count}")
    if tonemap:
        chain.append(_TONEMAP)
    if info.rotation:
        chain.append(_TRANSPOSE[info.rotation])
    chain.append(f"scale={size[0]}:{size[1]}:{SCALE_FLAGS}{_untagged(info)},format=rgb24")
    return ",".join(chain)


def _untagged(info: VideoInfo) -> str:
    """The scale filter's matrix for a stream without a matrix tag, as players choose it: BT.709 for HD (stored at
    least 1280 wide or 720 high), BT.601 below (swscale's own guess is always BT.601). "" when tagged."""
    if info.color_matrix:
        return ""
    w, h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)  # as stored
    return f":in_color_matrix={'bt709' if w >= 1280 or h >= 720 else 'bt601'}"


class _Stderr:
    """Collects a subprocess's stderr lines on a thread, so its pipe never fills."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if line and len(self.lines) < 1000:
                self.lines.append(line)
        stream.close()

    def join(self) -> None:
        self._t.join(timeout=10)


def _read_exact(stream, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        k = stream.readinto(buf[got:])
        if not k:
            break
        got += k
    return got


def iter_frames(
    path: str | os.PathLike,
    *,
    first: int = 0,
    count: int | None = None,
    size: tuple[int, int] | None = None,
    on_warning: Callable[[str], None] | None = None,
    info: VideoInfo | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of a video, upright, at the constant rate :func:`probe` reports.

    Parameters
    ----------
    path : str or PathLike
    first : int
        Index of the first frame to yield (frames before it are decoded and dropped: exact on every
        container).
    count : int or None
        Stop after this many frames; ``None`` reads to the end of the stream.
    size : (width, height) or None
        Resize every frame to this size (area averaging); ``None`` keeps the upright source size.
    on_warning : callable or None
        Called with a one-line message when the stream holds damaged data (ffmpeg conceals it or
        repeats the previous frame, so the timeline is kept), when the stream ends before the frame
        count :func:`probe` reports, and when an HDR clip is tone-mapped (or cannot be).
    info : VideoInfo or None
        The result of ``probe(path)``, when the caller already has it; otherwise it is probed here.

    Yields
    ------
    frame : ndarray, shape (H, W, 3), dtype uint8
        RGB frame; frame ``k`` is the picture on screen at ``k / info.fps`` seconds into the clip.

    Raises
    ------
    VideoError
        If the file is missing, empty or cannot be decoded.
    """
    path = _check_file(path)
    size = _check_size(size)
    if first < 0:
        raise ConfigError(f"first frame {first} is invalid: use an index >= 0")
    if count is not None and count <= 0:
        return
    info = info if info is not None else probe(path)
    if first >= info.frame_count:
        return
    target = size if size is not None else (info.width, info.height)
    tonemap = info.hdr and _has_filter("zscale") and _has_filter("tonemap")
    if info.hdr and on_warning is not None:
        if tonemap:
            on_warning(f"{path.name} is HDR ({info.color_transfer}): its colours are tone-mapped to SDR (BT.709)")
        else:
            on_warning(
                f"{path.name} is HDR ({info.color_transfer}) and the bundled ffmpeg has no zscale filter to "
                "tone-map it: colours will look washed out; convert it to SDR (BT.709) first"
            )
    expected = info.frame_count - first if count is None else min(count, info.frame_count - first)
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-copyts", "-noautorotate",
        "-i", ffmpeg_url(path), "-map", "0:V:0", "-an", "-sn", "-dn",
        "-vf", _filters(info, first, expected, target, tonemap),
        *_passthrough(), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
    ]  # fmt: skip
    w, h = target
    # its own session: a Ctrl-C at the terminal reaches Python (which then stops ffmpeg here), not ffmpeg, which
    # would otherwise end the stream early and look like a truncated file
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    errors = _Stderr(proc.stderr)
    reported = 0  # damage lines already reported: the first is reported at once, the rest counted at the end
    yielded = 0
    try:
        while yielded < expected:
            frame = np.empty((h, w, 3), np.uint8)
            got = _read_exact(proc.stdout, memoryview(frame).cast("B"))
            if got < frame.nbytes:
                break
            if not reported and errors.lines and on_warning is not None:
                reported = len(errors.lines)
                on_warning(_damage_message(path, errors.lines))
            yielded += 1
            yield frame
        try:  # the trim filter ends the stream after the last frame wanted, so ffmpeg ends by itself
            proc.wait(timeout=5 if yielded >= expected else None)
        except subprocess.TimeoutExpired:
            proc.kill()
        errors.join()
        lines = list(errors.lines)
        if yielded < expected:  # the stream ended early
            if yielded == 0 and proc.returncode != 0:
                raise VideoError(
                    f"cannot decode {path} ({_one_line(chr(10).join(lines))}): re-export it as MP4 (H.264)"
                )
        if on_warning is not None:
            if lines and not reported:
                on_warning(_damage_message(path, lines))
            elif len(lines) > reported:
                on_warning(
                    f"ffmpeg reported {len(lines) - reported} more error(s) while decoding {path.name} "
                    f"(last: {_one_line(chr(10).join(lines), 120)})"
                )
            if yielded < expected:
                on_warning(
                    f"{path.name} ended at frame {first + yielded}, {expected - yielded} frame(s) before the end "
                    "its header announces (truncated or damaged file)"
                )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        errors.join()


def _damage_message(path: Path, lines: list[str]) -> str:
    return (
        f"{path.name} holds damaged video data (ffmpeg: {_one_line(lines[0], 120)}); damaged frames are concealed "
        "or repeat the previous one, so the timing is kept"
    )
