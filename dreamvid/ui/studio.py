"""The Studio: what the page works on, kept server-side, composed of one part per job.

One per app process, so a page reload re-attaches to it: the inputs (:class:`~.inputs.Inputs`), the settings (a
preset and the page's changes, merged by ``config.resolve`` as ``dreamvid render`` merges a preset and its
flags), the one Dreamer (built in the background), the preview worker (:class:`~.preview.PreviewWorker`), the job
runner (:class:`~.jobs.JobRunner`) and the saved presets (:class:`~.store.PresetStore`).

The preview and the strip show one film, :meth:`Studio.film`: a render of the whole clip at preview size, with
the song. The preview of frame k is that film's frame k as a render of the range from k dreams it; the strip is a
render of its frames k..k+n (``RenderOptions.frames``), so ``%``, ``t``, the beats, the camera and the song are
the whole film's.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import presets as _presets
from ..config import Config, resolve
from ..errors import ConfigError, DreamvidError, InputError, OutputError
from ..options import OptionError, check_option
from .access import PLOT
from .controls import changes, settings_of
from .inputs import DEFAULT_UPLOAD_MB, Inputs
from .jobs import Job, JobRunner
from .names import render_name
from .preview import PREVIEW_SIDE, Preview, PreviewWorker, Superseded
from .store import PresetStore

__all__ = ["Studio", "STRIP_SECONDS"]

STRIP_SECONDS = 2.0


class Studio:
    """What the page works on. One per app process; a page reload finds it as it was.

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
        self._lock = threading.RLock()
        self.inputs = Inputs(self.workdir / "inputs", max_upload_bytes=int(max_upload_mb * 1024 * 1024))
        self.presets = PresetStore(self.workdir / "presets")
        self.previews = PreviewWorker(self)
        self.jobs = JobRunner(self.workdir / "renders", dreamer=self.dreamer, one_line=self.one_line)
        self.preset: str = _presets.DEFAULT
        self.base: Config = self._load_preset(self.preset)
        self.settings: dict[str, Any] = settings_of(self.base)
        self.frame = 0
        self._film: tuple[str, Any] | None = None  # (key, pipeline.Film): the film the page shows
        self._film_lock = threading.Lock()
        self._plotted: tuple | None = None  # (features, frame): what cache/analysis.png shows
        self._dreamer = dreamer
        self._dreamer_ready = threading.Event()
        self._dreamer_error: str | None = None
        if dreamer is not None:
            self._dreamer_ready.set()

    # -- the model ----------------------------------------------------------------------------------------------
    def start(self) -> Studio:
        """Start the preview worker, and build the Dreamer in the background (the page works meanwhile)."""
        self.previews.start()
        if self._dreamer is None and not self._dreamer_ready.is_set():
            threading.Thread(target=self._build_dreamer, name="dreamvid-ui-model", daemon=True).start()
        return self

    def _build_dreamer(self) -> None:
        try:
            from ..dream import Dreamer

            self._dreamer = Dreamer(weights=self.weights, backend=self.backend, precision=self.precision,
                                    seed=self.base.dream.seed)
        except Exception as e:  # noqa: BLE001 - shown as one line
            self._dreamer_error = self.one_line(e)
        finally:
            self._dreamer_ready.set()

    def dreamer(self, *, wait: float | None = None, cancel: Callable[[], bool] | None = None):
        """The Dreamer, waiting for it to be built (``cancel`` is polled meanwhile: :class:`Superseded`)."""
        deadline = None if wait is None else time.monotonic() + wait
        while not self._dreamer_ready.wait(0.1):
            if cancel is not None and cancel():
                raise Superseded
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

    def one_line(self, e: BaseException) -> str:
        """An error as the one line the page shows: dreamvid's own message (a render option by the name the page
        gives it), else ``internal error (...)`` with the traceback in ``<workdir>/ui.log``."""
        if isinstance(e, OptionError):
            return e.as_key()
        if isinstance(e, DreamvidError):
            return str(e)
        log = self.workdir / "ui.log"
        with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as f:
            f.write(f"--- {_dt.datetime.now().isoformat(timespec='seconds')}\n")
            f.write("".join(traceback.format_exception(type(e), e, e.__traceback__)))
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")[:200]
        return f"internal error ({type(e).__name__}: {first}); details in {log}"

    # -- inputs ---------------------------------------------------------------------------------------------------
    def load_clip(self, path: str | os.PathLike) -> str:
        """Take an uploaded clip (:meth:`Inputs.load_clip`); the frame stays within it."""
        note = self.inputs.load_clip(path)
        self.frame = min(self.frame, self.inputs.frames - 1)
        return note

    def load_still(self, path: str | os.PathLike) -> str:
        """Take an uploaded still image (:meth:`Inputs.load_still`)."""
        note = self.inputs.load_still(path)
        self.frame = 0
        return note

    # -- settings -------------------------------------------------------------------------------------------------
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
        from ..creativity import lever

        s = settings_of(resolve({"dream": lever(float(creativity))}))
        return {k: s[k] for k in s if k.startswith("layer:") or k in ("step_size", "steps", "octaves")}

    def config(self, settings: Mapping[str, Any] | None = None) -> Config:
        """The Config of the page's settings: the preset, then the page's changes."""
        with self._lock:
            base, name = self.base, self.preset
            settings = dict(self.settings if settings is None else settings)
        label = name if not name.endswith(".toml") else Path(name).stem
        return resolve(_presets.load(name), changes(base, settings) or None, preset=label)

    def save_preset(self, name: str, *, description: str = "", overwrite: bool = False) -> Path:
        """The current settings as ``<workdir>/presets/<name>.toml`` (:meth:`PresetStore.save`)."""
        return self.presets.save(name, self.config(), description=description, overwrite=overwrite)

    # -- the film the page shows ----------------------------------------------------------------------------------
    def film_options(self, *, react: float | None = None, **extra):
        """The RenderOptions of the film the preview and the strip show: the whole clip at preview size, with the
        song; ``extra`` adds to them (the strip: its frames and output)."""
        from ..pipeline import RenderOptions

        if self.inputs.clip is None:
            raise InputError("load a clip first")
        react = float(self.settings.get("react", 1.0)) if react is None else react
        return RenderOptions(**{"input": self.inputs.clip, "output": self.workdir / "strips" / "strip.mp4",
                                "song": self.inputs.song, "max_side": PREVIEW_SIDE, "react": react, **extra})

    def film(self, config: Config | None = None, react: float | None = None):
        """The film the page shows (``pipeline.Film`` of :meth:`film_options`) with ``config`` (default: the
        page's): its schedule and the song's analysis, kept while the clip, the song and the settings stay."""
        from .. import video
        from ..pipeline import Film

        config = self.config() if config is None else config
        opts = self.film_options(react=react)
        info = self.inputs.info
        key = json.dumps([str(opts.input), str(opts.song), opts.react, config.to_dict()], sort_keys=True, default=str)
        with self._film_lock:
            if self._film is None or self._film[0] != key:
                first, count = video.frame_range(info, opts.start, opts.duration)
                self._film = (key, Film(opts, config, info, first, count))
            return self._film[1]

    def plot(self, frame: int | None = None) -> Path | None:
        """The song's analysis plot with ``frame`` marked (``<workdir>/cache/analysis.png``), or None."""
        from ..plot import plot_analysis

        if self.inputs.song is None or self.inputs.info is None:
            return None
        feats = self.film().features
        k = self.frame if frame is None else frame
        out = self.workdir / PLOT
        if self._plotted is None or self._plotted[0] is not feats or self._plotted[1] != k or not out.is_file():
            plot_analysis(feats, out, title=f"{self.inputs.song.name}: frame {k} at {k / feats.fps:.2f} s",
                          overwrite=True, dpi=60, marker=k / feats.fps)
            self._plotted = (feats, k)
        return out

    # -- previews ---------------------------------------------------------------------------------------------
    def request_preview(self, frame: int, settings: Mapping[str, Any]) -> int:
        """Record a preview request with the page's settings; returns its generation at once."""
        with self._lock:
            self.frame = int(max(0, min(int(frame or 0), self.inputs.frames - 1)))
            self.settings = {**self.settings, **{k: v for k, v in settings.items() if v is not None}}
            return self.previews.request(self.frame, dict(self.settings), self.inputs.key)

    def wait_preview(self, gen: int | None = None, timeout: float = 120.0) -> Preview | None:
        return self.previews.wait(gen, timeout)

    # -- jobs ---------------------------------------------------------------------------------------------------
    @property
    def job(self) -> Job | None:
        return self.jobs.current

    def start_strip(self, seconds: float = STRIP_SECONDS) -> Job:
        """Render ``seconds`` of the film from the current frame at preview size, with the song: frames k..k+n of a
        render of the whole clip (``RenderOptions.frames``), into ``strips/strip.mp4``."""
        if self.inputs.clip is None:
            raise InputError("load a clip first: the strip is a short render of it")
        if not 0.04 <= seconds <= 30:
            raise ConfigError(f"the strip is 0.04 to 30 seconds long, got {seconds:g}")
        info, k = self.inputs.info, self.frame
        n = max(1, min(round(seconds * info.fps), info.frame_count - k))
        opts = self.film_options(frames=(k, n), silent=False, overwrite=True, crf=20, x264_preset="veryfast")
        return self.jobs.render("strip", opts, self.config())

    def render_name(self) -> str:
        """A new render's name: the clip's (or image's) and the preset's, and the time (:mod:`.names`)."""
        src = self.inputs.still or self.inputs.clip
        return render_name(src.stem if src else "render", Path(self.preset).stem)

    def start_render(self, *, start: float = 0.0, duration: float | None = None, max_side: int | None = None,
                     crf: int = 18, loop_song: bool = False) -> Job:
        """The full render (``pipeline.render``, as ``dreamvid render``) into ``renders/``, in a thread. A still
        image is dreamed at full size instead (``stills.dream_files``, as ``dreamvid dream``)."""
        from ..images import fit
        from ..pipeline import RenderOptions

        cfg, inputs, renders = self.config(), self.inputs, self.workdir / "renders"
        if inputs.still is not None and inputs.still_img is not None:
            check_option("max-side", max_side)
            return self.jobs.still(inputs.still, fit(inputs.still_img, max_side), renders / f"{self.render_name()}.png",
                                   cfg)
        if inputs.clip is None:
            raise InputError("load a clip (or a still image) to render")
        opts = RenderOptions(input=inputs.clip, output=renders / f"{self.render_name()}.mp4", song=inputs.song,
                             loop_song=loop_song, start=start, duration=duration, max_side=max_side,
                             react=float(self.settings.get("react", 1.0)), crf=crf)
        return self.jobs.render("render", opts, cfg, preset=self.preset)

    def stop(self) -> bool:
        return self.jobs.stop()
