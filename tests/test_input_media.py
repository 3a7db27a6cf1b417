"""Footage from phones and cameras: variable frame rate, MKV/WebM, rotation, EXIF orientation, 10-bit, HDR, odd names.

Every clip is made here by the bundled ffmpeg, tiny (32x24 or 48x32) and a few dozen frames. Most clips show
frame ``i`` as a flat grey of level ``12 + 5 i``, so a decoded frame says which source frame it is.
"""

from __future__ import annotations

import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dreamvid.errors import InputError, VideoError
from dreamvid.images import read_image
from dreamvid.video import FrameWriter, iter_frames, mux, probe, stream_durations
from dreamvid.video import decode as decode_mod
from dreamvid.video.decode import ffmpeg_exe
from tests.media import clip_frame, make_song

GREY = (32, 24)  # (width, height) of the grey-level clips


def _ff(*args: str, data: bytes | None = None) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], input=data, check=True)


def _vfr_out() -> list[str]:
    """Output options that keep the frames' own timestamps (``-fps_mode`` since ffmpeg 5.1, ``-vsync`` before)."""
    return ["-fps_mode", "vfr"] if decode_mod._ffmpeg_version() >= (5, 1) else ["-vsync", "vfr"]


def _level(i: int) -> int:
    return 12 + 5 * i


def _index(frame: np.ndarray) -> int:
    """Which grey-level frame this is (levels are 5 apart; decoding moves them by 1 or 2 at most)."""
    return int(round((float(frame.mean()) - 12) / 5))


def _grey_frames(n: int, size=GREY) -> bytes:
    w, h = size
    return b"".join(np.full((h, w), _level(i), np.uint8).tobytes() for i in range(n))


def _grey_clip(path: Path, n: int, *, rate: str = "30", setpts: str | None = None, codec: tuple[str, ...] = (),
               audio: float | None = None) -> Path:
    """``n`` grey-level frames, at ``rate`` or at the times ``setpts`` gives (an expression of ``N``, in seconds)."""
    vf = ["format=yuv420p"]
    if setpts is not None:
        vf = ["settb=1/90000", f"setpts='({setpts})/TB'", *vf]
    args = ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{GREY[0]}x{GREY[1]}", "-framerate", rate, "-i", "pipe:0"]
    if audio is not None:
        args += ["-f", "lavfi", "-i", f"sine=f=440:d={audio}", "-map", "0:v", "-map", "1:a"]
    args += ["-vf", ",".join(vf)]
    if setpts is not None:
        args += [*_vfr_out(), "-enc_time_base", "1:90000"]
    if not codec:
        codec = ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0")
    args += [*codec, f"file:{path}"]
    _ff(*args, data=_grey_frames(n))
    return path


# -- variable frame rate --------------------------------------------------------------------------------------------
#: A phone-like clip: 8 frames 0.125 s apart (1 s), 10 frames 0.2 s apart (2 s), 30 frames 1/30 s apart (1 s).
VFR_TIMES = [i * 0.125 for i in range(8)] + [1 + i * 0.2 for i in range(10)] + [3 + i / 30 for i in range(30)]
VFR_SETPTS = "if(lt(N,8),N*0.125,if(lt(N,18),1+(N-8)*0.2,3+(N-18)/30))"


def _on_screen(times: list[float], t: float, slack: float) -> set[int]:
    """Source frames that are on screen within ``slack`` seconds of ``t``."""
    ends = times[1:] + [float("inf")]
    return {i for i, (a, b) in enumerate(zip(times, ends)) if a <= t + slack and b > t - slack}


def test_variable_rate_clip_keeps_real_time(tmp_path):
    """Each decoded frame k is the source frame on screen at k / fps, and frame_count / fps is the real length."""
    clip = _grey_clip(tmp_path / "vfr.mp4", len(VFR_TIMES), setpts=VFR_SETPTS, audio=4.0)
    info = probe(clip)
    assert info.duration == pytest.approx(4.0, abs=0.1)  # muxers differ on how long the last frame lasts
    frames = list(iter_frames(clip))
    assert len(frames) == info.frame_count
    for k, frame in enumerate(frames):
        assert _index(frame) in _on_screen(VFR_TIMES, k / info.fps, 0.5 / info.fps), f"frame {k}"
    # a window in time is the same frames as the whole run cut there
    part = list(iter_frames(clip, first=20, count=9))
    assert [_index(f) for f in part] == [_index(f) for f in frames[20:29]]
    assert info.fps == 12.0 and info.frame_count in (48, 49)  # the average rate (48 frames in 4 s), a common rate
    assert info.variable_rate and info.source_frames == len(VFR_TIMES)


