"""``dreamvid ui``: tune a dream by eye in the browser, then render. The only module that imports gradio.

Two layers, so that the page holds no logic and the logic needs no browser:

:class:`Studio`
    The app's state, kept server-side (one per process, so a page reload re-attaches to it): the inputs, the
    current settings, the one :class:`~dreamvid.dream.Dreamer`, a preview worker and a job runner. It calls the
    same library functions as the CLI: ``config.resolve`` (preset < the page's changes), ``pipeline.check`` and
    ``video.probe``/``check_song``/``images.read_image`` for uploads, ``Coherence`` + ``Dreamer.dream_float``
    for a frame (the first frame of a render: the footage as the camera moved it, the schedule's parameters at
    that frame, the governor),
    ``stills.dream_files``, ``pipeline.render`` for the strip and the render (resumable), ``plot.plot_analysis``.
    Nothing is written outside its working folder (gradio's upload cache included).
:func:`build` / :func:`serve`
    The gradio page over a Studio. Every control's change records a preview request and returns at once; the
    preview worker dreams only the newest request and abandons a dream as soon as a newer one arrives (checked
    at every gradient step), and a generation counter drops any stale result. Long jobs (strip, render) run in a
    thread; the page polls their progress, so a reload finds them where they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import functools
import hashlib
import html
import importlib.util
import json
import math
import os
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import presets as _presets
from .config import Config, resolve
from .errors import ConfigError, DreamvidError, InputError, OutputError
from .fsutil import atomic_write_bytes
from .layers import LAYER_NAMES

__all__ = ["PREVIEW_SIDE", "Studio", "build", "check_available", "serve", "to_toml"]

PREVIEW_SIDE = 360  # the preview's longest side in pixels
# A scrub forward to frame k by fewer than _READ_ON * k + 12 frames reads on in the open decoder: a frame read costs
# ~10 ms at 360 px (decode, scale, pipe), a frame a fresh decoder drops before k ~3 ms, its start ~0.15 s.
_READ_ON = 0.3
STRIP_SECONDS = 2.0
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv")
SONG_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus")
DEFAULT_WORKDIR = "dreamvid-ui"
DEFAULT_UPLOAD_MB = 2048
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class MissingDependency(DreamvidError):
    """An optional package a command needs is not installed."""


def check_available() -> None:
    """Raise :class:`MissingDependency` (one line) unless gradio can be imported; imports nothing."""
    if importlib.util.find_spec("gradio") is None:
        raise MissingDependency('the web UI needs gradio, which is not installed: pip install "dreamvid[ui]"')


# ---------------------------------------------------------------------------------------------------------------
# the controls: one table drives the page, the config and the preset


@dataclass(frozen=True)
class Control:
    """One setting on the page: ``section.key`` of the config (``section`` None: a render option)."""

    key: str
    section: str | None
    label: str
    lo: float = 0.0
    hi: float = 1.0
    step: float = 1.0
    info: str = ""
    choices: tuple[str, ...] = ()  # a dropdown instead of a slider


def controls() -> list[Control]:
    """The page's settings, in order."""
    out = [
        Control("creativity", "dream", "creativity", 0.0, 1.0, 0.05,
                "one lever, faithful (0) to strange (1): sets layers, step size, steps and octaves"),
        Control("strength", "video", "strength (grey levels)", 0.0, 64.0, 0.5,
                "the governor's target: mean |dream - footage|; 0 = ungoverned"),
        Control("step_size", "dream", "step size", 0.001, 0.1, 0.001, "how far each gradient step moves"),
        Control("octaves", "dream", "octaves", 1, 8, 1, "scales dreamed, coarse to fine"),
        Control("octave_scale", "dream", "octave scale", 1.1, 2.0, 0.05, "size ratio between octaves"),
        Control("steps", "dream", "steps per octave", 1, 40, 1),
        Control("jitter", "dream", "jitter (px)", 0, 96, 1),
        Control("seed", "dream", "seed", 0, 9999, 1),
        Control("coherence", "video", "coherence", choices=("anchor", "blend", "none"),
                info="anchor: the carried dream is held in the ascent; blend: feedback; none: per frame"),
        Control("anchor", "video", "anchor", 0.0, 3.0, 0.05,
                "pull toward the carried dream (coherence = anchor; seen in the strip)"),
        Control("blend", "video", "blend", 0.0, 1.0, 0.05,
                "share of the previous dream carried (coherence = blend; seen in the strip)"),
    ]
    out += [Control(f"layer:{n}", "layers", n, 0.0, 3.0, 0.05) for n in LAYER_NAMES]
    out.append(Control("react", None, "music reaction", 0.0, 2.0, 0.05,
                       "0 off, 1 the preset's amount, 2 double (--react)"))
    return out


def settings_of(config: Config, *, react: float = 1.0) -> dict[str, Any]:
    """The page's values for ``config`` (a scheduled key shows its static value)."""
    out: dict[str, Any] = {}
    for c in controls():
        if c.section == "layers":
            name = c.key.split(":", 1)[1]
            out[c.key] = next((float(s.weight) for s in config.dream.layers if s.name == name), 0.0)
        elif c.section is None:
            out[c.key] = float(react)
        else:
            v = getattr(getattr(config, c.section), c.key, None)
            if c.choices:
                out[c.key] = v if v in c.choices else c.choices[0]
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[c.key] = v
            else:
                out[c.key] = 0.0 if c.key == "creativity" else None
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def changes(base: Config, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config layer that turns ``base`` (a preset) into the page's ``settings``: only the keys that differ,
    so what the page does not touch (a schedule, the [audio] table) stays the preset's."""
    ref = settings_of(base)
    layer: dict[str, dict[str, Any]] = {}
    weights_changed = False
    for c in controls():
        if c.section is None or c.key not in settings or settings[c.key] is None:
            continue
        if c.section == "layers":
            weights_changed |= not _same(settings[c.key], ref[c.key])
            continue
        if _same(settings[c.key], ref[c.key]):
            continue
        v = settings[c.key]
        if not c.choices:
            v = round(v) if c.step >= 1 else float(v)
        layer.setdefault(c.section, {})[c.key] = v
    if weights_changed:
        channels = {s.name: s.channels for s in base.dream.layers}
        terms = []
        for n in LAYER_NAMES:
            w = float(settings.get(f"layer:{n}") or 0.0)
            if w > 0:
                ch = channels.get(n, ())
                terms.append(f"{n}[{','.join(map(str, ch))}]:{w:g}" if ch else f"{n}:{w:g}")
        if not terms:
            raise ConfigError("every layer weight is 0: give at least one layer a weight above 0")
        layer.setdefault("dream", {})["layers"] = ",".join(terms)
    return layer


# ---------------------------------------------------------------------------------------------------------------
# presets as TOML (the standard library reads TOML but does not write it)


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_str(k)


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ConfigError(f"cannot write {v} in a preset")
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise ConfigError(f"cannot write a {type(v).__name__} in a preset")


def to_toml(table: Mapping[str, Any]) -> str:
    """A config dict (``Config.to_dict()`` form) as TOML text; None values are left out (TOML has no null).
    Top-level scalars first, then one ``[section]`` per table, a nested table as ``[section.sub]``."""
    lines: list[str] = []

    def emit(prefix: str, t: Mapping[str, Any]) -> None:
        subs = []
        for k, v in t.items():
            if v is None:
                continue
            if isinstance(v, Mapping) and (prefix == "" or any(isinstance(x, Mapping) for x in v.values())):
                subs.append((k, v))
            else:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            name = f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)
            lines.append("")
            lines.append(f"[{name}]")
            emit(name, v)

    emit("", table)
    return "\n".join(lines).lstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------------
