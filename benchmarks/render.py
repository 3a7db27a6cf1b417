"""Render measures on real footage: temporal stability, dream strength, audio sync, speed and peak memory.

    python benchmarks/render.py                       # per-frame vs flow, lysergic, examples/ media
    python benchmarks/render.py --memory              # peak RSS for a clip and the same clip 10x longer

Each configuration renders in a fresh subprocess (so peak RSS is its own) with the given weights
($DREAMVID_WEIGHTS or --weights), and prints the numbers from its report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from dreamvid.cli import app
args = json.loads(sys.argv[2])
t = time.perf_counter()
try:
    app(args, standalone_mode=False)
except SystemExit as e:
    if e.code: raise
print("RESULT", json.dumps({"wall": time.perf_counter() - t,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(args: list[str]) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(ROOT), json.dumps(args)], capture_output=True,
                          text=True, env=env)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"render failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(line[0][7:])


def loop_clip(src: Path, out: Path, times: int) -> None:
    from dreamvid.video.decode import ffmpeg_exe

    lst = out.with_suffix(".txt")
    lst.write_text("".join(f"file '{src.resolve()}'\n" for _ in range(times)))
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(lst),
                    "-c", "copy", str(out)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(ROOT / "examples" / "bigbuckbunny.mp4"))
    ap.add_argument("--song", default=str(ROOT / "examples" / "groove.wav"))
    ap.add_argument("--preset", default="lysergic")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS"))
    ap.add_argument("--extra", default="", help="extra CLI flags for every run, e.g. '--steps 4'")
    ap.add_argument("--memory", action="store_true", help="peak RSS for the clip and the clip looped 10x")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="dreamvid-bench-"))
    common = ["--preset", a.preset, "--max-side", str(a.max_side), "--quiet", "--overwrite", *a.extra.split()]
    if a.weights:
        common += ["--weights", a.weights]
    if a.duration:
        common += ["--duration", str(a.duration)]

    if a.memory:
        long_clip = tmp / "long.mp4"
        loop_clip(Path(a.clip), long_clip, 10)
        print(f"{'clip':24s} {'frames':>7s} {'peak RSS MB':>12s} {'s':>7s}")
        for name, clip in (("clip", a.clip), ("clip x10", str(long_clip))):
            out = tmp / f"mem-{name.replace(' ', '')}.mp4"
            res = run(["render", clip, "-o", str(out), "--song", a.song, "--loop-song", *common])
            rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
            print(f"{name:24s} {rep['frames']:7d} {res['peak_rss_mb']:12.0f} {res['wall']:7.1f}")
        return

    configs = {
        "per-frame (no flow)": ["--config", str(_cfg(tmp, "perframe", 'flow = "none"\nblend = 0.0'))],
        "flow (preset)": [],
    }
    print(f"{a.clip} at max side {a.max_side}, preset {a.preset} {a.extra}")
    print(f"{'mode':22s} {'frames':>6s} {'stability':>9s} {'strength':>9s} {'audio_sync':>10s} {'s/frame':>8s} {'idle':>6s}")
    for name, extra in configs.items():
        out = tmp / f"{name.split()[0]}.mp4"
        t = time.perf_counter()
        run(["render", a.clip, "-o", str(out), "--song", a.song, *common, *extra])
        rep = json.loads(out.with_name(out.stem + ".report.json").read_text())
        print(f"{name:22s} {rep['frames']:6d} {rep['temporal_stability']:9.2f} {rep['dream_strength']:9.1f} "
              f"{rep['audio_sync'] if rep['audio_sync'] is not None else float('nan'):10.3f} "
              f"{(time.perf_counter() - t) / rep['frames']:8.2f} {rep['accelerator_idle_fraction']:6.3f}")


def _cfg(tmp: Path, name: str, video: str) -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(f"[video]\n{video}\n")
    return p


if __name__ == "__main__":
    main()
