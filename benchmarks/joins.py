"""Segment joins on a still shot (issue 19): how much the picture changes across a join, against its other frames.

    python benchmarks/joins.py                          # a real dream of a still shot (renders it once, ~4 min)
    python benchmarks/joins.py --clip still.mp4         # frames of any clip (e.g. a render made with --crf 0)
    python benchmarks/joins.py --synthetic              # dense texture over a photo, held still: no model
    python benchmarks/joins.py --speed                  # also: x264 and the one encode at 1920x1080
    python benchmarks/joins.py --gallery docs/gallery/join-before-after.png

A render encodes its frames in segments of 48, each its own x264 encode starting on a keyframe, and joins them.
The frames of a still shot are encoded in 48-frame segments by each candidate, joined, decoded back, and measured:

- ``join``: the largest mean |change| (grey levels, RGB averaged) between the last frame of a segment and the
  first of the next; ``frame after``: the same one pair later (where a join can leak to);
  ``p99`` / ``max``: the 99th percentile and the largest over every other pair of frames; ``join <= p99``: both;
- ``out kB``: the output's size; ``work kB``: what the segments take in the work folder before the publish;
- ``error``: mean |output - source| in YUV 4:2:0 (the source as 4:2:0 holds it), over all frames;
- ``s``: wall seconds of the whole encode (segments, join, any final encode) on this machine.

Without ``--clip`` or ``--synthetic`` it makes a still clip (``examples/coffee.png`` repeated with Gaussian noise of sigma 1.5,
x264 crf 18) and renders it with ``dreamvid render --react 0 --crf 0`` (lossless, the dream's own frames), using
``$DREAMVID_WEIGHTS``. The result is kept in ``--work`` and reused.

Candidates: see :func:`candidates`. ``carry`` is the rejected one that needed code here: each segment's first frame
takes the previous segment's last decoded frame (in YUV, exactly) on its still 16x16 blocks, and is encoded at
QP 0 (x264 ``zones``), so the keyframe repeats what was on screen. It hides the join itself, but x264's first
P-frames after it (given a low QP by mb-tree, because the whole segment refers to them) then pull the picture back
to the source: the change moves one frame later.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dreamvid.video import FrameWriter, concat, iter_frames
from dreamvid.video.decode import ffmpeg_exe
from dreamvid.video.encode import _BT709, piece_crf

SEG = 48  # pipeline.RenderOptions.segment_frames
FPS = 24


# ---- sources ---------------------------------------------------------------------------------------------------------
def _photo(size: tuple[int, int]) -> np.ndarray:
    bgr = cv2.imread(str(ROOT / "examples" / "coffee.png"), cv2.IMREAD_COLOR)
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)


def synthetic_still(size: tuple[int, int], n: int, *, noise: float = 0.5, seed: int = 0) -> list[np.ndarray]:
    """The photo with dense swirling texture over it (periods of 3-10 px, mostly in luma), held still; each frame
    gets Gaussian noise of ``noise`` grey levels (a dream that holds nearly, not exactly)."""
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    tex = np.zeros((h, w, 3), np.float32)
    for channel in (0, 1, 2, None, None, None):
        for _ in range(3):
            f, a = rng.uniform(0.6, 1.8), rng.uniform(0, np.pi)
            swirl = 3 * np.sin(0.11 * x + rng.uniform(0, 6)) * np.cos(0.13 * y)
            wave = np.sin(f * (np.cos(a) * x + np.sin(a) * y) + swirl + rng.uniform(0, 6))
            if channel is None:
                tex += wave[..., None]
            else:
                tex[..., channel] += 0.5 * wave
    base = 0.55 * _photo(size).astype(np.float32) + 12 * tex + 50
    return [np.clip(base + rng.normal(0, noise, base.shape), 0, 255).round().astype(np.uint8) for _ in range(n)]


def dream_still(work: Path, *, max_side: int, n: int) -> Path:
    """A real dream of a still shot, lossless: the clip rendered once with the product's CLI and kept in ``work``."""
    out = work / f"dream-still-{max_side}-{n}.mp4"
    if out.is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    clip = work / f"still-{max_side}-{n}.mp4"
    w = max_side
    h = round(w * 400 / 600 / 2) * 2  # coffee.png is 600x400
    photo = _photo((w, h)).astype(np.float32)
    rng = np.random.default_rng(0)
    with FrameWriter(clip, fps=FPS, size=(w, h), crf=18, overwrite=True) as writer:
        for _ in range(n):
            writer.write(np.clip(photo + rng.normal(0, 1.5, photo.shape), 0, 255).round().astype(np.uint8))
    subprocess.run([sys.executable, "-m", "dreamvid.cli", "render", str(clip), "-o", str(out), "--react", "0",
                    "--crf", "0", "--x264-preset", "ultrafast", "--overwrite", "-q"], check=True, cwd=ROOT)  # fmt: skip
    return out


