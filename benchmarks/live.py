"""`dreamvid live`: frames per second and capture-to-screen latency at several sizes, on this machine's CPU or GPU.

For each size it plays a clip live with a song for ``--seconds`` (the song's clock on the wall, the pacer holding
``--fps``), with the page open in headless Chromium where selenium, chromium and chromedriver are installed, and
prints: the frames dreamed per second, what the pacer chose, the loop's capture-to-sink latency and the page's
capture-to-screen latency (from the frame's capture to its drawing in the browser, both clocks of this machine).

    python benchmarks/live.py                              # 160, 256, 360 px, TensorFlow on the CPU
    python benchmarks/live.py --backend jax --sizes 360,720,1080 --fps 25 --json out.json   # on a GPU

``--no-adapt`` measures the preset's full quality instead (every frame at the schedule's steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _browser(url: str):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None or shutil.which("chromedriver") is None:
        return None
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,720",
              "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        opts.add_argument(a)
    opts.binary_location = chromium
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    driver.get(url)
    return driver


def run(args) -> list[dict]:
    from dreamvid.dream import Dreamer
    from dreamvid.live import LiveOptions, Session

    dreamer = Dreamer(weights=args.weights, backend=args.backend, precision=args.precision, seed=0)
    rows = []
    for size in args.sizes:
        opts = LiveOptions(source=str(args.clip), song=args.song, preset=args.preset, size=size, fps=args.fps,
                           port=0, seconds=args.seconds + args.settle, adapt=args.adapt)
        session = Session.open(opts)
        page_stats: list[dict] = []
        driver = [None]
        shown: list = []

        def ready(url):
            if not args.no_browser:
                threading.Thread(target=lambda: driver.__setitem__(0, _browser(url)), daemon=True).start()

        def on_frame(ev):
            if ev.t >= args.settle:
                shown.append((ev.k, ev.dream_seconds, ev.latency, ev.quality))
            if session.page is not None and session.page.stats and ev.t >= args.settle:
                page_stats.append(dict(session.page.stats))

        t = time.perf_counter()
        summary = session.run(dreamer, on_ready=ready, on_frame=on_frame)
        wall = time.perf_counter() - t
        if driver[0] is not None:
            driver[0].quit()
        n = len(shown)
        span = args.seconds
        lat = sorted(x[2] for x in shown)
        q = shown[-1][3] if shown else None
        page_lat = [s["latency_ms"] for s in page_stats if s.get("latency_ms") is not None]
        page_fps = [s["fps"] for s in page_stats if s.get("fps")]
        row = {"size": size, "frame": list(q.size) if q else None, "steps": q.steps if q else None,
               "carried_octaves": q.carried if q else None, "dream_fps": round(n / span, 2),
               "loop_latency_ms_median": round(1000 * lat[len(lat) // 2], 1) if lat else None,
               "screen_latency_ms_median": round(sorted(page_lat)[len(page_lat) // 2], 1) if page_lat else None,
               "screen_fps": round(sorted(page_fps)[len(page_fps) // 2], 2) if page_fps else None,
               "skipped": summary["skipped"], "wall_s": round(wall, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=REPO / "examples" / "bigbuckbunny.mp4")
    ap.add_argument("--song", type=Path, default=REPO / "examples" / "groove.wav")
    ap.add_argument("--preset", default="lysergic")
    ap.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[160, 256, 360])
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds measured per size (after --settle)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds played first, not measured (the pacer learns)")
    ap.add_argument("--no-adapt", dest="adapt", action="store_false")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--weights", default=os.environ.get("DREAMVID_WEIGHTS") or "random")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = run(args)
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "backend": args.backend
            or "tensorflow", "precision": args.precision, "fps_target": args.fps, "adapt": args.adapt,
            "preset": args.preset, "rows": rows}
    print("| size | frame | steps | carried octaves | dream fps | loop latency ms | screen fps | screen latency ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        frame = "×".join(map(str, r["frame"])) if r["frame"] else "–"
        print(f"| {r['size']} | {frame} | {r['steps']} | {r['carried_octaves']} | {r['dream_fps']} | "
              f"{r['loop_latency_ms_median']} | {r['screen_fps']} | {r['screen_latency_ms_median']} |")
    if args.json:
        args.json.write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
