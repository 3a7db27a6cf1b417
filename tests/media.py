"""Small synthetic media for tests: clips of moving shapes on a texture, and songs.

Everything is generated, deterministic and tiny, so tests stay fast and need no files in the repo::

    from tests.media import make_clip, make_song, clip_frame
    clip = make_clip(tmp_path / "in.mp4", n=24, size=(96, 64), fps=24.0, cut_at=12, audio=True)
    song = make_song(tmp_path / "song.wav", 2.0, kind="beats")
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from dreamvid.video.decode import ffmpeg_exe
from dreamvid.video.encode import FrameWriter


def texture(size: tuple[int, int], *, seed: int = 0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Smooth coloured texture, uint8 RGB of shape (h, w, 3), translated by ``shift=(dx, dy)`` pixels.

    The texture is defined on an infinite plane (a sum of sines with random frequencies), so shifted
    versions are exact translations with real content entering at the borders.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x = x - shift[0]
    y = y - shift[1]
    out = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(6):
            fx, fy = rng.uniform(-0.25, 0.25, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            out[..., c] += np.sin(fx * x + fy * y + phase)
    out = 128 + 100 * out / 6 * 2
    return np.clip(out, 0, 255).astype(np.uint8)


def clip_frame(i: int, size: tuple[int, int] = (96, 64), *, cut_at: int | None = None) -> np.ndarray:
    """Frame ``i`` of the clip :func:`make_clip` writes, uint8 RGB (h, w, 3).

    Before the cut: a texture panning 1 px/frame to the right, a white disc moving right 2 px/frame
    and a dark square moving down 1 px/frame. From ``cut_at`` on: another texture and shapes.
    """
    w, h = size
    scene = 1 if cut_at is not None and i >= cut_at else 0
    t = i - (cut_at if scene else 0)
    frame = texture(size, seed=10 + scene, shift=(float(t), 0.0))
    if scene == 0:
        cv2.circle(frame, (int(w * 0.2) + 2 * t, h // 2), max(3, h // 6), (250, 250, 250), -1)
        s = max(3, h // 8)
        cv2.rectangle(frame, (int(w * 0.7), 4 + t), (int(w * 0.7) + s, 4 + t + s), (20, 20, 60), -1)
    else:
        cv2.circle(frame, (w - int(w * 0.2) - 2 * t, h // 3), max(3, h // 5), (240, 30, 30), -1)
    return frame


def make_clip(
    path: str | Path,
    n: int = 24,
    size: tuple[int, int] = (96, 64),
    fps: float = 24.0,
    cut_at: int | None = None,
    audio: bool = False,
) -> Path:
    """Write ``n`` frames of :func:`clip_frame` to an H.264 MP4 and return its path.

    ``size`` is (width, height), both even. With ``audio=True`` a 440 Hz tone as long as the clip is
    muxed in as AAC.
    """
    path = Path(path)
    target = path.with_name(path.stem + ".noaudio" + path.suffix) if audio else path
    with FrameWriter(target, fps=fps, size=size, crf=12, preset="ultrafast", overwrite=True) as writer:
        for i in range(n):
            writer.write(clip_frame(i, size, cut_at=cut_at))
    if audio:
        with tempfile.TemporaryDirectory() as tmp:
            wav = make_song(Path(tmp) / "tone.wav", n / fps, kind="tone")
            subprocess.run(
                [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(target),
                 "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(path)],
                check=True,
            )  # fmt: skip
        target.unlink()
    return path


def make_song(path: str | Path, seconds: float, sr: int = 22050, kind: str = "beats") -> Path:
    """Write a mono 16-bit WAV of ``seconds`` seconds and return its path.

    kind : ``"tone"`` (440 Hz sine), ``"beats"`` (a decaying 880 Hz click every 0.5 s, i.e. 120 BPM,
    on a quiet 110 Hz hum), ``"noise"`` (white noise) or ``"silence"``.
    """
    path = Path(path)
    t = np.arange(int(round(seconds * sr))) / sr
    if kind == "tone":
        y = 0.5 * np.sin(2 * np.pi * 440 * t)
    elif kind == "beats":
        phase = t % 0.5
        y = 0.8 * np.exp(-phase * 30) * np.sin(2 * np.pi * 880 * t) + 0.05 * np.sin(2 * np.pi * 110 * t)
    elif kind == "noise":
        y = 0.3 * np.random.default_rng(0).standard_normal(t.size)
    elif kind == "silence":
        y = np.zeros_like(t)
    else:
        raise ValueError(f"unknown song kind {kind!r}")
    sf.write(str(path), y.astype(np.float32), sr, subtype="PCM_16")
    return path