def _onset(path: Path) -> float:
    """Time in seconds at which the first audio stream of ``path`` first gets loud."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", f"file:{path}", "-map", "0:a:0",
         "-ac", "1", "-ar", "8000", "-f", "f32le", "pipe:1"],
        capture_output=True, check=True,
    )  # fmt: skip
    pcm = np.abs(np.frombuffer(proc.stdout, np.float32))
    return float(np.argmax(pcm > 0.25)) / 8000


def test_variable_rate_clip_keeps_its_own_sound_in_sync(tmp_path):
    """Through decode, encode and mux, a VFR clip keeps its own sound in sync: a beep at 3.00 s, when frame 18
    appears, still comes with the frames from 18 on, and the 4.00 s clip stays 4.00 s."""
    clip = _grey_clip(tmp_path / "vfr.mp4", len(VFR_TIMES), setpts=VFR_SETPTS, audio=4.0)
    with_beep = tmp_path / "beep.mp4"
    _ff("-i", f"file:{clip}", "-f", "lavfi", "-i", "sine=f=880:d=4,volume='if(gte(t,3),4,0)':eval=frame",
        "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", f"file:{with_beep}")  # fmt: skip
    info = probe(with_beep)
    silent = tmp_path / "silent.mp4"
    with FrameWriter(silent, fps=info.fps, size=(info.width, info.height), crf=0, preset="ultrafast") as writer:
        for frame in iter_frames(with_beep, info=info):
            writer.write(frame)
    out = tmp_path / "out.mp4"
    mux(silent, out, source=with_beep)
    shown = [_index(f) for f in iter_frames(out)]
    appears = next(k for k, i in enumerate(shown) if i >= 18) / probe(out).fps  # the dense stretch starts
    assert _onset(with_beep) == pytest.approx(3.0, abs=0.03)
    assert _onset(out) == pytest.approx(appears, abs=1 / info.fps)
    durations = stream_durations(out)
    assert durations["video"] == pytest.approx(info.duration, abs=0.5 / info.fps)
    assert durations["video"] == pytest.approx(4.0, abs=0.1)
    assert durations["audio"] == pytest.approx(4.0, abs=0.05)


def test_variable_rate_rounding_snaps_to_a_common_rate(tmp_path):
    """A 30 fps phone clip that dropped a few frames is still 30 fps, its gaps filled by repeats."""
    kept = [i for i in range(40) if i not in (7, 8, 30)]  # the source frame numbers that were recorded
    expr = "+".join(f"eq(N,{j})*{i}/30" for j, i in enumerate(kept))
    clip = _grey_clip(tmp_path / "drops.mp4", len(kept), setpts=expr)
    info = probe(clip)
    shown = [kept[_index(f)] for f in iter_frames(clip, info=info)]
    assert len(shown) == info.frame_count
    # (ffmpeg 7's MP4 muxer ends the edit list where the last frame starts, so that frame is never shown)
    assert shown[:39] == [i if i not in (7, 8, 30) else {7: 6, 8: 6, 30: 29}[i] for i in range(39)]  # gaps hold
    assert info.fps == 30.0 and info.frame_count in (39, 40) and info.variable_rate


@pytest.mark.parametrize("suffix,codec", [
    (".mkv", ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-c:a", "aac")),
    (".webm", ("-c:v", "libvpx", "-b:v", "300k", "-c:a", "libopus")),
])  # fmt: skip
@pytest.mark.parametrize("rate", ["24", "30000/1001"])
def test_mkv_and_webm_counts_are_exact(tmp_path, suffix, codec, rate):
    """Matroska stores no frame count; with a longer sound track, the old estimate announced a frame that never came."""
    clip = _grey_clip(tmp_path / f"clip{suffix}", 23, rate=rate, codec=codec, audio=1.5)
    info = probe(clip)
    assert info.frame_count == 23 and not info.variable_rate
    assert Fraction(info.fps).limit_denominator(1001) == Fraction(rate)
    warnings: list[str] = []
    frames = list(iter_frames(clip, on_warning=warnings.append))
    assert warnings == []
    assert [_index(f) for f in frames] == list(range(23))


def test_frames_before_an_edit_list_start_are_not_counted(tmp_path):
    """A stream-copied cut starts on a keyframe before the cut; the frames before it are decoded but never shown."""
    src = _grey_clip(tmp_path / "src.mp4", 40, rate="20", codec=("-c:v", "libx264", "-preset", "medium", "-qp", "0", "-g", "40"))
    cut = tmp_path / "cut.mp4"
    _ff("-ss", "0.5", "-i", f"file:{src}", "-c", "copy", f"file:{cut}")
    info = probe(cut)
    frames = list(iter_frames(cut, info=info))
    assert len(frames) == info.frame_count == 30
    assert [_index(f) for f in frames] == list(range(10, 40))


# -- rotation -------------------------------------------------------------------------------------------------------
def _pattern(size=(48, 32)) -> np.ndarray:
    """A frame with nothing symmetric about it: a red block top-left, a green bar along the bottom."""
    w, h = size
    img = np.full((h, w, 3), 40, np.uint8)
    img[: h // 3, : w // 4] = (230, 30, 30)
    img[-4:, :] = (30, 200, 30)
    return img


@pytest.mark.parametrize("ccw,k", [(90, 1), (-90, -1), (180, 2)])
def test_rotated_phone_video_comes_out_upright(tmp_path, ccw, k):
    """``-display_rotation`` (counter-clockwise degrees) as a phone writes it: frames and size come out turned."""
    if decode_mod._ffmpeg_version() < (7, 0):
        pytest.skip("ffmpeg before 7.0 has no -display_rotation (and 4.2's MP4 muxer turns a rotate=270 tag the wrong way)")
    stored = tmp_path / "stored.mp4"
    with FrameWriter(stored, fps=10, size=(48, 32), crf=0, preset="ultrafast") as writer:
        for _ in range(3):
            writer.write(_pattern())
    rotated = tmp_path / "rotated.mp4"
    _ff("-display_rotation", str(ccw), "-i", f"file:{stored}", "-c", "copy", f"file:{rotated}")
    info = probe(rotated)
    upright = np.rot90(_pattern(), k)
    assert (info.height, info.width) == upright.shape[:2]
    frames = list(iter_frames(rotated))
    assert len(frames) == 3 and frames[0].shape == upright.shape
    assert np.abs(frames[0].astype(int) - upright).mean() < 4
    half = list(iter_frames(rotated, size=(upright.shape[1] // 2, upright.shape[0] // 2)))  # resize after turning
    assert half[0].shape == (upright.shape[0] // 2, upright.shape[1] // 2, 3)
    assert info.rotation == (-ccw) % 360


# -- EXIF orientation -----------------------------------------------------------------------------------------------
def _exif(orientation: int, order: str = "<") -> bytes:
    """A minimal EXIF block (TIFF header + IFD0 with the orientation tag)."""
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    ifd = struct.pack(order + "H", 1) + struct.pack(order + "HHIH", 0x0112, 3, 1, orientation) + b"\x00\x00"
    return head + ifd + struct.pack(order + "I", 0)


def _jpeg_with_exif(path: Path, img_rgb: np.ndarray, orientation: int, order: str = "<") -> Path:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    payload = b"Exif\x00\x00" + _exif(orientation, order)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = buf.tobytes()
    path.write_bytes(data[:2] + app1 + data[2:])
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    """All eight EXIF orientations, checked against Pillow's ``exif_transpose``."""
    from PIL import Image, ImageOps

    img = _pattern()
    path = _jpeg_with_exif(tmp_path / f"o{orientation}.jpg", img, orientation, order="<>"[orientation % 2])
    with Image.open(path) as im:
        reference = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    assert got.shape == reference.shape
    assert np.abs(got.astype(int) - reference).mean() < 1.0


