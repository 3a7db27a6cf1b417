"""What `dreamvid live --record` costs to keep a camera's footage (docs/live.md, "The footage").

For each clip (its first 120 frames, and the same frames at 1280x720 with a camera's sensor noise, sigma 1.5 grey
levels): the footage's size per frame and encoding rate, lossless (what live writes: H.264 crf 0, ultrafast) and at
crf 18 (veryfast) for comparison, and the time `AsRecorded` takes to give live the frame as the render will decode it
(to a 256-pixel film)::

    python benchmarks/live_footage.py /work/media/box.mp4 /work/media/vtest.avi
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dreamvid import video
from dreamvid.live.footage import FOOTAGE_CRF
from dreamvid.video.recorded import AsRecorded


def measure(name: str, frames: list[np.ndarray], folder: Path) -> None:
    h, w = frames[0].shape[:2]
    for crf, preset in ((FOOTAGE_CRF, "ultrafast"), (18, "veryfast")):
        out = folder / f"footage-{crf}.mp4"
        t = time.perf_counter()
        with video.FrameWriter(out, fps=25, size=(w, h), crf=crf, preset=preset, overwrite=True) as writer:
            for f in frames:
                writer.write(f)
        seconds = time.perf_counter() - t
        kb = out.stat().st_size / len(frames) / 1024
        print(f"{name} {w}x{h}  crf {crf:2d} {preset:9s}  {kb:6.0f} KB/frame  {kb * 25 / 1024:6.1f} MB/s at 25 fps  "
              f"{len(frames) / seconds:5.0f} frames/s encoded")
    film = video.output_size(w, h, 256)
    with AsRecorded(size=(w, h), out=film) as as_recorded:
        as_recorded(frames[0])
        t = time.perf_counter()
        for f in frames[1:]:
            as_recorded(f)
        print(f"{name} {w}x{h}  AsRecorded to {film[0]}x{film[1]}: "
              f"{1000 * (time.perf_counter() - t) / (len(frames) - 1):.1f} ms/frame")


def main(paths: list[str]) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            frames = list(itertools.islice(video.iter_frames(path), 120))
            measure(Path(path).name, frames, Path(tmp))
            noisy = [np.clip(cv2.resize(f, (1280, 720), interpolation=cv2.INTER_CUBIC)
                             + rng.normal(0, 1.5, (720, 1280, 3)), 0, 255).astype(np.uint8) for f in frames[:60]]
            measure(f"{Path(path).name} + noise", noisy, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:] or ["examples/bigbuckbunny.mp4"])
