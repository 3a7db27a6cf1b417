"""The live page: the dream full screen with its fps and latency, the song playing in sync, sliders for the controls.

A small HTTP server (the standard library's, in its own threads) with a fixed set of routes and nothing else:
``/`` the page, ``/frame`` the newest frame as JPEG (long-polled), ``/song`` the song file, ``/state`` the
controls, the loop's choices and the page's own measures as JSON; ``POST /control``, ``/pulse``, ``/clock``
(the page's playback time, the run's time base) and ``/stats``. No other file is ever served.

With a login (``--auth USER:PASS``, which a non-loopback ``--host`` needs: ``dreamvid.access``, the rule ``dreamvid
ui`` follows too), every request must carry it (HTTP Basic, compared in constant time); any other gets 401.
"""

from __future__ import annotations

import base64
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from ..errors import InputError

__all__ = ["Page"]

_SONG_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg",
               ".m4a": "audio/mp4", ".aac": "audio/aac", ".opus": "audio/ogg", ".webm": "audio/webm"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a page closed while it was answered
            return
        super().handle_error(request, client_address)


class Page:
    """The page's server, bound at once (a port in use is one line before any slow work), served by :meth:`start`.

    Parameters
    ----------
    host, port : where to listen
    song : the song file the page plays, or None
    on_control : ``(name_or_key, value)`` from a slider
    on_pulse, on_clock : the pulse button; the page's playback time ``(t, playing)``
    state : callable returning the JSON state (controls, the loop's choices)
    login : ``(user, password)`` every request must carry (HTTP Basic), or None (``dreamvid.access.check_access``)
    """

    def __init__(self, host: str, port: int, *, song: Path | None, on_control: Callable[[str, float], Any],
                 on_pulse: Callable[[], Any], on_clock: Callable[[float, bool], None],
                 state: Callable[[], dict[str, Any]], quality: int = 85, login: tuple[str, str] | None = None):
        self.song, self.quality = song, quality
        self._login = None if login is None else b"Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode())
        self.on_control, self.on_pulse, self.on_clock, self.state = on_control, on_pulse, on_clock, state
        self._cond = threading.Condition()
        self._frame: tuple[int, np.ndarray, float] | None = None
        self._jpeg: tuple[int, bytes, float] | None = None
        self.stats: dict[str, Any] = {}  # what the page measured (fps, capture-to-screen latency)
        page = self

        class Handler(_Handler):
            owner = page

        try:
            self._server = _Server((host, int(port)), Handler)
        except OSError as e:
            why = "the port is in use" if getattr(e, "errno", None) in (98, 48, 10048) else e.strerror or str(e)
            raise InputError(f"cannot listen on {host}:{port}: {why}; pick another --port") from None
        self.host, self.port = host, self._server.server_address[1]
        self._t: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                   name="dreamvid-page", daemon=True)
        self._t.start()

    def show(self, k: int, frame: np.ndarray, captured: float) -> None:
        """The loop's newest frame (``captured``: monotonic time its source was captured)."""
        with self._cond:
            self._frame = (k, frame, captured)
            self._cond.notify_all()

    def _jpeg_after(self, after: int, timeout: float) -> tuple[int, bytes, float] | None:
        end = time.monotonic() + timeout
        with self._cond:
            while self._frame is None or self._frame[0] <= after:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            k, frame, captured = self._frame
            if self._jpeg is not None and self._jpeg[0] == k:
                return self._jpeg
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        jpeg = (k, buf.tobytes(), captured)
        self._jpeg = jpeg
        return jpeg

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()
        if self._t is not None:  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: Page
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # the library prints nothing
        pass

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _allowed(self) -> bool:
        """The login, where the page has one: else 401 (the browser asks for it) and False."""
        want = self.owner._login
        if want is None:
            return True
        got = self.headers.get("Authorization", "").strip().encode("latin-1", "replace")
        if hmac.compare_digest(got, want):
            return True
        if self.command == "POST":  # what the client sent is not read: do not reuse the connection
            self.close_connection = True
        self._send(401, b"login needed", "text/plain",
                   {"WWW-Authenticate": 'Basic realm="dreamvid live", charset="UTF-8"'})
        return False

    def do_GET(self):
        if not self._allowed():
            return
        url = urlparse(self.path)
        page = self.owner
        if url.path == "/":
            self._send(200, _HTML.encode(), "text/html; charset=utf-8")
        elif url.path == "/frame":
            q = parse_qs(url.query)
            try:
                after = int(q.get("after", ["-1"])[0])
            except ValueError:
                after = -1
            got = page._jpeg_after(after, 2.0)
            if got is None:
                self._send(204, b"", "image/jpeg")
                return
            k, body, captured = got
            epoch_ms = (time.time() - (time.monotonic() - captured)) * 1000.0
            self._send(200, body, "image/jpeg", {"X-Frame": str(k), "X-Captured": f"{epoch_ms:.1f}"})
        elif url.path == "/song" and page.song is not None:
            self._song(page.song)
        elif url.path == "/state":
            state = dict(page.state(), page=page.stats, song=page.song is not None)
            self._send(200, json.dumps(state).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    do_HEAD = do_GET

    def _song(self, path: Path) -> None:
        data_len = path.stat().st_size
        ctype = _SONG_TYPES.get(path.suffix.lower(), "application/octet-stream")
        start, end = 0, data_len - 1
        rng = self.headers.get("Range", "")
        code = 200
        if rng.startswith("bytes="):
            a, _, b = rng[6:].split(",")[0].partition("-")
            try:
                start = int(a) if a else max(0, data_len - int(b))
                end = min(int(b), data_len - 1) if a and b else end
                code = 206
            except ValueError:
                start, end = 0, data_len - 1
        if start > end:
            self._send(416, b"", ctype, {"Content-Range": f"bytes */{data_len}"})
            return
        with path.open("rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        headers = {"Accept-Ranges": "bytes"}
        if code == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{data_len}"
        self._send(code, body, ctype, headers)

    def do_POST(self):
        if not self._allowed():
            return
        page = self.owner
        try:
            n = min(int(self.headers.get("Content-Length", "0")), 65536)
            body = json.loads(self.rfile.read(n) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, json.JSONDecodeError):
            self._send(400, b"bad request", "text/plain")
            return
        path = urlparse(self.path).path
        try:
            if path == "/control":
                page.on_control(str(body.get("name", "")), float(body.get("value")))
            elif path == "/pulse":
                page.on_pulse()
            elif path == "/clock":
                page.on_clock(float(body.get("t", 0.0)), bool(body.get("playing", False)))
            elif path == "/stats":
                page.stats = {k: body[k] for k in ("fps", "latency_ms", "shown", "last", "audio_t", "playing",
                                                   "in_order") if k in body}
            else:
                self._send(404, b"not found", "text/plain")
                return
        except (TypeError, ValueError) as e:
            self._send(400, str(e).encode(), "text/plain")
            return
        self._send(200, b"{}", "application/json")


_HTML = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dreamvid live</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
html,body{margin:0;height:100%;background:#000;color:#eee;font:13px system-ui,sans-serif;overflow:hidden}
canvas{position:fixed;inset:0;width:100vw;height:100vh;object-fit:contain}
#hud{position:fixed;left:8px;top:8px;background:#0009;padding:6px 9px;border-radius:6px;white-space:pre}
#panel{position:fixed;right:8px;top:8px;background:#0009;padding:8px 10px;border-radius:6px;min-width:230px}
#panel label{display:block;margin:6px 0 2px}#panel input{width:100%}
button{margin-top:8px;padding:6px 12px;background:#c3f;color:#fff;border:0;border-radius:4px;font-weight:600}
#start{position:fixed;left:50%;top:50%;transform:translate(-50%,-50%);display:none;font-size:18px}
body.idle #panel,body.idle #hud{opacity:.15}
</style></head><body>
<canvas id="view"></canvas>
<div id="hud">connecting…</div>
<div id="panel"><div id="sliders"></div><button id="pulse">pulse</button></div>
<button id="start">▶ start the sound</button>
<audio id="song" preload="auto"></audio>
<script>
const view = document.getElementById('view'), ctx = view.getContext('2d'), hud = document.getElementById('hud');
const song = document.getElementById('song'), sliders = document.getElementById('sliders');
let after = -1, shown = [], lastK = -1, inOrder = true, state = {}, dragging = null;
// the page's own addresses from its origin: a URL with the login in it (http://user:pass@host/) would make
// every fetch() of a relative path refuse to run
const at = path => location.origin + path;
const post = (path, body) => fetch(at(path), {method: 'POST', headers: {'Content-Type': 'application/json'},
                                         body: JSON.stringify(body)}).catch(() => {});
function fit(bmp) {
  const w = window.innerWidth, h = window.innerHeight, s = Math.min(w / bmp.width, h / bmp.height);
  if (view.width !== w || view.height !== h) { view.width = w; view.height = h; }
  ctx.fillStyle = '#000'; ctx.fillRect(0, 0, w, h);
  ctx.drawImage(bmp, (w - bmp.width * s) / 2, (h - bmp.height * s) / 2, bmp.width * s, bmp.height * s);
}
async function frames() {
  for (;;) {
    try {
      const r = await fetch(at('/frame?after=' + after), {cache: 'no-store'});
      if (r.status === 204) continue;
      if (!r.ok) throw new Error(r.status);
      const k = +r.headers.get('X-Frame'), cap = +r.headers.get('X-Captured');
      const bmp = await createImageBitmap(await r.blob());
      fit(bmp);
      if (k <= lastK) inOrder = false;
      lastK = k; after = k;
      shown.push({at: performance.now(), lat: Date.now() - cap});
    } catch (e) { await new Promise(r => setTimeout(r, 500)); }
  }
}
const bar = x => '▮'.repeat(Math.round(8 * (x || 0))).padEnd(8, '·');
function heard(h) {  // --audio-in: what the sound card hears, as the dream sees it
  if (!h) return '';
  return `\n${h.sound}: level ${bar(h.energy)} onset ${bar(h.onset)}  low ${bar(h.low)} mid ${bar(h.mid)} high ${bar(h.high)}`;
}
function median(a) { if (!a.length) return null; const s = [...a].sort((x, y) => x - y); return s[s.length >> 1]; }
function stats() {
  const now = performance.now(); shown = shown.filter(s => now - s.at < 3000);
  const fps = shown.length > 1 ? (shown.length - 1) / ((shown[shown.length - 1].at - shown[0].at) / 1000) : 0;
  return {fps, latency_ms: median(shown.map(s => s.lat)), shown: shown.length, last: lastK, in_order: inOrder,
          audio_t: song.currentTime, playing: !song.paused};
}
function slider(c) {
  const id = 'c-' + c.name; let el = document.getElementById(id);
  if (!el) {
    const label = document.createElement('label'); label.textContent = c.name + ' (' + c.key + ')';
    el = document.createElement('input'); el.type = 'range'; el.id = id;
    el.min = c.range[0]; el.max = c.range[1]; el.step = Math.abs(c.range[1] - c.range[0]) / 1000;
    el.oninput = () => { dragging = c.name; post('/control', {name: c.name, value: +el.value}); };
    el.onchange = () => { dragging = null; };
    sliders.append(label, el);
  }
  if (dragging !== c.name) el.value = c.value;
}
async function poll() {
  try {
    state = await (await fetch(at('/state'), {cache: 'no-store'})).json();
    (state.controls || []).forEach(slider);
    const s = stats(), q = state.quality || {};
    hud.textContent = `${s.fps.toFixed(1)} fps shown   latency ${s.latency_ms == null ? '–' : Math.round(s.latency_ms)} ms\n` +
      `frame ${state.frame ?? '–'}   t ${(state.t ?? 0).toFixed(2)} s   dream ${(state.dream_fps ?? 0).toFixed(1)} fps\n` +
      `chosen: ${q.size ? q.size.join('×') : '–'} px, ${q.octaves ?? '–'} octaves, ${q.steps ?? '–'} steps` +
      (state.adapt ? '  (holding ' + state.fps + ' fps)' : '') + heard(state.heard) +
      (state.recording ? '\n● recording' : '');
    if (state.song && song.src === '') {
      song.src = at('/song');
      song.addEventListener('loadedmetadata', () => { song.currentTime = state.t || 0; start(); }, {once: true});
    }
    post('/stats', s);
  } catch (e) { hud.textContent = 'disconnected'; }
}
function start() {
  song.play().then(() => { document.getElementById('start').style.display = 'none'; })
    .catch(() => { document.getElementById('start').style.display = 'block'; });
}
document.getElementById('start').onclick = () => { song.currentTime = state.t || song.currentTime; start(); };
document.getElementById('pulse').onclick = () => post('/pulse', {});
document.addEventListener('keydown', e => { if (e.code === 'Space') post('/pulse', {}); });
setInterval(() => { if (state.song && !song.paused) post('/clock', {t: song.currentTime, playing: true}); }, 250);
let idle; document.addEventListener('mousemove', () => { document.body.classList.remove('idle');
  clearTimeout(idle); idle = setTimeout(() => document.body.classList.add('idle'), 3000); });
setInterval(poll, 500); poll(); frames();
</script></body></html>
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now (for tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