def test_portrait_photo_comes_out_upright(tmp_path):
    """A phone's portrait JPEG: landscape pixels tagged orientation 6 (turn 90 degrees clockwise)."""
    path = _jpeg_with_exif(tmp_path / "portrait.jpg", _pattern(), 6)
    got = read_image(path)
    assert got.shape == (48, 32, 3)
    assert np.abs(got.astype(int) - np.rot90(_pattern(), -1)).mean() < 3


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_exif_orientation_in_png_webp_tiff(tmp_path, fmt):
    from PIL import Image

    path = tmp_path / f"o.{fmt.lower()}"
    exif = Image.Exif()
    exif[0x0112] = 8
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(_pattern()).save(path, format=fmt, exif=exif.tobytes(), **kwargs)
    got = read_image(path)  # turned once, not twice
    assert np.abs(got.astype(int) - np.rot90(_pattern(), 1)).mean() < 1.0


def test_broken_exif_is_ignored(tmp_path):
    path = _jpeg_with_exif(tmp_path / "bad.jpg", _pattern(), 6)
    data = bytearray(path.read_bytes())
    data[12:16] = b"\xff\xff\xff\x7f"  # IFD0 offset far past the end
    path.write_bytes(bytes(data))
    got = read_image(path)
    assert got.shape == (32, 48, 3) and np.abs(got.astype(int) - _pattern()).mean() < 3  # shown as stored