# the server-side state


class _Superseded(Exception):
    """A newer preview request arrived: this dream is abandoned."""


class _Stopped(Exception):
    """The page asked a job to stop."""


@dataclass
class Preview:
    """A finished preview: the source and dreamed frame (uint8 RGB), or an error line."""

    gen: int
    key: str = ""
    source: np.ndarray | None = None
    image: np.ndarray | None = None
    seconds: float = 0.0
    message: str = ""
    error: bool = False


@dataclass
class Job:
    """A strip or a render running in a thread (its state is what the page polls)."""

    id: int
    kind: str  # "strip", "render", "still"
    output: Path
    status: str = "starting"  # starting, running, done, failed, stopped
    done: int = 0
    total: int = 0
    resumed_from: int = 0
    started: float = field(default_factory=time.time)
    first_frame_at: float | None = None
    rate: float = 0.0  # frames per second in this run
    message: str = ""
    report: dict | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def eta(self) -> float | None:
        if self.rate <= 0 or self.total <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running")


class Studio:
    """What the page works on, kept server-side. One per app process; a page reload finds it as it was.

    Parameters
    ----------
    workdir : the app's working folder: uploads (``inputs/``), renders (``renders/``), the strip (``strips/``),
        saved presets (``presets/``), the analysis plot and gradio's upload cache (``cache/``). Nothing is written
        elsewhere.
    weights, backend, precision : as for ``dreamvid render``
    max_upload_mb : the largest upload accepted
    dreamer : an existing Dreamer to use (tests); otherwise one is built in a thread at :meth:`start`
    """

    def __init__(self, workdir: str | os.PathLike, *, weights: str | None = None, backend: str | None = None,
                 precision: str = "fp32", max_upload_mb: float = DEFAULT_UPLOAD_MB, dreamer=None):
        self.workdir = Path(workdir).expanduser().resolve()
        for sub in ("inputs", "renders", "strips", "presets", "cache"):
            try:
                (self.workdir / sub).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create the working folder {self.workdir / sub}: {e.strerror}; choose a "
                                  "writable --workdir") from None
        self.weights, self.backend, self.precision = weights, backend, precision
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self._lock = threading.RLock()
        self.clip: Path | None = None
        self.info = None  # the clip's VideoInfo
        self.song: Path | None = None
        self.still: Path | None = None
        self._still_img: np.ndarray | None = None
        self.notes: dict[str, str] = {}  # kind -> what the page says about the loaded input
        self.preset: str = _presets.DEFAULT
        self.base: Config = self._load_preset(self.preset)
        self.settings: dict[str, Any] = settings_of(self.base)
        self.frame = 0
        self._features: dict[tuple, Any] = {}
        self._plotted: tuple | None = None  # what cache/analysis.png shows
        self._source: tuple[tuple, np.ndarray] | None = None
        self._raw: tuple[str, np.ndarray] | None = None  # the last preview's dream, before the governor
        self._reader: list | None = None  # [(clip, size), next frame, frame iterator]: the preview's open decoder
        # the dreamer, built once
        self._dreamer = dreamer
        self._dreamer_ready = threading.Event()
        self._dreamer_error: str | None = None
        if dreamer is not None:
            self._dreamer_ready.set()
        # previews: the newest request, the last result
        self._cond = threading.Condition(self._lock)
        self._req: tuple[int, int, dict, str] | None = None  # gen, frame, settings, key
        self._gen = 0
        self._result: Preview | None = None
        self._worker: threading.Thread | None = None
        # jobs
        self.job: Job | None = None
        self._job_ids = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> Studio:
        """Start the preview worker, and build the Dreamer in the background (the page works meanwhile)."""
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._preview_loop, name="dreamvid-ui-preview", daemon=True)
                self._worker.start()
        if self._dreamer is None and not self._dreamer_ready.is_set():
            threading.Thread(target=self._build_dreamer, name="dreamvid-ui-model", daemon=True).start()
        return self

    def _build_dreamer(self) -> None:
        try:
            from .dream import Dreamer

            self._dreamer = Dreamer(weights=self.weights, backend=self.backend, precision=self.precision,
                                    seed=self.base.dream.seed)
        except DreamvidError as e:
            self._dreamer_error = str(e)
        except Exception as e:  # noqa: BLE001 - shown as one line, logged in full
            self._dreamer_error = self._internal(e)
        finally:
            self._dreamer_ready.set()

    def dreamer(self, *, wait: float | None = None, cancel: Callable[[], bool] | None = None):
        """The Dreamer, waiting for it to be built (``cancel`` is polled meanwhile)."""
        deadline = None if wait is None else time.monotonic() + wait
        while not self._dreamer_ready.wait(0.1):
            if cancel is not None and cancel():
                raise _Superseded
            if deadline is not None and time.monotonic() > deadline:
                raise DreamvidError("the model is still loading; try again in a moment")
        if self._dreamer_error:
            raise DreamvidError(self._dreamer_error)
        return self._dreamer

    def model_status(self) -> str:
        if not self._dreamer_ready.is_set():
            return "model: loading…"
        if self._dreamer_error:
            return f"model: error: {self._dreamer_error}"
        d = self._dreamer
        return f"model: {d.weights.describe()} · {d.backend_name} · {d.precision}"

    def _internal(self, e: BaseException) -> str:
        """One line for an unexpected error; the traceback goes to ``<workdir>/ui.log``."""
        log = self.workdir / "ui.log"
        with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as f:
            f.write(f"--- {_dt.datetime.now().isoformat(timespec='seconds')}\n")
            f.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")[:200]
        return f"internal error ({type(e).__name__}: {first}); details in {log}"

    # -- inputs ---------------------------------------------------------------------------------------------------
    def _take_upload(self, path: str | os.PathLike, kinds: tuple[str, ...], what: str) -> Path:
        """Check an uploaded file's type and size and copy it into ``inputs/`` (a fresh name, never over another)."""
        src = Path(path)
        if not src.is_file():
            raise InputError(f"the uploaded {what} is missing; upload it again")
        suffix = src.suffix.lower()
        if suffix not in kinds:
            raise InputError(f"{src.name} is not a {what} this app takes: use one of {', '.join(kinds)}")
        size = src.stat().st_size
        if size == 0:
            raise InputError(f"{src.name} is empty (0 bytes); upload a valid {what}")
        if size > self.max_upload_bytes:
            raise InputError(f"{src.name} is {size / 2**20:.0f} MB, over this app's limit of "
                             f"{self.max_upload_bytes / 2**20:.0f} MB (--max-upload-mb)")
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.stem).strip("._")[:60] or what
        folder = self.workdir / "inputs"
        dest = folder / f"{stem}{suffix}"
        n = 1
        while dest.exists():
            if _same_file(src, dest):
                return dest
            n += 1
            dest = folder / f"{stem}-{n}{suffix}"
        tmp = folder / f".{dest.name}.part"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return dest

    def load_clip(self, path: str | os.PathLike) -> str:
        """Take an uploaded clip: checked like the CLI's input (type, size, ``video.probe``). Returns a summary."""
        from . import video

        dest = self._take_upload(path, VIDEO_SUFFIXES, "video clip")
        try:
            info = video.probe(dest)
        except DreamvidError:
            dest.unlink(missing_ok=True)
            raise
        with self._lock:
            self.clip, self.info, self.still, self._still_img = dest, info, None, None
            self.frame = min(self.frame, info.frame_count - 1)
            self._source = None
            self.notes.pop("still", None)
            self.notes["clip"] = (f"clip {dest.name}: {info.width}×{info.height}, {info.fps:g} fps, "
                                  f"{info.frame_count} frames, {info.duration:.2f} s")
            return self.notes["clip"]

    def load_song(self, path: str | os.PathLike) -> str:
        """Take an uploaded song: checked with the mux's own decoding (``video.check_song``)."""
        from . import video

        dest = self._take_upload(path, SONG_SUFFIXES, "song")
        try:
            video.check_song(dest)
        except DreamvidError:
            dest.unlink(missing_ok=True)
            raise
        with self._lock:
            self.song = dest
            self.notes["song"] = f"song {dest.name}"
            return self.notes["song"]

    def load_still(self, path: str | os.PathLike) -> str:
        """Take an uploaded still image (``images.read_image``: type, corrupt files)."""
        from .images import IMAGE_SUFFIXES, read_image

        dest = self._take_upload(path, IMAGE_SUFFIXES, "image")
        try:
            img = read_image(dest)
        except DreamvidError:
            dest.unlink(missing_ok=True)
            raise
        with self._lock:
            self.still, self._still_img = dest, img
            self.clip = self.info = None
            self.frame = 0
            self._source = None
            self.notes.pop("clip", None)
            self.notes["still"] = f"image {dest.name}: {img.shape[1]}×{img.shape[0]}"
            return self.notes["still"]

    def clear(self, what: str) -> None:
        with self._lock:
            if what == "clip":
                self.clip = self.info = None
            elif what == "song":
                self.song = None
            elif what == "still":
                self.still = self._still_img = None
            self.notes.pop(what, None)
            self._source = None

    def summary(self) -> str:
        """The loaded inputs, one line."""
        return " · ".join(self.notes[k] for k in ("clip", "still", "song") if k in self.notes) or "no input loaded"

    @property
    def frames(self) -> int:
        return self.info.frame_count if self.info is not None else 1

    # -- settings -------------------------------------------------------------------------------------------------
    def preset_choices(self) -> list[tuple[str, str]]:
        """(label, value) for the preset menu: built-in and user presets, then those saved in this folder."""
        out = [(n, n) for n in _presets.available()]
        out += [(f"{p.stem} (saved here)", str(p)) for p in sorted((self.workdir / "presets").glob("*.toml"))]
        if self.preset not in {v for _, v in out}:
            out.append((Path(self.preset).stem, self.preset))
        return out

    def _load_preset(self, name: str) -> Config:
        return resolve(_presets.load(name), preset=name if not name.endswith(".toml") else Path(name).stem)

    def set_preset(self, name: str) -> dict[str, Any]:
        """Switch to a preset; returns its settings for the page."""
        base = self._load_preset(name)
        with self._lock:
            react = self.settings.get("react", 1.0)
            self.preset, self.base = name, base
            self.settings = settings_of(base, react=react)
            return dict(self.settings)

    def lever(self, creativity: float) -> dict[str, Any]:
        """The settings the creativity lever stands for (layers, step size, steps, octaves), for the page."""
        from .creativity import lever

        table = lever(float(creativity))
        cfg = resolve({"dream": table})
        s = settings_of(cfg)
        return {k: s[k] for k in s if k.startswith("layer:") or k in ("step_size", "steps", "octaves")}

    def config(self, settings: Mapping[str, Any] | None = None) -> Config:
        """The Config of the page's settings: the preset, then the page's changes (as ``dreamvid render`` merges
        the preset and its flags)."""
        with self._lock:
            base, name = self.base, self.preset
            settings = dict(self.settings if settings is None else settings)
        layer = changes(base, settings)
        label = name if not name.endswith(".toml") else Path(name).stem
        return resolve(_presets.load(name), layer or None, preset=label)

    # -- the song ---------------------------------------------------------------------------------------------
    def features(self, config: Config):
        """The song's analysis at the clip's frame rate (cached), or None without a song or clip."""
        from .audio import analyze
        from .schedule import analysis_options

        song, info = self.song, self.info
        if song is None or info is None:
            return None
        opts = analysis_options(config.audio)
        key = (str(song), info.fps, info.frame_count, tuple(sorted(opts.items())))
        if key not in self._features:
            feats = analyze(song, fps=info.fps, n_frames=info.frame_count, **opts)
            with self._lock:
                self._features.clear()  # one song at a time: memory stays bounded
                self._features[key] = feats
        return self._features[key]

    def _schedule(self, cfg: Config, feats, react: float):
        """The clip's per-frame parameters, as ``pipeline.render`` builds them for a render of the whole clip."""
        from .schedule import build_schedule

        return build_schedule(feats, cfg.audio if feats is not None else {}, base=cfg.dream, blend=cfg.video.blend,
                              n_frames=self.frames, react=react, config=cfg, fps=self.info.fps)

    def plot(self, frame: int | None = None) -> Path | None:
        """The song's analysis plot with ``frame`` marked (``<workdir>/cache/analysis.png``), or None."""
        from .plot import plot_analysis
        from .schedule import analysis_options

        cfg = self.config()
        feats = self.features(cfg)
        if feats is None:
            return None
        k = self.frame if frame is None else frame
        out = self.workdir / "cache" / "analysis.png"
        key = (str(self.song), feats.fps, feats.n_frames, tuple(sorted(analysis_options(cfg.audio).items())), k)
        if self._plotted == key and out.is_file():  # a page (re)load: the plot as it is
            return out
        plot_analysis(feats, out, title=f"{self.song.name}: frame {k} at {k / feats.fps:.2f} s", overwrite=True,
                      dpi=60, marker=k / feats.fps)
        self._plotted = key
        return out

    # -- previews ---------------------------------------------------------------------------------------------
    def request_preview(self, frame: int, settings: Mapping[str, Any]) -> int:
        """Record a preview request and return its generation at once; the worker dreams only the newest."""
        with self._cond:
            self._gen += 1
            frame = int(max(0, min(int(frame or 0), self.frames - 1)))
            self.frame = frame
            self.settings = {**self.settings, **{k: v for k, v in settings.items() if v is not None}}
            self._req = (self._gen, frame, dict(self.settings), self._input_key())
            self._cond.notify_all()
            return self._gen

    def wait_preview(self, gen: int | None = None, timeout: float = 120.0) -> Preview | None:
        """Wait for the preview of request ``gen`` (default: the newest). None if a newer request superseded it
        (or on timeout): the caller shows nothing stale."""
        with self._cond:
            gen = self._gen if gen is None else gen
            self._cond.wait_for(lambda: (self._result is not None and self._result.gen >= gen) or self._gen > gen,
                                timeout=timeout)
            r = self._result
            return r if r is not None and r.gen == gen else None

    def last_preview(self) -> Preview | None:
        return self._result

    def _superseded(self, gen: int) -> bool:
        return self._gen != gen

    def _input_key(self) -> str:
        src = self.still or self.clip
        return "" if src is None else str(src)

    def _preview_loop(self) -> None:
        done = 0
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda d=done: self._req is not None and self._req[0] > d, timeout=30):
                    self._close_reader()  # idle: no decoder kept waiting
                    continue
                gen, frame, settings, key = self._req
            superseded = functools.partial(self._superseded, gen)
            try:
                result = self._dream_preview(gen, frame, settings, key, superseded)
            except _Superseded:
                done = gen
                continue
            except DreamvidError as e:
                result = Preview(gen, message=str(e), error=True)
            except Exception as e:  # noqa: BLE001 - the page gets one line
                result = Preview(gen, message=self._internal(e), error=True)
            with self._cond:
                done = gen
                if gen == self._gen or result.error:
                    self._result = result
                self._cond.notify_all()

    def _dream_preview(self, gen: int, frame: int, settings: dict, key: str, superseded) -> Preview:
        if not key:
            return Preview(gen, message="load a clip (and a song), or a still image, to see a preview", error=True)
        cfg = self.config(settings)
        react = float(settings.get("react", 1.0))
        rkey = json.dumps([key, frame, react, cfg.to_dict()], sort_keys=True, default=str)
        last = self._result
        if last is not None and last.key == rkey and not last.error:
            return dataclasses.replace(last, gen=gen)
        dreamer = self.dreamer(cancel=superseded)

        def on_step(_info):
            if superseded():
                raise _Superseded

        t = time.perf_counter()
        src = self._preview_source(frame)
        if superseded():
            raise _Superseded
        still = self._still_img is not None and self.still is not None and key == str(self.still)
        if still:  # as `dreamvid dream` does it
            params, target, what = cfg.dream, None, f"{self.still.name} at {src.shape[1]}×{src.shape[0]}"
        else:  # as the render does its first frame: the schedule's parameters at this frame, the governor
            feats = self.features(cfg)
            if superseded():
                raise _Superseded
            sched = self._schedule(cfg, feats, react)
            fp = sched.frame(frame)
            params, target = fp.dream, cfg.video.strength * fp.strength
            src = _moved(sched, src, frame)
            music = f", music ×{fp.strength:.2f}" if feats is not None and react > 0 else ""
            what = f"frame {frame} ({frame / self.info.fps:.2f} s) at {src.shape[1]}×{src.shape[0]}{music}"
        # the dream itself depends on the frame and the dream parameters only (a first frame carries nothing):
        # a change of the governor's strength, the coherence or the blend re-uses it
        raw_key = json.dumps([key, frame, dataclasses.asdict(params), hashlib.blake2b(src.tobytes()).hexdigest()],
                             sort_keys=True, default=str)
        if self._raw is not None and self._raw[0] == raw_key:
            raw, reused = self._raw[1], True
        else:
            from .coherence import Coherence

            plan = Coherence(cfg.video).plan(src, None, None, flows=None)
            raw = dreamer.dream_float(plan.init, params, rng=np.random.default_rng(params.seed), callback=on_step,
                                      anchor=plan.anchor)
            self._raw, reused = (raw_key, raw), False
        if still:
            from .dream import from_unit

            out = from_unit(raw)
        else:
            from .coherence import Coherence

            out = Coherence(cfg.video).finish(src, raw, target=target)
        dt = time.perf_counter() - t
        what = f"{what}: {'re-used the dream' if reused else 'dreamed'} in {dt:.2f} s"
        return Preview(gen, rkey, src, out, dt, what)

    def _preview_source(self, frame: int) -> np.ndarray:
        """The source frame at preview size (the last one is cached: the sliders re-dream the same frame)."""
        from .images import fit

        key = (self._input_key(), frame)
        if self._source is not None and self._source[0] == key:
            return self._source[1]
        if self._still_img is not None:
            src = fit(self._still_img, PREVIEW_SIDE)
        else:
            src = self._read_frame(frame)
        self._source = (key, src)
        return src

    def _read_frame(self, k: int) -> np.ndarray:
        """Clip frame ``k`` at preview size. The decoder is kept open after it (preview worker only): a scrub
        forward reads on from where it is instead of decoding the clip from its start again (``video.iter_frames``
        decodes and drops every frame before ``first``); a scrub back, or far ahead (see ``_READ_ON``), starts a
        new one."""
        from . import video

        clip, info = self.clip, self.info
        size = video.output_size(info.width, info.height, PREVIEW_SIDE)
        r = self._reader
        if r is None or r[0] != (clip, size) or not 0 <= k - r[1] < _READ_ON * k + 12:
            self._close_reader()
            r = self._reader = [(clip, size), k, video.iter_frames(clip, first=k, size=size, info=info)]
        src = None
        while r[1] <= k:
            src = next(r[2], None)
            if src is None:
                self._close_reader()
                raise InputError(f"{clip.name} gave no frame {k}")
            r[1] += 1
        return src

    def _close_reader(self) -> None:
        r, self._reader = self._reader, None
        if r is not None:
            r[2].close()  # ends its ffmpeg

    # -- jobs ---------------------------------------------------------------------------------------------------
    def _new_job(self, kind: str, output: Path) -> Job:
        with self._lock:
            if self.job is not None and self.job.active:
                raise OutputError(f"a {self.job.kind} is running; wait for it or stop it first")
            self._job_ids += 1
            self.job = Job(self._job_ids, kind, output)
            return self.job

    def start_strip(self, seconds: float = STRIP_SECONDS) -> Job:
        """Dream ``seconds`` of the clip from the current frame at preview size, coherent, with the song."""
        from .pipeline import RenderOptions

        if self.clip is None:
            raise InputError("load a clip first: the strip is a short render of it")
        if not 0.04 <= seconds <= 30:
            raise ConfigError(f"the strip is 0.04 to 30 seconds long, got {seconds:g}")
        cfg = self.config()
        start = self.frame / self.info.fps
        opts = RenderOptions(input=self.clip, output=self.workdir / "strips" / "strip.mp4",
                             song=self._song_from(start), start=start, duration=seconds, max_side=PREVIEW_SIDE,
                             react=float(self.settings.get("react", 1.0)), overwrite=True, crf=20,
                             x264_preset="veryfast")
        return self._run(self._new_job("strip", opts.output), opts, cfg)

    def _song_from(self, seconds: float) -> Path | None:
        """The song from ``seconds`` on, for a strip that starts there: it hears and reacts to the music a render of
        the whole clip has at that frame (a render's song starts with its first frame). ``strips/<song>-from-<ms>
        ms.wav``, mono 44.1 kHz 16-bit, made once per start (the previous one is removed); silence past the song's
        end."""
        if self.song is None or seconds <= 0:
            return self.song
        import soundfile as sf

        from .audio import load_song
        from .fsutil import atomic_output

        folder = self.workdir / "strips"
        out = folder / f"{self.song.stem}-from-{round(seconds * 1000)}ms.wav"
        if not out.is_file():
            y, sr = load_song(self.song, sr=44100)
            tail = y[round(seconds * sr):]
            if tail.size == 0:
                tail = np.zeros(sr // 10, np.float32)
            for old in folder.glob("*-from-*ms.wav"):
                old.unlink(missing_ok=True)
            with atomic_output(out, overwrite=True) as tmp:
                sf.write(str(tmp), tail, sr, subtype="PCM_16", format="WAV")
        return out

    def render_name(self) -> str:
        src = self.still or self.clip
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", src.stem if src else "render")[:40]
        preset = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(self.preset).stem)[:30]
        return f"{stem}-{preset}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"

    def start_render(self, *, start: float = 0.0, duration: float | None = None, max_side: int | None = None,
                     crf: int = 18, loop_song: bool = False) -> Job:
        """The full render (``pipeline.render``, as ``dreamvid render``) into ``renders/``, in a thread. A still
        image is dreamed at full size instead (``stills.dream_files``, as ``dreamvid dream``)."""
        from .pipeline import RenderOptions

        if max_side is not None and max_side < 16:
            raise ConfigError(f"max side must be at least 16, got {max_side}")
        if not 0 <= crf <= 51:
            raise ConfigError(f"crf must be from 0 to 51, got {crf}")
        cfg = self.config()
        renders = self.workdir / "renders"
        if self.still is not None and self._still_img is not None:
            return self._run_still(self._new_job("still", renders / f"{self.render_name()}.png"), cfg, max_side)
        if self.clip is None:
            raise InputError("load a clip (or a still image) to render")
        if start < 0:
            raise ConfigError(f"start must be >= 0, got {start}")
        if duration is not None and not duration > 0:
            raise ConfigError(f"duration must be above 0 seconds, got {duration}")
        opts = RenderOptions(input=self.clip, output=renders / f"{self.render_name()}.mp4", song=self.song,
                             loop_song=loop_song, start=start, duration=duration, max_side=max_side,
                             react=float(self.settings.get("react", 1.0)), crf=crf)
        from .pipeline import check

        check(opts)  # one clear line before the thread starts
        job = self._new_job("render", opts.output)
        record = {"options": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(opts).items()},
                  "config": cfg.to_dict(), "preset": self.preset}
        try:
            atomic_write_bytes(_job_record(opts.output), json.dumps(record, indent=2).encode(), overwrite=False)
        except BaseException:
            job.status = "failed"
            raise
        return self._run(job, opts, cfg)

    def resumable(self) -> list[dict[str, Any]]:
        """Interrupted renders in ``renders/`` that :meth:`resume` can finish: name, frames done and total."""
        from .pipeline import work_dir_for

        out = []
        active = self.job.output if self.job is not None and self.job.active else None
        for rec in sorted((self.workdir / "renders").glob("*.ui-job.json")):
            output = rec.with_name(rec.name[: -len(".ui-job.json")] + ".mp4")
            work = work_dir_for(output)
            if output == active or output.exists() or not (work / "state.json").is_file():
                continue
            try:
                done = int(json.loads((work / "state.json").read_text()).get("done", 0))
                total = int(json.loads((work / "job.json").read_text()).get("count", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                continue
            if done > 0:
                out.append({"name": output.stem, "done": done, "total": total})
        return out

    def resume(self, name: str) -> Job:
        """Continue an interrupted render of ``renders/<name>.mp4`` with its own settings (``resume=True``)."""
        from .pipeline import RenderOptions

        if not name or not _NAME_RE.match(name):
            raise InputError("choose an interrupted render to resume")
        output = self.workdir / "renders" / f"{name}.mp4"
        try:
            record = json.loads(_job_record(output).read_text())
        except (OSError, ValueError):
            raise InputError(f"no interrupted render named {name} in {self.workdir / 'renders'}") from None
        o = dict(record["options"])
        for k in ("input", "output", "song"):
            o[k] = Path(o[k]) if o.get(k) else None
        for k in ("frames", "held"):  # tuples in RenderOptions, lists in JSON
            if isinstance(o.get(k), list):
                o[k] = tuple(o[k])
        known = {f.name for f in dataclasses.fields(RenderOptions)}
        opts = RenderOptions(**{**{k: v for k, v in o.items() if k in known}, "resume": True, "overwrite": False})
        cfg = resolve(record["config"])
        from .pipeline import check

        check(opts)
        return self._run(self._new_job("render", opts.output), opts, cfg)

    def stop(self) -> bool:
        """Ask the running job to stop after its current frame; a render can then be resumed."""
        job = self.job
        if job is None or not job.active:
            return False
        job.stop.set()
        return True

    def _run(self, job: Job, opts, cfg: Config) -> Job:
        from .pipeline import render

        def on_start(done, total):
            job.status, job.done, job.total, job.resumed_from = "running", done, total, done

        def on_frame(ev):
            job.done = ev.index + 1  # the frame is finished (kept by a stop) before this is called
            if job.stop.is_set():
                raise _Stopped
            if ev.resumed:  # a frame the interrupted run had finished
                return
            now = time.time()
            if job.first_frame_at is None:
                job.first_frame_at = now - ev.seconds
            job.rate = (job.done - job.resumed_from) / max(1e-6, now - job.first_frame_at)

        def run():
            try:
                dreamer = self.dreamer(cancel=job.stop.is_set)
                job.status = "running"
                job.report = render(opts, cfg, dreamer, on_start=on_start, on_frame=on_frame,
                                    on_warning=lambda m: setattr(job, "message", f"warning: {m}"))
                job.done = job.report.get("frames", job.done)
                job.status, job.message = "done", f"{job.kind} done: {job.output.name}"
            except (_Stopped, _Superseded):
                job.status = "stopped"
                job.message = (f"stopped after {job.done} frames; resume it below" if job.kind == "render"
                               and self.resumable() else f"{job.kind} stopped")
            except DreamvidError as e:
                job.status, job.message = "failed", f"error: {e}"
            except Exception as e:  # noqa: BLE001 - one line on the page, the traceback in ui.log
                job.status, job.message = "failed", f"error: {self._internal(e)}"

        threading.Thread(target=run, name=f"dreamvid-ui-{job.kind}", daemon=True).start()
        return job

    def _run_still(self, job: Job, cfg: Config, max_side: int | None) -> Job:
        from .dream.octaves import octave_shapes
        from .images import fit
        from .stills import Job as StillJob
        from .stills import dream_files

        img = fit(self._still_img, max_side)
        job.total = len(octave_shapes(*img.shape[:2], octaves=cfg.dream.octaves,
                                      scale=cfg.dream.octave_scale)) * cfg.dream.steps

        def on_step(_info):
            if job.stop.is_set():
                raise _Stopped
            job.done += 1
            now = time.time()
            job.first_frame_at = job.first_frame_at or job.started
            job.rate = job.done / max(1e-6, now - job.first_frame_at)

        def run():
            try:
                dreamer = self.dreamer(cancel=job.stop.is_set)
                job.status = "running"
                dream_files([StillJob(self.still, job.output)], cfg, dreamer, images=[img], on_step=on_step)
                job.status, job.message = "done", f"image done: {job.output.name}"
                job.report = {"output": str(job.output), "size": [img.shape[1], img.shape[0]]}
            except (_Stopped, _Superseded):
                job.status, job.message = "stopped", "stopped"
            except DreamvidError as e:
                job.status, job.message = "failed", f"error: {e}"
            except Exception as e:  # noqa: BLE001
                job.status, job.message = "failed", f"error: {self._internal(e)}"

        threading.Thread(target=run, name="dreamvid-ui-still", daemon=True).start()
        return job

    # -- presets ------------------------------------------------------------------------------------------------
    def save_preset(self, name: str, *, description: str = "", overwrite: bool = False) -> Path:
        """Write the current settings as ``<workdir>/presets/<name>.toml``, a preset ``dreamvid render --preset``
        reads unchanged (checked by reading it back before it is written, atomically)."""
        name = (name or "").strip()
        if name.lower().endswith(".toml"):
            name = name[:-5]
        if not _NAME_RE.match(name) or name.startswith("."):
            raise ConfigError("name the preset with letters, digits, '-', '_' or '.', e.g. my-dream (at most 64)")
        cfg = self.config()
        table = cfg.to_dict()
        table.pop("preset", None)
        table["description"] = description.strip() or f"Saved from dreamvid ui (from the preset {cfg.preset})."
        text = f"# Saved by dreamvid ui on {_dt.date.today().isoformat()}.\n" + to_toml(table)
        from .config import tomllib

        again = resolve(tomllib.loads(text))
        if json.dumps({**again.to_dict(), "preset": None}, sort_keys=True, default=str) != json.dumps(
                {**table, "preset": None}, sort_keys=True, default=str):
            raise ConfigError("these settings do not survive a round trip through TOML; please report it")
        path = self.workdir / "presets" / f"{name}.toml"
        if path.exists() and not overwrite:
            raise OutputError(f"a preset named {name} exists in {path.parent}: tick overwrite, or choose another name")
        atomic_write_bytes(path, text.encode(), overwrite=overwrite)
        return path


def _moved(schedule, src: np.ndarray, k: int) -> np.ndarray:
    """Footage frame ``k`` as the render dreams it: moved by the ``[motion]`` camera up to ``k`` and the music's zoom
    pulse (the pipeline's own mover)."""
    from . import pipeline

    return pipeline.mover(schedule, (src.shape[1], src.shape[0]))(k, src)


def _job_record(output: Path) -> Path:
    return output.with_name(output.stem + ".ui-job.json")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# the page


def _progress_html(job: Job | None) -> str:
    if job is None:
        return "<div id='dv-progress-text'>no render yet</div>"
    pct = 100.0 * job.done / job.total if job.total else 0.0
    if job.status == "done":
        pct = 100.0
    eta = job.eta
    bits = [f"{job.kind}: {job.status}", f"{job.done}/{job.total or '?'}"]
    if job.rate > 0 and job.active:
        unit = "steps" if job.kind == "still" else "frames"
        bits.append(f"{job.rate:.2f} {unit}/s")
    if eta is not None and job.active:
        bits.append(f"eta {int(eta) // 60}:{int(eta) % 60:02d}")
    if job.message:
        bits.append(job.message)
    colour = {"failed": "#d62728", "stopped": "#ff7f0e", "done": "#2ca02c"}.get(job.status, "#1f77b4")
    return (f"<div style='border:1px solid #8888;border-radius:4px;height:14px;overflow:hidden'>"
            f"<div id='dv-bar' style='width:{pct:.1f}%;height:100%;background:{colour}'></div></div>"
            f"<div id='dv-progress-text' data-status='{job.status}'>{html.escape(' · '.join(map(str, bits)))}</div>")


_MEASURES = ("frames", "size", "fps", "temporal_stability", "dream_strength", "dream_gain", "audio_sync",
             "dream_seconds_per_frame")


def _measures_md(job: Job | None) -> str:
    if job is None or job.report is None:
        return ""
    r = job.report
    rows = [f"| {k} | {r[k] if not isinstance(r[k], list) else '×'.join(map(str, r[k]))} |" for k in _MEASURES
            if k in r]
    if "seconds" in r and isinstance(r["seconds"], Mapping):
        rows.append(f"| seconds (this run) | {r['seconds'].get('total_this_run', '')} |")
    return "| measure | value |\n|---|---|\n" + "\n".join(rows) if rows else ""


def build(studio: Studio):
    """The gradio Blocks page over ``studio``."""
    import gradio as gr

    ctl = controls()
    comps: dict[str, Any] = {}
    s = studio.settings

    def make(c: Control):
        if c.choices:
            return gr.Dropdown(list(c.choices), value=s.get(c.key), label=c.label, info=c.info or None,
                               elem_id=f"ctl-{c.key.replace(':', '-')}")
        return gr.Slider(c.lo, c.hi, value=s.get(c.key) if s.get(c.key) is not None else c.lo, step=c.step,
                         label=c.label, info=c.info or None, elem_id=f"ctl-{c.key.replace(':', '-')}")

    with gr.Blocks(title="dreamvid", analytics_enabled=False, delete_cache=(600, 1800)) as page:
        gr.Markdown("## dreamvid: tune a dream by eye, then render")
        model_md = gr.Markdown(studio.model_status(), elem_id="model-status")
        message = gr.Markdown("", elem_id="message")
        with gr.Row():
            clip_in = gr.File(label="clip", file_types=list(VIDEO_SUFFIXES), elem_id="clip-upload")
            song_in = gr.File(label="song", file_types=list(SONG_SUFFIXES), elem_id="song-upload")
            still_in = gr.File(label="or a still image", file_types=[".jpg", ".jpeg", ".png", ".webp", ".bmp",
                                                                      ".tif", ".tiff"], elem_id="still-upload")
            preset = gr.Dropdown(studio.preset_choices(), value=studio.preset, label="preset", elem_id="preset")
        inputs_md = gr.Markdown("", elem_id="inputs")
        with gr.Row():
            source_img = gr.Image(label="source", interactive=False, elem_id="source", height=PREVIEW_SIDE)
            preview_img = gr.Image(label="dreamed (preview)", interactive=False, elem_id="preview",
                                   height=PREVIEW_SIDE)
        preview_md = gr.Markdown("", elem_id="preview-info")
        frame = gr.Slider(0, max(1, studio.frames - 1), value=studio.frame, step=1, label="frame", elem_id="frame")
        with gr.Row():
            with gr.Column():
                with gr.Accordion("dream", open=True):
                    for c in ctl:
                        if c.section in ("dream",) or c.key == "strength":
                            comps[c.key] = make(c)
                with gr.Accordion("coherence and music", open=True):
                    for c in ctl:
                        if c.section == "video" and c.key != "strength" or c.section is None:
                            comps[c.key] = make(c)
            with gr.Column(), gr.Accordion("layers and their weights (0 = off)", open=True):
                for c in ctl:
                    if c.section == "layers":
                        comps[c.key] = make(c)
        keys = [c.key for c in ctl]
        setting_comps = [comps[k] for k in keys]
        plot_img = gr.Image(label="the song's analysis (orange: this frame)", interactive=False,
                            elem_id="analysis", visible=True)
        with gr.Accordion("strip: a short coherent render at preview size", open=True):
            with gr.Row():
                strip_s = gr.Slider(0.2, 8.0, value=STRIP_SECONDS, step=0.2, label="seconds", elem_id="strip-seconds")
                strip_btn = gr.Button("Dream a strip from this frame", elem_id="strip-button")
            strip_vid = gr.Video(label="strip", autoplay=True, loop=True, interactive=False, elem_id="strip")
        with gr.Accordion("render", open=True):
            with gr.Row():
                r_start = gr.Number(0.0, label="start (s)", elem_id="render-start")
                r_dur = gr.Number(None, label="duration (s, empty: to the end)", elem_id="render-duration")
                r_side = gr.Number(None, label="max side (px, empty: full size)", precision=0, elem_id="render-side")
                r_crf = gr.Number(18, label="crf", precision=0, elem_id="render-crf")
            with gr.Row():
                render_btn = gr.Button("Render", variant="primary", elem_id="render-button")
                stop_btn = gr.Button("Stop", elem_id="stop-button")
            progress = gr.HTML(_progress_html(studio.job), elem_id="progress")
            measures = gr.Markdown(_measures_md(studio.job), elem_id="measures")
            download = gr.File(label="download", interactive=False, elem_id="download")
            with gr.Row():
                resume_dd = gr.Dropdown([], label="interrupted renders", elem_id="resume-choice")
                resume_btn = gr.Button("Resume", elem_id="resume-button")
        with gr.Accordion("save preset", open=True):
            with gr.Row():
                p_name = gr.Textbox(label="name", placeholder="my-dream", elem_id="preset-name")
                p_desc = gr.Textbox(label="description", elem_id="preset-description")
                p_over = gr.Checkbox(False, label="overwrite", elem_id="preset-overwrite")
                p_btn = gr.Button("Save preset", elem_id="preset-save")
            p_msg = gr.Markdown("", elem_id="preset-message")
        seen = gr.State(None)
        timer = gr.Timer(1.0)

        # -- handlers: each returns at once or reports one line; none holds the page ----------------------------
        def on_input(kind: str, load: Callable[[str], str]):
            def handler(path):
                if path is None:
                    return gr.skip(), gr.skip(), gr.skip(), gr.skip()
                try:
                    load(path)
                except DreamvidError as e:  # one line on the page (the previous input, if any, stays loaded)
                    return f"**error:** {e}", gr.skip(), gr.skip(), gr.skip()
                except Exception as e:  # noqa: BLE001 - one line, the traceback in ui.log
                    return f"**error:** {studio._internal(e)}", gr.skip(), gr.skip(), gr.skip()
                fr = gr.update(maximum=max(1, studio.frames - 1), value=studio.frame,
                               interactive=studio.info is not None)
                return studio.summary(), gr.skip(), fr, _plot_or_none()

            return handler

        def on_clear(kind: str):
            def handler():
                if kind not in studio.notes:  # the box held a rejected upload: its error line stays
                    return gr.skip(), gr.skip()
                studio.clear(kind)
                return studio.summary(), _plot_or_none()

            return handler

        def _plot_or_none():
            try:
                p = studio.plot()
            except DreamvidError:
                return None
            return str(p) if p else None

        def on_preset(name):
            try:
                vals = studio.set_preset(name)
            except DreamvidError as e:
                return [f"**error:** {e}"] + [gr.update() for _ in keys]
            return [f"preset {Path(name).stem}: {_presets_describe(name)}"] + [vals.get(k) for k in keys]

        def on_lever(c):
            vals = studio.lever(c)
            return [vals.get(k, gr.update()) if k in vals else gr.update() for k in keys]

        def request(fr, *vals):
            studio.request_preview(int(fr or 0), dict(zip(keys, vals)))
            return "dreaming…"

        def deliver():
            r = studio.wait_preview()
            if r is None:
                return gr.skip(), gr.skip(), gr.skip()
            if r.error:
                return gr.skip(), gr.skip(), f"**{r.message}**"
            return r.source, r.image, r.message

        def on_frame_plot(fr):
            studio.frame = int(fr or 0)
            return _plot_or_none() or gr.skip()

        def on_strip(seconds):
            try:
                studio.start_strip(float(seconds))
                return "strip started"
            except DreamvidError as e:
                return f"**error:** {e}"
            except Exception as e:  # noqa: BLE001
                return f"**error:** {studio._internal(e)}"

        def on_render(start, dur, side, crf):
            try:
                studio.start_render(start=float(start or 0.0), duration=float(dur) if dur else None,
                                    max_side=int(side) if side else None, crf=int(crf if crf is not None else 18))
                return "render started"
            except DreamvidError as e:
                return f"**error:** {e}"
            except Exception as e:  # noqa: BLE001
                return f"**error:** {studio._internal(e)}"

        def on_stop():
            return "stopping after this frame…" if studio.stop() else "nothing is running"

        def on_resume(name):
            try:
                studio.resume(name)
                return "resumed"
            except DreamvidError as e:
                return f"**error:** {e}"
            except Exception as e:  # noqa: BLE001
                return f"**error:** {studio._internal(e)}"

        def on_save(name, desc, over):
            try:
                path = studio.save_preset(name, description=desc, overwrite=bool(over))
            except DreamvidError as e:
                return f"**error:** {e}", gr.update()
            except Exception as e:  # noqa: BLE001
                return f"**error:** {studio._internal(e)}", gr.update()
            return (f"saved `{path}`: `dreamvid render CLIP --preset {path}` reads it",
                    gr.update(choices=studio.preset_choices()))

        def poll(last):
            job = studio.job
            key = None if job is None else (job.id, job.status, job.done, job.message)
            resum = [r["name"] for r in studio.resumable()]
            model = studio.model_status()
            state = (key, tuple(resum), model)
            if state == last:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), last
            finished = job is not None and job.status == "done" and (last is None or last[0] != key)
            strip = str(job.output) if finished and job.kind == "strip" else gr.skip()
            file = str(job.output) if finished and job.kind != "strip" else gr.skip()
            return (_progress_html(job), _measures_md(job), file, strip,
                    gr.update(choices=resum, value=resum[0] if resum else None), model, state)

        def on_load():
            st = studio.settings
            r = studio.last_preview()
            job = studio.job
            out = [
                gr.update(maximum=max(1, studio.frames - 1), value=studio.frame),
                gr.update(choices=studio.preset_choices(), value=studio.preset),
                studio.summary(),
                r.source if r is not None and not r.error else None,
                r.image if r is not None and not r.error else None,
                r.message if r is not None else "",
                _plot_or_none(),
                _progress_html(job),
                _measures_md(job),
                str(job.output) if job is not None and job.status == "done" and job.kind != "strip" else None,
                str(job.output) if job is not None and job.status == "done" and job.kind == "strip" else None,
                *(str(p) if p is not None else None for p in (studio.clip, studio.song, studio.still)),
            ]
            return out + [st.get(k) for k in keys]

        # -- wiring ---------------------------------------------------------------------------------------------
        evs = []
        for kind, comp, load in (("clip", clip_in, studio.load_clip), ("song", song_in, studio.load_song),
                                 ("still", still_in, studio.load_still)):
            evs.append(comp.upload(on_input(kind, load), comp, [inputs_md, comp, frame, plot_img],
                                   show_progress="minimal"))
            comp.clear(on_clear(kind), None, [inputs_md, plot_img], show_progress="hidden")
        # .input: the user's choice only (a page reload sets the value too, and must keep the tuned sliders)
        preset.input(on_preset, preset, [message, *setting_comps], show_progress="hidden")
        if "creativity" in comps:
            comps["creativity"].input(on_lever, comps["creativity"], setting_comps, show_progress="hidden")
        req_triggers = [c.change for c in setting_comps] + [frame.change]
        req = gr.on(req_triggers, request, [frame, *setting_comps], preview_md, trigger_mode="always_last",
                    show_progress="hidden", concurrency_limit=None)
        req.then(deliver, None, [source_img, preview_img, preview_md], show_progress="hidden",
                 concurrency_limit=None)
        for ev in evs:
            ev.then(request, [frame, *setting_comps], preview_md, show_progress="hidden").then(
                deliver, None, [source_img, preview_img, preview_md], show_progress="hidden",
                concurrency_limit=None)
        frame.release(on_frame_plot, frame, plot_img, show_progress="hidden", trigger_mode="always_last")
        strip_btn.click(on_strip, strip_s, message)
        render_btn.click(on_render, [r_start, r_dur, r_side, r_crf], message)
        stop_btn.click(on_stop, None, message)
        resume_btn.click(on_resume, resume_dd, message)
        p_btn.click(on_save, [p_name, p_desc, p_over], [p_msg, preset])
        timer.tick(poll, seen, [progress, measures, download, strip_vid, resume_dd, model_md, seen],
                   show_progress="hidden")
        page.load(on_load, None, [frame, preset, inputs_md, source_img, preview_img, preview_md, plot_img, progress,
                                  measures, download, strip_vid, clip_in, song_in, still_in, *setting_comps])
    return page


def _presets_describe(name: str) -> str:
    try:
        return _presets.describe(name)
    except DreamvidError:
        return ""


def _check_port(host: str, port: int) -> None:
    """One clear line, before anything starts, when ``host:port`` cannot be served (taken, or no such address)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host} is not an address of this machine ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            why = "the port is in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise OutputError(f"cannot listen on {host}:{port}: {why}; choose another --port or --host") from None


def serve(*, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          workdir: str | os.PathLike = DEFAULT_WORKDIR, preset: str | None = None, weights: str | None = None,
          backend: str | None = None, precision: str = "fp32", max_upload_mb: float = DEFAULT_UPLOAD_MB,
          block: bool = True,
          on_ready: Callable[[str], None] | None = None):
    """Start the app: build the Studio (the model loads in the background) and serve the page on ``host:port``.

    Gradio's upload cache is put inside ``workdir`` (``GRADIO_TEMP_DIR``), so nothing is written outside it.
    ``on_ready(url)`` is called once the page is served; with ``block`` this returns when the server stops.
    """
    check_available()
    _check_port(host, port)
    from . import backends

    # The framework's import briefly takes over fd 2 and the import system (backends.load): done here, on the main
    # thread, before any other thread runs; the model is then built in the background while the page is served.
    backends.load(backend)
    studio = Studio(workdir, weights=weights, backend=backend, precision=precision, max_upload_mb=max_upload_mb)
    if preset:
        studio.set_preset(preset)
    os.environ["GRADIO_TEMP_DIR"] = str(studio.workdir / "cache" / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    studio.start()
    page = build(studio)
    page.queue(default_concurrency_limit=1)
    try:
        _, url, share_url = page.launch(
            server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
            allowed_paths=[str(studio.workdir)], max_file_size=studio.max_upload_bytes, ssr_mode=False,
            show_error=False, footer_links=[],
        )
    except OSError:
        raise OutputError(f"cannot listen on {host}:{port}: the port is in use; choose another --port") from None
    if on_ready is not None:
        on_ready(share_url or url)
    if block:
        try:
            while True:
                time.sleep(3600)
        finally:
            page.close()
    return page, studio