# ---- encoders ----------------------------------------------------------------------------------------------------
def _x264(frames, path: Path, *, crf: int, preset: str, params: str = "", tune: str = "", yuv: bool = False) -> Path:
    """One x264 encode with FrameWriter's settings plus ``-x264-params``; ``yuv``: frames are 4:2:0 plane triples."""
    h, w = (frames[0][0] if yuv else frames[0]).shape[:2]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
           "-pix_fmt", "yuv420p" if yuv else "rgb24", "-s", f"{w}x{h}", "-framerate", str(FPS), "-i", "pipe:0",
           *(["-vf", _BT709[1].split(",", 2)[-1], *_BT709[2:]] if yuv else _BT709),
           "-c:v", "libx264", "-preset", preset, "-crf", str(crf), *(["-x264-params", params] if params else []),
           *(["-tune", tune] if tune else []),
           "-pix_fmt", "yuv420p", str(path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        for plane in f if yuv else (f,):
            proc.stdin.write(np.ascontiguousarray(plane).data)
    proc.stdin.close()
    if proc.wait():
        raise SystemExit(f"ffmpeg failed on {path}")
    return path


def _segments(frames, folder: Path, seg: int, encode) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [encode(frames[s : s + seg], folder / f"seg_{s // seg:06d}.mp4", s // seg) for s in range(0, len(frames), seg)]


def today(frames, folder, crf, preset, *, seg=SEG, params="", tune=""):
    """Segments at the output's crf, joined by copying packets (what dreamvid did)."""
    segs = _segments(frames, folder, seg,
                     lambda fr, p, i: _x264(fr, p, crf=crf, preset=preset, params=params, tune=tune))
    return concat(segs, folder / "out.mp4"), segs


def one_encode_only(frames, folder, crf, preset):
    """All frames in one x264 encode: what the joins should look like (not resumable)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = _x264(frames, folder / "out.mp4", crf=crf, preset=preset)
    return out, [out]


def pieces(frames, folder, crf, preset, *, piece=None):
    """The cure: FrameWriter(piece=True) segments, then concat(crf=...): one encode at publish. ``piece``: write the
    segments at this crf instead of :func:`piece_crf`'s (to see the margin)."""
    def write(fr, path, _):
        if piece is None:
            with FrameWriter(path, fps=FPS, size=(fr[0].shape[1], fr[0].shape[0]), crf=crf, preset=preset,
                             piece=True) as writer:  # fmt: skip
                for f in fr:
                    writer.write(f)
            return path
        return _x264(fr, path, crf=piece, preset=preset)

    segs = _segments(frames, folder, SEG, write)
    return concat(segs, folder / "out.mp4", crf=crf, preset=preset), segs


def rgb_to_yuv420(rgb: np.ndarray) -> list[np.ndarray]:
    """BT.709 limited range, chroma averaged over 2x2 (luma within 0.01 of ffmpeg's own conversion)."""
    f = rgb.astype(np.float32)
    y = 0.2126 * f[..., 0] + 0.7152 * f[..., 1] + 0.0722 * f[..., 2]
    h, w = y.shape
    cb = ((f[..., 2] - y) / 1.8556).reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = ((f[..., 0] - y) / 1.5748).reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    planes = (16 + y * 219 / 255, 128 + cb * 224 / 255, 128 + cr * 224 / 255)
    return [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes]


def decode_yuv(path: Path) -> list[list[np.ndarray]]:
    raw = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "pipe:1"], capture_output=True, check=True).stdout  # fmt: skip
    h, w = next(iter_frames(path)).shape[:2]
    n, q = w * h, w * h // 4
    frames = []
    for k in range(len(raw) // (n + 2 * q)):
        a = np.frombuffer(raw, np.uint8, n + 2 * q, k * (n + 2 * q))
        frames.append([a[:n].reshape(h, w), a[n : n + q].reshape(h // 2, w // 2), a[n + q :].reshape(h // 2, w // 2)])
    return frames


def carry(frames, folder, crf, preset, *, tau=3.0, qp=0):
    """Each segment's keyframe repeats the previous segment's last decoded frame on still blocks (see the doc)."""
    yuv = [rgb_to_yuv420(f) for f in frames]

    def write(fr, path, i):
        if i == 0:
            return _x264(fr, path, crf=crf, preset=preset, yuv=True)
        prev = decode_yuv(folder / f"seg_{i - 1:06d}.mp4")[-1]
        first = [p.astype(np.int16) for p in fr[0]]
        still = None
        for plane, before, block in zip(first, prev, (16, 8, 8), strict=True):
            d = np.abs(plane - before)
            H, W = -(-d.shape[0] // block), -(-d.shape[1] // block)
            pad = np.zeros((H * block, W * block), np.float32)
            pad[: d.shape[0], : d.shape[1]] = d
            m = pad.reshape(H, block, W, block).mean(axis=(1, 3)) < tau  # border blocks: padded with zeros
            still = m if still is None else still & m
        out = []
        for plane, before, block in zip(first, prev, (16, 8, 8), strict=True):
            m = np.kron(still, np.ones((block, block), bool))[: plane.shape[0], : plane.shape[1]]
            out.append(np.where(m, before, plane).astype(np.uint8))
        return _x264([out, *fr[1:]], path, crf=crf, preset=preset, params=f"zones=0,0,q={qp}", yuv=True)

    segs = _segments(yuv, folder, SEG, write)
    return concat(segs, folder / "out.mp4"), segs


def candidates(crf: int) -> dict[str, tuple[object, int]]:
    """name -> (encode(frames, folder, crf, preset) -> (output, files in the work folder), segment length)."""
    p = piece_crf(crf)
    return {
        "today: segments copied": (today, SEG),
        "one encode, no segments (the aim; not resumable)": (one_encode_only, SEG),
        "crf 0 segments copied (lossless)": (lambda f, d, c, s: today(f, d, 0, s), SEG),
        "x264 ipratio=4 (a finer keyframe)": (lambda f, d, c, s: today(f, d, c, s, params="ipratio=4"), SEG),
        "x264 zones=0,0,q=4 (a finer keyframe)": (lambda f, d, c, s: today(f, d, c, s, params="zones=0,0,q=4"), SEG),
        "-tune grain": (lambda f, d, c, s: today(f, d, c, s, tune="grain"), SEG),
        "mbtree=0": (lambda f, d, c, s: today(f, d, c, s, params="mbtree=0"), SEG),
        "no-deblock, aq-mode=2": (lambda f, d, c, s: today(f, d, c, s, params="no-deblock=1:aq-mode=2"), SEG),
        "segments of 96": (lambda f, d, c, s: today(f, d, c, s, seg=96), 96),
        "carry: keyframe repeats the last frame, QP 0": (carry, SEG),
        "pieces at crf 6 + one encode at publish": (lambda f, d, c, s: pieces(f, d, c, s, piece=6), SEG),
        "pieces at crf 2 + one encode at publish": (lambda f, d, c, s: pieces(f, d, c, s, piece=2), SEG),
        f"lossless pieces (crf {p}, piece=True) + one encode at publish": (pieces, SEG),
    }


# ---- measures ----------------------------------------------------------------------------------------------------
def measure(path: Path, source_yuv, seg: int = SEG) -> dict:
    frames = [f.astype(np.int16) for f in iter_frames(path)]
    d = np.array([np.abs(b - a).mean() for a, b in itertools.pairwise(frames)])
    at = np.arange(1, len(d) + 1) % seg == 0
    dec = decode_yuv(path)
    err = np.mean([np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(x, y, strict=True)])
                   for x, y in zip(dec, source_yuv, strict=True)])  # fmt: skip
    after = np.flatnonzero(at) + 1
    return {"joins": d[at], "next": d[after[after < len(d)]], "p99": np.percentile(d[~at], 99), "max": d[~at].max(),
            "kb": path.stat().st_size / 1024, "err": err}


def gallery(frames, out: Path, crf: int, preset: str, work: Path) -> None:
    """The frame after the first join, then |that frame - the one before| x 16 before (copied) and after the cure."""
    panels, labels = [], []
    for name, fn in (("before", today), ("after", pieces)):
        joined, _ = fn(frames[: 2 * SEG], work / f"gallery-{name}", crf, preset)
        dec = list(iter_frames(joined))
        change = np.abs(dec[SEG].astype(np.int16) - dec[SEG - 1]).mean(axis=2)
        if not panels:
            panels.append(dec[SEG])
            labels.append(f"frame {SEG}, crf {crf}")
        panels.append(np.repeat(np.clip(change * 16, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
        labels.append(f"{name}: |{SEG} - {SEG - 1}| x16, mean {change.mean():.2f}")
    bars = []
    for panel, label in zip(panels, labels, strict=True):
        bar = np.full((20, panel.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        bars.append(np.vstack([bar, panel]))
    gap = np.full((bars[0].shape[0], 4, 3), 255, np.uint8)
    img = np.hstack([bars[0], gap, bars[1], gap, bars[2]])
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out} ({out.stat().st_size // 1024} kB)")


def speed(work: Path, preset: str, n: int = 48) -> None:
    """x264 at 1920x1080 on dense moving texture: frames/s of each encode, and the pieces' size per frame."""
    base = synthetic_still((2048, 1080), 1, noise=0)[0].astype(np.float32)
    rng = np.random.default_rng(1)
    frames = []
    for k in range(n):  # a pan of 0.7 px a frame with sensor noise: every block changes
        f = cv2.warpAffine(base, np.float32([[1, 0, -0.7 * k], [0, 1, 0]]), (1920, 1080), flags=cv2.INTER_CUBIC)
        frames.append(np.clip(f + rng.normal(0, 1, f.shape), 0, 255).round().astype(np.uint8))
    print(f"\nx264 at 1920x1080, {n} frames of dense texture panning 0.7 px a frame ({preset} unless named):\n")
    print("| encode | frames/s | kB per frame |\n|---|---|---|")
    for name, crf, pre, piece in (("output, crf 18", 18, preset, False), ("output, crf 18, veryfast", 18, "veryfast", False),
                                  ("piece of crf 18 (lossless)", 18, preset, True),
                                  ("piece of crf 18 (lossless), veryfast", 18, "veryfast", True),
                                  ("lossless (crf 0), ultrafast", 0, "ultrafast", False)):
        path = work / "speed.mp4"
        t = time.perf_counter()
        with FrameWriter(path, fps=FPS, size=(1920, 1080), crf=crf, preset=pre, piece=piece, overwrite=True) as w:
            for f in frames:
                w.write(f)
        dt = time.perf_counter() - t
        print(f"| {name} | {n / dt:.1f} | {path.stat().st_size / n / 1024:.0f} |")
        if piece and pre == preset:
            t = time.perf_counter()
            concat([path], work / "speed-out.mp4", crf=crf, preset=preset, overwrite=True)
            dt = time.perf_counter() - t
            print(f"| the one encode at publish (decode the piece, crf 18) | {n / dt:.1f} | "
                  f"{(work / 'speed-out.mp4').stat().st_size / n / 1024:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip", type=Path, help="measure on this clip's frames (a lossless render is best)")
    ap.add_argument("--synthetic", action="store_true", help="dense texture over a photo, held still (no model)")
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--crf", type=int, nargs="+", default=[18])
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--only", help="run only the candidates whose name contains this text")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dreamvid-joins")
    ap.add_argument("--speed", action="store_true", help="also time x264 at 1920x1080")
    ap.add_argument("--gallery", type=Path, help="write the before/after join image here")
    args = ap.parse_args()

    if args.synthetic:
        w = args.max_side
        frames = synthetic_still((w, round(w * 2 / 3 / 2) * 2), args.frames)
        what = f"synthetic still {frames[0].shape[1]}x{frames[0].shape[0]}"
    else:
        clip = args.clip or dream_still(args.work, max_side=args.max_side, n=args.frames)
        frames = list(iter_frames(clip, count=args.frames))
        what = f"{clip.name} {frames[0].shape[1]}x{frames[0].shape[0]}"
    src_change = [np.abs(b.astype(np.int16) - a).mean() for a, b in itertools.pairwise(frames)]
    print(f"{what}, {len(frames)} frames, segments of {SEG}, x264 {args.preset}; the source changes by "
          f"{np.median(src_change):.2f} a frame (median), {max(src_change):.2f} at most\n")
    lossless = args.work / "lossless"
    lossless.mkdir(parents=True, exist_ok=True)
    source_yuv = decode_yuv(_x264(frames, lossless / "source.mp4", crf=0, preset="ultrafast"))

    for crf in args.crf:
        print(f"crf {crf}\n\n| candidate | join | frame after | others p99 / max | join <= p99 | out kB | work kB | "
              "error | s |\n|---|---|---|---|---|---|---|---|---|")
        for name, (fn, seg) in candidates(crf).items():
            if args.only and args.only not in name:
                continue
            folder = args.work / f"crf{crf}" / "".join(c if c.isalnum() else "-" for c in name)[:48]
            shutil.rmtree(folder, ignore_errors=True)
            t = time.perf_counter()
            out, segs = fn(frames, folder, crf, args.preset)
            dt = time.perf_counter() - t
            m = measure(out, source_yuv, seg)
            if len(m["joins"]):
                joins, after = m["joins"].max(), m["next"].max()
                ok = "yes" if joins <= m["p99"] and after <= m["p99"] else "no"
            else:
                joins = after = float("nan")
                ok = "-"
            work_kb = sum(p.stat().st_size for p in segs) / 1024
            print(f"| {name} | {joins:.2f} | {after:.2f} | {m['p99']:.2f} / {m['max']:.2f} | {ok} | {m['kb']:.0f} | "
                  f"{work_kb:.0f} | {m['err']:.2f} | {dt:.1f} |", flush=True)
        print()
    if args.gallery:
        gallery(frames, args.gallery, args.crf[0], args.preset, args.work)
    if args.speed:
        speed(args.work, args.preset)


if __name__ == "__main__":
    main()