def test_every_pixel_format_comes_out_as_eight_bit_rgb(tmp_path):
    """16-bit and grey PNGs, palette and alpha images: uint8 RGB (H, W, 3), writable; 16 bits scaled, not clipped."""
    from PIL import Image

    ramp = np.linspace(0, 65535, 48, dtype=np.uint16)[None, :].repeat(32, axis=0)
    assert cv2.imwrite(str(tmp_path / "grey16.png"), ramp)
    got = read_image(tmp_path / "grey16.png")
    assert got.shape == (32, 48, 3) and got.dtype == np.uint8 and got.flags.writeable
    assert np.abs(got[..., 0].astype(int) - np.round(ramp / 257)).max() <= 1 and got[0, -1, 0] == 255
    rgb16 = (_pattern().astype(np.uint16) * 257)[..., ::-1]
    assert cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16)
    assert np.abs(read_image(tmp_path / "rgb16.png").astype(int) - _pattern()).max() <= 1
    Image.fromarray(_pattern()).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.dstack([_pattern(), np.full((32, 48), 7, np.uint8)])).save(tmp_path / "alpha.png")
    Image.fromarray(_pattern()[..., 1]).save(tmp_path / "grey.jpg", quality=98)
    for name in ("palette.png", "alpha.png", "grey.jpg"):
        got = read_image(tmp_path / name)
        assert got.shape == (32, 48, 3) and got.dtype == np.uint8, name
    assert np.array_equal(read_image(tmp_path / "alpha.png"), _pattern())  # the alpha channel is dropped


