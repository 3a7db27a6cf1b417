"""Temporal coherence against the music, on footage with real motion and on still shots: one table per run.

    python benchmarks/coherence.py                                   # the bundled clip, lysergic, 320 px
    python benchmarks/coherence.py --clip examples/bigbuckbunny.mp4 --clip pan:examples/coffee.png \\
        --clip still:examples/coffee.png --clip slowpan:examples/coffee.png@0.5,0.1 --clip street.avi@30 \\
        --song track.mp3 --song-start 60 --max-side 320 --frames 50 --react 0

For each clip and each mode it renders with ``dreamvid.pipeline.render`` (the product's own loop, in process,
one model for every run) and then measures the result *independently* of the render's report, from the decoded
output file and the decoded source, with the report's own measures (``dreamvid.metrics``: DIS flow on the source
at the render's size, never the flow that carried the dream):

- ``stability``: the standard warping error of the output over the source's (``temporal_stability``),
- ``glued`` (``still:`` and ``slowpan:`` clips): the output's warping error along the clip's *true* motion over the
  source's, with no flow estimate in the way (a dream that slides over the footage, or swims, scores high),
- ``still``: the output's mean change a frame on still pixels, grey levels (``still_change``; the footage's own in
  brackets),
- ``moving``: the warping-error ratio on pixels that move 1 px a frame or more (``moving_stability``),
- ``join``: the output's mean change on still pixels across the segment joins (every ``--segment-frames``-th frame,
  where the render starts a new H.264 segment), grey levels, and in brackets the same across the other pairs of
  frames (a join that does not show changes no more than they do),
- ``strength``: mean |output − source| (grey levels),
- ``gain``: the objective of mixed3+mixed5 (sum of the layers' mean activations) on the output over the same on
  the source, averaged over every 5th frame (a smear or a blur keeps strength and stability but loses gain),
- ``detail``: the delta's fine detail, the mean |Laplacian| of output − source (a smear lowers it),
- ``sync``: Pearson correlation of the song's raw RMS per video frame with each frame's strength,
- ``s/frame``: the dream stage's seconds per frame from the report.

Modes: ``perframe`` (every frame dreamed on its own, with the preset's governor), ``blend`` (the classic feedback
as dreamvid had it: warped previous dream blended into the start, fresh ascent, no governor), ``raw`` (the preset
carrying its dream along the raw one-frame DIS flow, ``motion_window = 0``: what dreamvid did before issue 19),
``anchor`` (the preset as it is), and for synthetic clips ``ideal``: the photos dreamed once as stills (at the
strength the anchor run reached) and moved along the same camera path, i.e. a dream glued perfectly to the
footage. Its stability is the floor of the measure on that clip (bilinear warping of fine detail, flow error,
H.264), not 1.0.

Clips: a video file (``PATH@SECONDS`` starts there), or synthetic camera moves over a real photo, where the true
motion is known: ``pan:PHOTO`` (a pan with a slow vertical drift), ``zoom:PHOTO`` (a push-in with a slight
rotation), ``object:BACKGROUND+FOREGROUND`` (a panning background with a disc cut from the foreground photo moving
across it: occlusions and disocclusions), ``still:PHOTO`` (a locked-off camera: the photo with fresh sensor noise
of σ 1.5 grey levels on every frame, x264 at crf 18) and ``slowpan:PHOTO@DX,DY`` (the same, panned DX, DY px a
frame with bicubic interpolation; default 0.5, 0.1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("perframe", "blend", "raw", "anchor", "ideal")
SYNTHETIC = ("pan", "zoom", "object", "still", "slowpan")
NOISE = 1.5  # grey levels of sensor noise on every frame of still: and slowpan: clips


def _photo(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read photo {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def synth_clip(spec: str, out: Path, *, size: tuple[int, int], frames: int, fps: float = 25.0,
               paint=None) -> Path:
    """Write a synthetic camera move over a photo (see the module doc) as a high-quality MP4.

    ``paint`` (uint8 image -> uint8 image), if given, is applied to the photos once, after scaling and before the
    camera moves over them: a still dream glued to the footage, the ideal that coherence aims at.
    """
    from dreamvid.video import FrameWriter

    kind, _, arg = spec.partition(":")
    w, h = size
    if kind in ("still", "slowpan"):
        return _camera_shot(kind, arg, out, size=size, frames=frames, fps=fps, paint=paint)
    if kind == "object":
        bg_path, fg_path = arg.split("+")
        bg, fg = _photo(bg_path), _photo(fg_path)
    else:
        bg, fg = _photo(arg), None
    # the photo scaled so the window has room to move: 1.35x the frame in both directions
    s = max(1.35 * w / bg.shape[1], 1.35 * h / bg.shape[0])
    bgs = cv2.resize(bg, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    H, W = bgs.shape[:2]
    r = min(w, h) * 0.3
    if paint is not None:
        bgs = paint(bgs)
    if fg is not None:
        fg = cv2.resize(fg, (int(2 * r), int(2 * r)), interpolation=cv2.INTER_AREA)
        if paint is not None:
            fg = paint(np.ascontiguousarray(fg))
        disc = np.zeros(fg.shape[:2], np.float32)
        cv2.circle(disc, (int(r), int(r)), int(r) - 2, 1.0, -1, cv2.LINE_AA)
        disc = cv2.GaussianBlur(disc, (5, 5), 0)[..., None]
    with FrameWriter(out, fps=fps, size=(w, h), crf=8, preset="fast", overwrite=True) as writer:
        for k in range(frames):
            a = k / max(1, frames - 1)
            if kind == "zoom":
                z = 1.0 + 0.3 * a
                m = cv2.getRotationMatrix2D((W / 2, H / 2), 4.0 * a, z)
                m[:, 2] -= [(W - w) / 2, (H - h) / 2]
            else:  # pan (and the object's background): left to right, with a slow vertical drift
                x0 = (W - w) * (0.1 + 0.8 * a)
                y0 = (H - h) * (0.5 + 0.3 * math.sin(2 * math.pi * a))
                m = np.float32([[1, 0, -x0], [0, 1, -y0]])
            frame = cv2.warpAffine(bgs, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            if fg is not None:  # the disc moves right to left and bobs, against the pan
                cx = w * (0.85 - 0.7 * a)
                cy = h * (0.5 + 0.2 * math.sin(4 * math.pi * a))
                mf = np.float32([[1, 0, cx - r], [0, 1, cy - r]])
                layer = cv2.warpAffine(fg, mf, (w, h), flags=cv2.INTER_CUBIC)
                alpha = cv2.warpAffine(disc, mf, (w, h), flags=cv2.INTER_LINEAR)[..., None]
                frame = (frame * (1 - alpha) + layer * alpha).astype(np.uint8)
            writer.write(frame)
    return out


def _camera_shot(kind: str, arg: str, out: Path, *, size, frames: int, fps: float, paint=None) -> Path:
    """A locked-off (``still``) or slowly panning (``slowpan``) camera over a photo, with fresh sensor noise on every
    frame (the same noise for the ideal, painted, version), encoded as a camera would (x264, crf 18)."""
    from dreamvid.video import FrameWriter

    path, _, speed = arg.partition("@")
    dx, dy = (float(v) for v in speed.split(",")) if speed else ((0.5, 0.1) if kind == "slowpan" else (0.0, 0.0))
    if kind == "still":
        dx = dy = 0.0
    w, h = size
    img = _photo(path)
    s = max(1.2 * w / img.shape[1], 1.2 * h / img.shape[0], (w + abs(dx) * frames + 8) / img.shape[1],
            (h + abs(dy) * frames + 8) / img.shape[0])
    big = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    if paint is not None:
        big = paint(big)
    big = big.astype(np.float32)
    x0 = 4 + (abs(dx) * frames if dx < 0 else 0.0)
    y0 = 4 + (abs(dy) * frames if dy < 0 else 0.0)
    rng = np.random.default_rng(19)
    with FrameWriter(out, fps=fps, size=(w, h), crf=18, preset="medium", overwrite=True) as writer:
        for k in range(frames):
            m = np.float32([[1, 0, -(x0 + dx * k)], [0, 1, -(y0 + dy * k)]])
            frame = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            frame += rng.normal(0.0, NOISE, frame.shape).astype(np.float32)
            writer.write(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
    return out


def cut_song(song: Path, start: float, seconds: float, out: Path) -> tuple[Path, np.ndarray, int]:
    import librosa
    import soundfile as sf

    y, sr = librosa.load(str(song), sr=22050, mono=True, offset=start, duration=seconds)
    sf.write(str(out), y, sr)
    return out, y, sr


def rms_per_frame(y: np.ndarray, sr: int, fps: float, n: int) -> np.ndarray:
    out = np.zeros(n)
    for k in range(n):
        a, b = int(k * sr / fps), int((k + 1) * sr / fps)
        seg = y[a:b]
        out[k] = math.sqrt(float(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0
    return out


def decode(path: Path, size: tuple[int, int] | None = None, *, first: int = 0,
           count: int | None = None) -> list[np.ndarray]:
    """Frames ``first .. first + count`` of a video at ``size``, decoded as the render decodes them."""
    from dreamvid.video import iter_frames

    return list(iter_frames(path, first=first, count=count, size=size))


def true_motion(spec: str) -> tuple[float, float] | None:
    """The backward flow of a ``still:`` or ``slowpan:`` clip, the same at every pixel: ``(dx, dy)``; else None."""
    kind, _, arg = spec.partition(":")
    if kind == "still":
        return (0.0, 0.0)
    if kind != "slowpan":
        return None
    speed = arg.partition("@")[2]
    dx, dy = (float(v) for v in speed.split(",")) if speed else (0.5, 0.1)
    return (dx, dy)  # frame k shows the photo at x0 + k·speed: pixel x was at x + speed in frame k − 1


def glue(src: list[np.ndarray], out: list[np.ndarray], motion: tuple[float, float], *, margin: int = 8) -> float:
    """The warping error of the output along the clip's *true* motion over the source's (interior pixels): how well
    the dream stays glued to the footage, with no flow estimate in the way."""
    from dreamvid.video import warp

    h, w = src[0].shape[:2]
    flow = np.zeros((h, w, 2), np.float32)
    flow[...] = motion
    inner = (slice(margin, -margin), slice(margin, -margin))

    def error(frames):
        return np.mean([np.abs(frames[k].astype(np.float32) - warp(frames[k - 1], flow))[inner].mean()
                        for k in range(1, min(len(src), len(out)))])

    return float(error(out) / error(src))


def measure(src: list[np.ndarray], out: list[np.ndarray], dreamer, rms: np.ndarray | None, *, segment: int,
            motion: tuple[float, float] | None = None, gain_every: int = 5):
    from dreamvid.config import DreamParams, parse_layers
    from dreamvid.metrics import GAIN_LAYERS, StabilityMeter, StrengthMeter, pair_maps, pearson

    n = min(len(src), len(out))
    stab, strength = StabilityMeter(), StrengthMeter()
    per_frame, joins, rest, detail = [], [], [], []
    gp = DreamParams(layers=parse_layers(GAIN_LAYERS))
    gains = []
    for k in range(n):
        per_frame.append(strength.update(src[k], out[k]))
        delta = out[k].astype(np.float32) - src[k].astype(np.float32)
        detail.append(float(np.mean(np.abs(cv2.Laplacian(delta, cv2.CV_32F)))))
        if k:
            maps = pair_maps(src[k - 1], src[k], out[k - 1], out[k])
            stab.add(maps)
            if maps.still.mean() > 0.05:  # the change on still pixels across this pair
                (joins if k % segment == 0 else rest).append(float(maps.out_change[maps.still].mean()))
        if k % gain_every == 0:
            gains.append(dreamer.objective_value(out[k], gp) / dreamer.objective_value(src[k], gp))
    sync = pearson(rms[:n], per_frame) if rms is not None else math.nan
    return {"stability": stab.value, "glue": glue(src, out, motion) if motion is not None else math.nan,
            "still": stab.still_change, "still_src": stab.still_change_source,
            "moving": stab.moving_value, "join": float(np.mean(joins)) if joins else math.nan,
            "rest": float(np.mean(rest)) if rest else math.nan,
            "strength": strength.value, "gain": float(np.mean(gains)), "detail": float(np.mean(detail)),
            "sync": sync, "per_frame_strength": per_frame,
            "still_per_pair": [round(v, 3) for v in rest]}


def strip(src: list[np.ndarray], outs: dict[str, list[np.ndarray]], path: Path, *, picks: int = 5,
          diff: Path | None = None, segment: int = 0) -> None:
    """One row of ``picks`` frames for the source and for each mode (JPEG), the shot's second frame (the first
    carried one) first and, where the clip crosses one, the first frame of the second segment (a join) last; with
    ``diff``, the same rows of each frame's change from the frame before, |frame k − frame k−1| × 8 (black: nothing
    changed)."""
    n = min([len(src)] + [len(o) for o in outs.values()])
    idx = np.linspace(1, n - 1, picks).round().astype(int)
    if 0 < segment < n:
        idx[-1] = segment

    def label(img: np.ndarray, text: str) -> np.ndarray:
        img = np.ascontiguousarray(img)
        cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return img

    rows = {"source": src, **outs}
    grid = [np.concatenate([label(frames[i].copy(), f"{name} {i}" if j == 0 else str(i))
                            for j, i in enumerate(idx)], axis=1) for name, frames in rows.items()]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(grid, axis=0), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 88])
    if diff is not None:
        grid = []
        for name, frames in rows.items():
            cells = []
            for j, i in enumerate(idx):
                d = np.abs(frames[i].astype(np.int16) - frames[i - 1]).mean(axis=2) * 8
                cell = np.repeat(np.clip(d, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
                cells.append(label(cell, f"{name} {i}-{i - 1}" if j == 0 else f"{i}-{i - 1}"))
            grid.append(np.concatenate(cells, axis=1))
        cv2.imwrite(str(diff), cv2.cvtColor(np.concatenate(grid, axis=0), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 88])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", action="append", help="video file (PATH@SECONDS to start there) or a pan:/zoom:/object:/"
                    "still:/slowpan: spec (repeatable)")
    ap.add_argument("--song", default=str(ROOT / "examples" / "groove.wav"))
    ap.add_argument("--song-start", type=float, default=0.0, help="seconds into the song where the section starts")
    ap.add_argument("--react", type=float, default=1.0, help="how strongly the dream follows the song (0: music off)")
    ap.add_argument("--preset", default="lysergic")
    ap.add_argument("--max-side", type=int, default=320)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--segment-frames", type=int, default=48, help="frames per H.264 segment (the render's default)")
    ap.add_argument("--crf", type=int, default=18, help="the renders' H.264 quality (18: the render's default)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. video.anchor=2 (repeatable)")
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS"))
    ap.add_argument("--strips", type=Path, help="folder for each clip's strip (source and every mode) and frame "
                    "difference image (JPEG)")
    ap.add_argument("--keep", type=Path, help="folder to keep the rendered videos in")
    ap.add_argument("--curves", type=Path, help="JSON file for each run's per-frame strength and the song's RMS")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from dreamvid import presets
    from dreamvid.config import merge, resolve
    from dreamvid.dream import Dreamer
    from dreamvid.pipeline import RenderOptions, render
    from dreamvid.video import output_size, probe

    clips = args.clip or [str(ROOT / "examples" / "bigbuckbunny.mp4")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    overrides: dict = {}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            parsed = load_toml_value(value)
        except Exception:
            parsed = value
        overrides = merge(overrides, {section: {name: parsed}})
    base = merge(presets.load(args.preset), overrides)
    mode_cfg = {
        "perframe": {"video": {"coherence": "none"}},
        "blend": {"video": {"coherence": "blend", "strength": 0.0}},
        "raw": {"video": {"coherence": "anchor", "motion_window": 0}},
        "anchor": {"video": {"coherence": "anchor"}},
    }
    dreamer = Dreamer(weights=args.weights)
    tmp = Path(tempfile.mkdtemp(prefix="dreamvid-coherence-"))
    if args.strips:
        args.strips.mkdir(parents=True, exist_ok=True)
    rows, curves, last_strength = [], {}, {}
    for ci, spec in enumerate(clips):
        start = 0.0
        if ":" in spec and spec.split(":", 1)[0] in SYNTHETIC:
            w = args.max_side
            size = (w - w % 2, int(round(w * 9 / 16)) // 2 * 2)
            path = synth_clip(spec, tmp / f"clip{ci}.mp4", size=size, frames=args.frames)
            name = spec.split(":")[0] + ":" + Path(spec.split(":", 1)[1].split("+")[0].split("@")[0]).stem
        else:
            file, _, at = spec.partition("@")
            path, name, start = Path(file), Path(file).stem + (f"@{at}" if at else ""), float(at or 0.0)
        info = probe(path)
        size = output_size(info.width, info.height, args.max_side)
        first = round(start * info.fps)
        n = min(args.frames, info.frame_count - first)
        src = decode(path, size, first=first, count=n)
        song, y, sr = cut_song(Path(args.song), args.song_start, n / info.fps + 0.5, tmp / f"song{ci}.wav")
        rms = rms_per_frame(y, sr, info.fps, n)
        synthetic = path.parent == tmp
        motion = true_motion(spec) if synthetic else None
        outs = {}
        for mode in modes:
            if mode == "ideal":
                if not synthetic:
                    continue
                config = resolve(base, preset=args.preset)
                target = last_strength.get(name) or config.video.strength or 18.0

                def paint(img, config=config, target=target):
                    raw = dreamer.dream(img, config.dream).astype(np.float32) - img
                    return np.clip(img + raw * (target / max(1e-3, float(np.abs(raw).mean()))), 0, 255).astype(np.uint8)

                t = time.perf_counter()
                out_path = synth_clip(spec, tmp / f"ideal{ci}.mp4", size=size, frames=n, paint=paint)
                out = decode(out_path, count=n)
                m = measure(src, out, dreamer, rms, segment=args.segment_frames, motion=motion)
                rows.append((name, f"{size[0]}x{size[1]}", mode, m, math.nan, time.perf_counter() - t))
                print(f"{name:24s} {mode:9s} stab {m['stability']:6.2f} glue {m['glue']:5.2f} still {m['still']:5.2f} "
                      f"strength {m['strength']:5.1f} gain {m['gain']:5.2f} detail {m['detail']:5.1f}", flush=True)
                outs[mode] = out
                continue
            config = resolve(merge(base, mode_cfg[mode]), preset=args.preset)
            out_path = (args.keep or tmp) / f"{name.replace(':', '-')}-{mode}.mp4"
            out_path.parent.mkdir(parents=True, exist_ok=True)
            opts = RenderOptions(input=path, output=out_path, song=song, start=first / info.fps,
                                 duration=n / info.fps, max_side=args.max_side, overwrite=True, crf=args.crf,
                                 segment_frames=args.segment_frames, react=args.react)
            t = time.perf_counter()
            report = render(opts, config, dreamer)
            wall = time.perf_counter() - t
            out = decode(out_path, count=n)
            m = measure(src, out, dreamer, rms, segment=args.segment_frames, motion=motion)
            rows.append((name, f"{size[0]}x{size[1]}", mode, m, report["dream_seconds_per_frame"], wall))
            outs[mode] = out
            if mode == "anchor":
                last_strength[name] = m["strength"]
            curves[f"{name} {mode}"] = {"strength": [round(v, 3) for v in m["per_frame_strength"]],
                                        "rms": [round(float(v), 5) for v in rms], "fps": info.fps,
                                        "still_per_pair": m["still_per_pair"]}
            print(f"{name:24s} {mode:9s} stab {m['stability']:6.2f} glue {m['glue']:5.2f} still {m['still']:5.2f} "
                  f"moving {m['moving']:5.2f} "
                  f"join {m['join']:5.2f} ({m['rest']:4.2f}) strength {m['strength']:5.1f} gain {m['gain']:5.2f} "
                  f"detail {m['detail']:5.1f} sync {m['sync']:5.2f} s/frame {report['dream_seconds_per_frame']:.2f}",
                  flush=True)
        if args.strips and outs:
            stem = args.strips / f"{name.replace(':', '-').replace('@', '-')}-{size[0]}"
            strip(src, outs, stem.with_name(stem.name + "-strip.jpg"), diff=stem.with_name(stem.name + "-diff.jpg"),
                  segment=args.segment_frames)
    if args.curves:
        args.curves.write_text(json.dumps(curves))
    print()
    print(f"preset {args.preset}, {args.frames} frames, react {args.react:g}, song {Path(args.song).name} from "
          f"{args.song_start:g} s, crf {args.crf}, segments of {args.segment_frames}"
          + (f", overrides {' '.join(args.set)}" if args.set else ""))
    print("| clip | size | mode | temporal_stability | glued | still_change (footage) | moving_stability | "
          "join (other pairs) | dream_strength | dream_gain | detail | audio_sync | s/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def num(v: float, fmt: str = ".2f") -> str:
        return "" if v is None or not math.isfinite(v) else format(v, fmt)

    for name, size, mode, m, spf, _ in rows:
        sync = "" if mode == "ideal" or args.react == 0 else num(m["sync"])
        print(f"| {name} | {size} | {mode} | {num(m['stability'])} | {num(m['glue'])} | "
              f"{num(m['still'])} ({num(m['still_src'])}) | "
              f"{num(m['moving'])} | {num(m['join'])} ({num(m['rest'])}) | {num(m['strength'], '.1f')} | "
              f"{num(m['gain'])} | {num(m['detail'], '.1f')} | {sync} | {num(spf)} |")


def load_toml_value(text: str):
    import tomllib

    return tomllib.loads(f"v = {text}")["v"]


if __name__ == "__main__":
    main()