def test_a_truncated_or_bomb_sized_image_is_one_input_error(tmp_path, monkeypatch):
    from PIL import Image

    whole = _jpeg_with_exif(tmp_path / "whole.jpg", _pattern(), 1).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg is not a readable image"):
        read_image(tmp_path / "cut.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 32 * 48 // 4)  # Pillow's limit, made small
    with pytest.raises(InputError, match=r"whole\.jpg is too large to read .*decompression bomb"):
        read_image(tmp_path / "whole.jpg")


# -- the colour matrix ----------------------------------------------------------------------------------------------
_SATURATED = ((230, 30, 30), (30, 200, 30), (30, 30, 220), (220, 40, 200))


def _quadrants(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    for k, colour in enumerate(_SATURATED):
        img[(k // 2) * h // 2 : (k // 2 + 1) * h // 2, (k % 2) * w // 2 : (k % 2 + 1) * w // 2] = colour
    return img


def _colour_clip(path: Path, size: tuple[int, int], matrix: str, tag: str | None) -> Path:
    """Two frames of four flat saturated quadrants, turned into YUV with ``matrix`` and tagged ``tag`` (None: no
    colour tags at all, as many cameras and editors write)."""
    w, h = size
    trc = {None: "unknown", "bt709": "bt709", "bt470bg": "smpte170m"}[tag]
    tags = f"colorspace={tag or 'unknown'}:color_primaries={tag or 'unknown'}:color_trc={trc}"
    _ff("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", "10", "-i", "pipe:0",
        "-vf", f"scale=out_color_matrix={matrix}:out_range=tv,format=yuv420p,setparams={tags}",
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", f"file:{path}", data=_quadrants(size).tobytes() * 2)
    return path


@pytest.mark.parametrize("size, matrix, tag", [
    ((1280, 720), "bt709", None),  # untagged HD: players take it as BT.709
    ((1280, 536), "bt709", None),  # untagged, HD by its width (a 2.39:1 film)
    ((960, 720), "bt709", None),  # untagged, HD by its height (4:3)
    ((640, 480), "bt601", None),  # untagged SD: BT.601
    ((1280, 720), "bt601", "bt470bg"),  # tagged: as tagged, whatever the size
    ((640, 360), "bt709", "bt709"),
])  # fmt: skip
def test_colours_decode_with_the_matrix_the_clip_was_made_with(tmp_path, size, matrix, tag):
    """An untagged HD clip is BT.709 (as ffmpeg's players and browsers take it), an untagged SD one BT.601, a
    tagged one as tagged: the saturated colours come back within a few levels (BT.601 read as BT.709, or the
    other way round, is off by 10-30 levels in these colours)."""
    clip = _colour_clip(tmp_path / "colours.mp4", size, matrix, tag)
    w, h = size
    (frame,) = list(iter_frames(clip, count=1, size=(w // 8, h // 8)))
    got = [frame[(k // 2) * h // 16 + h // 32, (k % 2) * w // 16 + w // 32].tolist() for k in range(4)]
    assert np.abs(np.array(got) - _SATURATED).max() <= 3, got
    assert probe(clip).color_matrix == (tag or "")


# -- 10-bit and HDR -------------------------------------------------------------------------------------------------
def _texture_clip(path: Path, *args: str, n: int = 3) -> Path:
    """``n`` frames of the test texture (uint8 RGB) through ffmpeg with the given output arguments."""
    frames = b"".join(clip_frame(i, (48, 32)).tobytes() for i in range(n))
    _ff("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x32", "-framerate", "10", "-i", "pipe:0", *args, f"file:{path}",
        data=frames)  # fmt: skip
    return path


@pytest.mark.parametrize("suffix,codec", [
    (".mp4", ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p10le")),
    (".mkv", ("-c:v", "ffv1", "-pix_fmt", "yuv444p10le")),
])  # fmt: skip
def test_ten_bit_clip_decodes_to_eight_bit_rgb(tmp_path, suffix, codec):
    clip = _texture_clip(tmp_path / f"ten{suffix}", *codec)
    frames = list(iter_frames(clip))
    assert len(frames) == 3 and frames[0].dtype == np.uint8 and frames[0].shape == (32, 48, 3)
    assert np.abs(frames[1].astype(int) - clip_frame(1, (48, 32))).mean() < 4
    info = probe(clip)
    assert "10" in info.pixel_format and not info.hdr


def _hdr_clip(path: Path) -> Path:
    """The texture as HDR10 would carry it: PQ transfer, BT.2020 primaries and matrix, 10-bit; SDR white at 203 nits."""
    if not decode_mod._has_filter("zscale"):
        pytest.skip("this ffmpeg has no zscale filter to make an HDR clip")
    return _texture_clip(
        path, "-vf", "format=gbrp,zscale=tin=bt709:pin=bt709:t=smpte2084:p=bt2020:m=bt2020nc:npl=203,format=yuv444p10le",
        "-c:v", "ffv1", "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
    )  # fmt: skip


def test_hdr_clip_is_tone_mapped(tmp_path):
    """Decoded as it is, PQ looks washed out (the old decoder: mean error ~48 levels); tone-mapped, it is close."""
    clip = _hdr_clip(tmp_path / "hdr.mkv")
    warnings: list[str] = []
    frames = list(iter_frames(clip, on_warning=warnings.append))
    ref = clip_frame(1, (48, 32)).astype(float)
    got = frames[1].astype(float)
    assert np.abs(got - ref).mean() < 20
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.95
    assert got.std() > 0.8 * ref.std()  # contrast kept, not washed out
    assert len(warnings) == 1 and "tone-mapped" in warnings[0] and "\n" not in warnings[0]
    info = probe(clip)
    assert info.hdr and info.color_transfer == "smpte2084"


def test_hdr_clip_without_zscale_is_warned(tmp_path, monkeypatch):
    clip = _hdr_clip(tmp_path / "hdr.mkv")
    monkeypatch.setattr(decode_mod, "_has_filter", lambda name: False)  # an ffmpeg build without zscale
    warnings: list[str] = []
    frames = list(iter_frames(clip, on_warning=warnings.append))
    assert len(frames) == 3 and frames[0].dtype == np.uint8
    assert len(warnings) == 1 and "washed out" in warnings[0]


# -- odd file names ---------------------------------------------------------------------------------------------------
ODD_NAMES = ["take:2.mp4", "-lead.mp4", "two  spaces.mp4", "it's \"quoted\".mp4", "br[x] #1 %d.mp4", "caf\u00e9 \u6620\u50cf.mp4"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_file_names_decode(tmp_path, name, monkeypatch):
    """ffmpeg reads ``take:`` as a protocol and ``-lead`` as an option unless the path says ``file:``."""
    monkeypatch.chdir(tmp_path)  # a relative name, as typed: nothing before the colon or the dash
    src = _grey_clip(tmp_path / "plain.mp4", 6, audio=0.2)
    Path(name).write_bytes(src.read_bytes())
    info = probe(name)
    assert info.frame_count == 6 and info.has_audio
    assert [_index(f) for f in iter_frames(name, info=info)] == list(range(6))
    assert [_index(f) for f in iter_frames(name)] == list(range(6))


def test_bad_input_is_one_line(tmp_path):
    song = make_song(tmp_path / "s.wav", 0.3)
    for path in (song, tmp_path / "x.mp4"):
        if path.suffix == ".mp4":
            path.write_bytes(b"\x00" * 5000)
        with pytest.raises(VideoError) as err:
            probe(path)
        assert "\n" not in str(err.value)


# -- containers and clean-up ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix,codec", [
    (".ts", ("-c:v", "libx264", "-preset", "ultrafast", "-qp", "0")),  # starts at 1.4 s on its own clock
    (".mpg", ("-c:v", "mpeg2video", "-q:v", "2")),  # only some packets carry a presentation time
    (".avi", ("-c:v", "mpeg4", "-q:v", "2")),
    (".mov", ("-c:v", "prores")),
])  # fmt: skip
def test_other_containers_decode_every_frame_in_place(tmp_path, suffix, codec):
    clip = _grey_clip(tmp_path / f"clip{suffix}", 30, rate="25", codec=codec)
    listing = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", f"file:{clip}"], capture_output=True, check=False)
    if listing.returncode < 0:
        pytest.skip(f"this ffmpeg build crashes reading {suffix} (johnvansickle's static 4.2 and 7.0 do on MPEG-TS)")
    info = probe(clip)
    assert (info.fps, info.frame_count, info.variable_rate) == (25.0, 30, False)
    assert [_index(f) for f in iter_frames(clip, info=info)] == list(range(30))


def _children() -> set[int]:
    pids = set()
    for task in Path("/proc/self/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_stopping_early_ends_ffmpeg(tmp_path):
    """A consumer that stops after one frame leaves no ffmpeg behind (the generator's close kills it)."""
    clip = _grey_clip(tmp_path / "clip.mp4", 40)
    before = _children()
    frames = iter_frames(clip)
    next(frames)
    assert _children() - before  # ffmpeg is running
    frames.close()
    assert _children() == before


def test_last_frame_without_a_duration_is_shown(tmp_path):
    """WebM (browser recordings) gives the last frame no duration; ffmpeg's fps filter alone would never show it."""
    times = [i * 0.1 for i in range(10)] + [1.5]  # a pause before the last frame
    clip = _grey_clip(tmp_path / "rec.webm", len(times), setpts="if(lt(N,10),N*0.1,1.5)",
                      codec=("-c:v", "libvpx", "-b:v", "300k"))  # fmt: skip
    info = probe(clip)
    warnings: list[str] = []
    shown = [_index(f) for f in iter_frames(clip, info=info, on_warning=warnings.append)]
    assert warnings == [] and len(shown) == info.frame_count
    assert shown[-1] == 10 and shown.count(10) == info.frame_count - round(1.5 * info.fps)
    for k, i in enumerate(shown):
        assert i in _on_screen(times, k / info.fps, 0.5 / info.fps), f"frame {k}"
