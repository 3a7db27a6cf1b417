"""Batch rendering: a job file → validated jobs → chunks → workers (local processes, or Ray) → joined outputs.

A job file (TOML) holds a ``[defaults]`` table and a list of ``[[job]]`` tables whose keys mirror the CLI's flags
(see docs/batch.md)::

    [defaults]
    preset = "lysergic"
    max-side = 720
    [[job]]
    input = "clips/a.mp4"
    song = "music/a.wav"
    output = "out/a.mp4"
    [[job]]
    input = "photos/"            # a folder of stills
    output = "out/photos/"

The whole file is checked before anything runs (:func:`load_jobs`): every bad job is reported with its line, in one
:class:`BatchFileError`, unless ``skip_bad`` drops them.

A render job is split into chunks (:func:`plan_job`): at scene cuts, where the render resets its feedback anyway
(the render loop's own detector, :func:`dreamvid.pipeline.scene_cuts`), so a chunk that starts at a cut dreams
exactly the frames a one-process render does; and at ``chunk-frames`` for long shots. A chunk that starts inside
a shot starts ``warmup`` frames early to warm its feedback up, and the last ``fade`` frames before its first
frame are cross-faded between the chunk before it and itself (the *join window*). A chunk is a render of a frame
range (:class:`~dreamvid.pipeline.RenderOptions` ``frames``/``held``), with its own work folder, so it resumes
like any render. The chunks are joined without re-encoding (concat ``-c copy``; only a join window is encoded,
once), and the song is muxed once.

Two runners run the same :class:`Task` objects through :func:`run_task`: :func:`run_local` (worker processes,
one per GPU or ``workers`` on CPU, the model loaded once per worker) and ``dreamvid.batch_ray.run_ray`` (Ray
tasks). The library prints nothing: progress goes to ``on_update(BatchStatus)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import Config
from .errors import ConfigError, DreamvidError, OutputError
from .options import OptionError, check_option
from .fsutil import atomic_write_bytes, check_output
from .images import IMAGE_SUFFIXES

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BatchFileError", "Job", "Task", "BatchStatus", "load_jobs", "plan_job", "tasks_for", "run_local",
           "run_task", "finish_job", "status", "batch_dir_for", "DEFAULT_CHUNK_FRAMES", "DEFAULT_WARMUP",
           "DEFAULT_FADE"]

DEFAULT_CHUNK_FRAMES = 480  # 20 s at 24 fps
DEFAULT_WARMUP = 16  # frames a chunk that starts inside a shot dreams before its first frame
DEFAULT_FADE = 8  # of those, the last ones cross-faded with the chunk before (the join window)
SEGMENT_FRAMES = 48

# keys of a [[job]] (and of [defaults], except the first three), as the CLI spells its flags
_PATH_KEYS = ("input", "output", "song", "config")
_RUN_KEYS = {
    "name": str, "input": str, "output": str, "song": str, "preset": str, "config": str, "start": float,
    "duration": float, "max-side": int, "loop-song": bool, "react": float, "crf": int, "x264-preset": str,
    "weights": str, "backend": str, "precision": str, "chunk-frames": int, "warmup": int, "fade": int,
}
_DREAM_FLAGS = {"layers": "layers", "octaves": "octaves", "octave-scale": "octave_scale", "steps": "steps",
                "step-size": "step_size", "jitter": "jitter", "tile-size": "tile_size", "seed": "seed"}
_TABLES = ("dream", "video", "audio", "motion")
_JOB_ONLY = ("name", "input", "output")
_NAME = re.compile(r"[\w+-][\w.+-]*")  # a job's folder in the batch folder: never '.', '..' or hidden


class BatchFileError(ConfigError):
    """A job file with bad jobs; ``problems`` lists ``(line, job name, reason)``."""

    def __init__(self, message: str, problems: list[tuple[int, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class Engine:
    """What a worker builds a Dreamer from (the per-process cache key)."""

    weights: str | None = None
    backend: str | None = None
    precision: str = "fp32"
    seed: int = 0


@dataclass(frozen=True)
class Job:
    """One validated ``[[job]]``. ``kind`` is ``"render"``, ``"still"`` or ``"stills"`` (a folder)."""

    name: str
    line: int
    kind: str
    input: Path
    output: Path
    config: Config
    engine: Engine
    song: Path | None = None
    start: float = 0.0
    duration: float | None = None
    max_side: int | None = None
    loop_song: bool = False
    react: float = 1.0
    crf: int = 18
    x264_preset: str = "medium"
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    warmup: int = DEFAULT_WARMUP
    fade: int = DEFAULT_FADE
    stills: tuple[tuple[Path, Path], ...] = ()  # (input, output) of each still

    def render_options(self, **changes) -> Any:
        from .pipeline import RenderOptions

        opts = RenderOptions(input=self.input, output=self.output, song=self.song, loop_song=self.loop_song,
                             start=self.start, duration=self.duration, max_side=self.max_side, react=self.react,
                             crf=self.crf, x264_preset=self.x264_preset, segment_frames=SEGMENT_FRAMES)
        return replace(opts, **changes)

    def fingerprint(self) -> str:
        """What the job's outputs depend on: a resumed or skipped job must have the same."""
        def fp(p):
            if p is None or not Path(p).exists():
                return None
            st = Path(p).stat()
            return [str(Path(p).resolve()), st.st_size, int(st.st_mtime)]

        data = [self.kind, fp(self.input) if self.kind != "stills" else str(self.input.resolve()), fp(self.song),
                self.start, self.duration, self.max_side, self.loop_song, self.react, self.crf, self.x264_preset,
                self.chunk_frames, self.warmup, self.fade, self.config.to_dict(), self.engine.__dict__,
                [[fp(a), str(b)] for a, b in self.stills]]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Chunk:
    """Frames ``[offset, offset + count)`` of a job's range, the first ``lead`` and last ``trail`` not encoded.

    ``cut`` says the chunk starts at a scene cut (or the first frame): it dreams what one process would."""

    index: int
    offset: int
    count: int
    lead: int = 0
    trail: int = 0
    window: int = 0  # the join window before it (the chunk before's trail): its last frames of the lead

    def shown(self, done: int) -> int:
        """Of the first ``done`` frames it dreamed, how many end up in the output (its own, or in a window)."""
        return max(0, min(done, self.count - self.trail) - (self.lead - self.window))

    @property
    def first(self) -> int:  # the first frame the chunk encodes
        return self.offset + self.lead

    @property
    def end(self) -> int:  # one past the last frame it encodes
        return self.offset + self.count - self.trail


@dataclass(frozen=True)
class Task:
    """One unit of work for a runner: a chunk of a render job, or one still. Picklable (Ray, spawn)."""

    job: str
    index: int
    kind: str  # "chunk" or "still"
    engine: Engine
    config: dict  # Config.to_dict()
    opts: Any = None  # RenderOptions of the chunk
    save: tuple[tuple[int, str], ...] = ()  # chunk-local frames to keep as PNGs (the join windows), and where
    still: tuple[str, str] | None = None  # (input, output)
    max_side: int | None = None
    fp: str = ""  # the job's fingerprint, recorded beside a still
    attempt: int = 0  # 0, then 1, 2, ... for its retries

    @property
    def id(self) -> str:
        return f"{self.job}#{self.index}"


# ---- the job file ------------------------------------------------------------------------------------------------
def batch_dir_for(job_file: Path) -> Path:
    """Where a job file's logs, chunks and ``batch.report.json`` live: ``<jobs>.batch/`` beside it."""
    job_file = Path(job_file)
    return job_file.with_name(job_file.stem + ".batch")


class _Bad(Exception):
    def __init__(self, key: str | None, reason: str):
        super().__init__(reason)
        self.key, self.reason = key, reason


def _lines(text: str) -> tuple[int | None, list[tuple[int, int]]]:
    """The line of ``[defaults]``, and the (first, last) lines of each ``[[job]]`` block (1-based)."""
    lines = text.splitlines()
    headers = [i + 1 for i, ln in enumerate(lines) if re.match(r"\s*\[\[\s*job\s*\]\]", ln)]
    defaults = next((i + 1 for i, ln in enumerate(lines) if re.match(r"\s*\[\s*defaults\s*\]", ln)), None)
    tops = [i + 1 for i, ln in enumerate(lines) if re.match(r"\s*\[\[?\s*[A-Za-z_-]+\s*\]\]?\s*(#.*)?$", ln)]
    blocks = []
    for h in headers:
        nxt = next((t for t in tops if t > h and not re.match(r"\s*\[\s*job\.", lines[t - 1])), len(lines) + 1)
        blocks.append((h, nxt - 1))
    return defaults, blocks


def _key_line(text: str, block: tuple[int, int], key: str | None) -> int:
    if key is None:
        return block[0]
    lines = text.splitlines()
    top = key.split(".")[0]
    for i in range(block[0], block[1]):
        ln = lines[i] if i < len(lines) else ""
        if re.match(rf"\s*[\"']?{re.escape(top)}[\"']?\s*[=.]", ln) or re.match(rf"\s*\[\s*job\.{re.escape(top)}\s*\]", ln):
            return i + 1
    return block[0]


def _norm(table: Mapping[str, Any]) -> dict[str, Any]:
    return {(k.replace("_", "-") if k not in _TABLES else k): v for k, v in table.items()}


def load_jobs(job_file: str | os.PathLike, *, overwrite: bool = False, skip_bad: bool = False,
              on_skip: Callable[[int, str, str], None] | None = None) -> list[Job]:
    """Read and check a whole job file, without a framework and without dreaming: every job's keys, config,
    inputs (probed), song, range and outputs, and that no two jobs write the same output.

    Raises :class:`BatchFileError` listing every bad job with its line, unless ``skip_bad`` (then each is passed
    to ``on_skip(line, name, reason)`` and left out).
    """
    path = Path(job_file)
    if not path.is_file():
        raise ConfigError(f"job file {path} does not exist: check the path")
    path = path.absolute()  # every path in it is from its folder, wherever the workers (Ray nodes) run
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"job file {path} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read job file {path}: {e}") from None
    unknown = [k for k in data if k not in ("defaults", "job")]
    if unknown:
        raise ConfigError(f"job file {path}: unknown table '{unknown[0]}'; a job file holds [defaults] and [[job]] "
                          "tables (see docs/batch.md)")
    jobs_raw = data.get("job", [])
    if not isinstance(jobs_raw, list) or not jobs_raw:
        raise ConfigError(f"job file {path} holds no [[job]] tables: add one per render or still (see docs/batch.md)")
    if not all(isinstance(j, Mapping) for j in jobs_raw):
        raise ConfigError(f"job file {path}: 'job' must be a list of [[job]] tables, got {jobs_raw[0]!r}; write each "
                          "job as a [[job]] table (see docs/batch.md)")
    if not isinstance(data.get("defaults", {}), Mapping):
        raise ConfigError(f"job file {path}: 'defaults' must be a [defaults] table, got {data['defaults']!r} (see "
                          "docs/batch.md)")
    defaults_line, blocks = _lines(text)
    defaults = _norm(data.get("defaults", {}) or {})
    problems: list[tuple[int, str, str]] = []
    for k in defaults:
        if k in _JOB_ONLY:
            problems.append((_key_line(text, (defaults_line or 1, len(text.splitlines())), k), "[defaults]",
                             f"'{k}' belongs in each [[job]], not in [defaults]"))
    base = path.parent
    jobs: list[Job] = []
    outputs: dict[Path, str] = {}
    names: set[str] = set()
    for i, raw in enumerate(jobs_raw):
        block = blocks[i] if i < len(blocks) else (1, 1)
        name = str(raw.get("name") or (Path(str(raw.get("output", f"job{i + 1}"))).stem or f"job{i + 1}"))
        try:
            job = _check_job(i, _merge(defaults, _norm(raw)), base, block[0], overwrite=overwrite,
                             batch_dir=batch_dir_for(path))
            if job.name in names:
                raise _Bad("name", f"two jobs are named '{job.name}': give each a unique name")
            key = job.output.resolve()
            if key in outputs:
                raise _Bad("output", f"job '{outputs[key]}' writes {job.output} too")
            names.add(job.name)
            outputs[key] = job.name
            jobs.append(job)
        except _Bad as e:
            problems.append((_key_line(text, block, e.key), name, e.reason))
        except DreamvidError as e:
            problems.append((block[0], name, str(e)))
    classy = [j for j in jobs if j.config.dream.dream_class != ""]
    if classy:  # class dreaming needs the ImageNet top: fetched once, or refused here, before any worker starts
        from . import model

        try:
            model.ensure_top()
        except DreamvidError as e:
            problems += [(j.line, j.name, str(e)) for j in classy]
            jobs = [j for j in jobs if j.config.dream.dream_class == ""]
    if problems and not skip_bad:
        listed = "; ".join(f"line {ln} (job '{n}'): {r}" for ln, n, r in problems)
        s = "s" if len(problems) > 1 else ""
        raise BatchFileError(f"{path}: {len(problems)} bad job{s}, nothing was run (fix it, or pass --skip-bad to run "
                             f"the rest): {listed}", problems)
    for p in problems:
        if on_skip is not None:
            on_skip(*p)
    if not jobs:
        raise BatchFileError(f"{path}: no job is left to run", problems)
    return jobs


def _merge(defaults: dict, job: dict) -> dict:
    out = dict(defaults)
    for k, v in job.items():
        if k in _TABLES and isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _check_job(i: int, raw: dict, base: Path, line: int, *, overwrite: bool, batch_dir: Path) -> Job:
    from . import backends, model, presets, video
    from .config import load_toml, resolve
    from .errors import suggest

    known = set(_RUN_KEYS) | set(_DREAM_FLAGS) | set(_TABLES)
    for k, v in raw.items():
        if k not in known:
            raise _Bad(k, f"unknown key '{k}'{suggest(k, known)}; see docs/batch.md for the keys")
        typ = _RUN_KEYS.get(k)
        if typ is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise _Bad(k, f"'{k}' must be a number, got {v!r}")
        if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise _Bad(k, f"'{k}' must be a whole number, got {v!r}")
        if typ in (str, bool) and not isinstance(v, typ):
            raise _Bad(k, f"'{k}' must be {'a string' if typ is str else 'true or false'}, got {v!r}")
        if k in _TABLES and not isinstance(v, Mapping):
            raise _Bad(k, f"'{k}' must be a table of [{k}] keys")
    for k in ("input", "output"):
        if k not in raw:
            raise _Bad(None, f"'{k}' is missing")

    def p(key):
        v = raw.get(key)
        return None if v is None else (base / Path(v).expanduser())

    inp, out = p("input"), p("output")
    name = str(raw.get("name") or out.stem or f"job{i + 1}")
    if not _NAME.fullmatch(name):
        raise _Bad("name", f"name '{name}' may hold only letters, digits and . _ + -, and may not start with '.' "
                           "(it names the job's folder in the batch folder): give the job a name = \"...\"")
    for t in _TABLES:  # a guide in a job's [dream] table is found from the job file's folder, like every path
        if t == "dream" and isinstance(raw.get(t), Mapping) and isinstance(raw[t].get("guide"), str) \
                and raw[t]["guide"] and not Path(raw[t]["guide"]).expanduser().is_absolute() \
                and (base / raw[t]["guide"]).exists():
            raw = {**raw, t: {**raw[t], "guide": str(base / raw[t]["guide"])}}
    # the config: preset < config file < [dream]/[video]/[audio] tables < dream flags
    try:
        preset = raw.get("preset") or presets.DEFAULT
        layers = [presets.load(preset)]
    except DreamvidError as e:
        raise _Bad("preset", str(e)) from None
    if raw.get("config") is not None:
        try:
            layers.append(load_toml(p("config")))
        except DreamvidError as e:
            raise _Bad("config", str(e)) from None
    layers.append({t: raw[t] for t in _TABLES if t in raw})
    flags = {_DREAM_FLAGS[k]: raw[k] for k in _DREAM_FLAGS if k in raw}
    layers.append({"dream": flags} if flags else None)
    try:
        cfg = resolve(*layers, preset=preset)
    except DreamvidError as e:
        bad = next((k for k in list(_DREAM_FLAGS) + list(_TABLES) if k in raw and k.replace("-", "_") in str(e)), None)
        raise _Bad(bad or next((t for t in _TABLES if t in raw), None), str(e)) from None
    if cfg.dream.guide:  # a guide is checked where it is used: here, before any worker starts
        from .targets import find_guide

        try:
            find_guide(cfg.dream.guide)
        except DreamvidError as e:
            raise _Bad("dream", str(e)) from None
    engine = Engine(weights=raw.get("weights"), backend=raw.get("backend"), precision=raw.get("precision", "fp32"),
                    seed=cfg.dream.seed)
    try:
        model.check_precision(engine.precision)
    except DreamvidError as e:
        raise _Bad("precision", str(e)) from None
    try:
        backends.check(engine.backend)
    except DreamvidError as e:
        raise _Bad("backend", str(e)) from None
    try:
        model.check_weights(model.resolve_weights(engine.weights, seed=engine.seed))
    except DreamvidError as e:
        raise _Bad("weights", str(e)) from None
    ms = raw.get("max-side")
    try:  # the render options every front end checks the same way (options.RenderOptions)
        for key in ("max-side", "start", "duration", "react", "crf", "x264-preset"):
            if raw.get(key) is not None:
                check_option(key, raw[key])
    except OptionError as e:
        raise _Bad(e.key, e.as_key()) from None
    common = dict(name=name, line=line, input=inp, output=out, config=cfg, engine=engine, max_side=ms)

    if not inp.exists():
        raise _Bad("input", f"input {inp} does not exist: check the path (relative paths are from the job file's "
                            "folder)")
    if inp.is_dir() or inp.suffix.lower() in IMAGE_SUFFIXES:  # stills (render keys from [defaults] do not apply)
        if inp.is_dir():
            srcs = sorted((q for q in inp.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES), key=_natural)
            if not srcs:
                raise _Bad("input", f"folder {inp} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            if out.exists() and not out.is_dir():
                raise _Bad("output", f"{out} is a file, but a folder of stills needs an output folder")
            pairs = tuple((s, out / s.name) for s in srcs)
            kind = "stills"
        else:
            if out.suffix.lower() not in IMAGE_SUFFIXES:
                raise _Bad("output", f"cannot tell the image format of {out}: end the name in .jpg, .png, .webp, "
                                     ".bmp or .tif")
            pairs, kind = ((inp, out),), "still"
        from .images import read_image

        for s, o in pairs:
            try:
                read_image(s)
            except DreamvidError as e:
                raise _Bad("input", str(e)) from None
            if o.resolve() == s.resolve():
                raise _Bad("output", f"output {o} is the input itself")
        job = Job(kind=kind, stills=pairs, **common)
        for s, o in pairs:
            if not _still_done(job, o):
                try:
                    _check_output(o, overwrite=overwrite)
                except DreamvidError as e:
                    raise _Bad("output", str(e)) from None
        return job

    # a render
    for k in ("chunk-frames", "warmup", "fade"):
        v = raw.get(k)
        lo, hi = {"chunk-frames": (2, math.inf), "warmup": (0, 10_000), "fade": (0, 10_000)}[k]
        if v is not None and not lo <= v <= hi:
            raise _Bad(k, f"{k} must be from {lo:g} to {hi:g}, got {v}")
    warmup, fade = raw.get("warmup", DEFAULT_WARMUP), raw.get("fade", DEFAULT_FADE)
    chunk_frames = raw.get("chunk-frames", DEFAULT_CHUNK_FRAMES)
    if fade > warmup:
        raise _Bad("fade", f"fade ({fade}) cannot be longer than warmup ({warmup}): the window is cross-faded with "
                           "the next chunk's warm-up frames")
    if chunk_frames <= 2 * fade:
        raise _Bad("chunk-frames", f"chunk-frames ({chunk_frames}) must be over twice fade ({fade}): a chunk split "
                                   "off a long shot keeps frames of its own besides the join window")
    job = Job(kind="render", song=p("song"), start=float(raw.get("start", 0.0)),
              duration=None if raw.get("duration") is None else float(raw["duration"]),
              loop_song=raw.get("loop-song", False), react=float(raw.get("react", 1.0)), crf=raw.get("crf", 18),
              x264_preset=raw.get("x264-preset", "medium"), chunk_frames=chunk_frames, warmup=warmup, fade=fade,
              **common)
    # done, or this very job under way (planned with these settings; killed while publishing, its output may be
    # in place already): its own output is no reason to refuse it
    done = _render_done(job) or _planned(job, batch_dir)
    try:
        video.check_container(out)
        if not done:
            _check_output(out, overwrite=overwrite)
            from .pipeline import report_path_for

            _check_output(report_path_for(out), overwrite=overwrite)
    except DreamvidError as e:
        raise _Bad("output", str(e)) from None
    if job.song is not None:
        try:
            video.check_song(job.song)
        except DreamvidError as e:
            raise _Bad("song", str(e)) from None
    try:
        info = video.probe(inp)
        video.frame_range(info, job.start, job.duration)
    except DreamvidError as e:
        raise _Bad("input" if "start" not in str(e) and "duration" not in str(e) else
                   ("start" if "start" in raw else "duration"), str(e)) from None
    return job


def _check_output(path: Path, *, overwrite: bool) -> None:
    """``fsutil.check_output`` without creating the folder (a rejected job file leaves nothing behind)."""
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists: pass --overwrite to replace it, or choose another output")
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name for the output")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {path.parent}: choose a writable output path")


def _natural(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _job_report(job: Job) -> dict | None:
    from .pipeline import report_path_for

    try:
        return json.loads(report_path_for(job.output).read_text())
    except (OSError, ValueError):
        return None


def _planned(job: Job, batch_dir: Path) -> bool:
    try:
        plan = json.loads((job_dir(batch_dir, job) / "plan.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(plan, dict) and plan.get("fingerprint") == job.fingerprint()


def _render_done(job: Job) -> bool:
    """The job's output is in place and its report says this batch job, with these settings, wrote it."""
    rep = _job_report(job) if job.output.exists() else None
    return bool(rep) and (rep.get("batch") or {}).get("fingerprint") == job.fingerprint()


def _still_done(job: Job, out: Path) -> bool:
    side = out.with_name(out.name + ".dreamvid.json")
    try:
        return out.exists() and json.loads(side.read_text()).get("batch") == job.fingerprint()
    except (OSError, ValueError, AttributeError):
        return False


def job_done(job: Job) -> bool:
    if job.kind == "render":
        return _render_done(job)
    return all(_still_done(job, o) for _, o in job.stills)


# ---- chunks ----------------------------------------------------------------------------------------------------
def split(count: int, cuts: list[int], *, chunk_frames: int, warmup: int, fade: int,
          join_inside_shots: bool = True) -> list[Chunk]:
    """Chunks covering frames ``[0, count)``: whole shots packed up to ``chunk_frames``; a longer shot is split
    evenly, and each chunk that starts inside it dreams up to ``warmup`` frames early (never before its shot's first
    frame); the last ``fade`` of those (at most) are the join window. Without feedback (``join_inside_shots``
    False) no warm-up is needed. Every frame is encoded by exactly one chunk or one join window.
    """
    if fade > warmup:
        raise ConfigError(f"fade ({fade}) cannot be longer than warmup ({warmup})")
    starts = sorted({0, *(c for c in cuts if 0 < c < count)})
    shots = [(a, b) for a, b in zip(starts, starts[1:] + [count])]
    pieces: list[tuple[int, int, int]] = []  # (first, end, the first frame of its shot)
    cur: list[int] | None = None
    for a, b in shots:
        if b - a > chunk_frames:
            if cur is not None:
                pieces.append((cur[0], cur[1], cur[0]))
                cur = None
            n = -(-(b - a) // chunk_frames)
            edges = [a + round(j * (b - a) / n) for j in range(n + 1)]
            pieces += [(edges[j], edges[j + 1], a) for j in range(n)]
        elif cur is not None and b - cur[0] <= chunk_frames:
            cur[1] = b
        else:
            if cur is not None:
                pieces.append((cur[0], cur[1], cur[0]))
            cur = [a, b]
    if cur is not None:
        pieces.append((cur[0], cur[1], cur[0]))
    # a chunk that starts inside a shot warms its feedback up on the frames before it, back to the shot's start
    leads = [min(warmup, a - shot) if join_inside_shots else 0 for a, _, shot in pieces]
    windows = [min(fade, lead) for lead in leads]
    # the window [a - window, a) is encoded by neither chunk: it is the cross-fade of the chunk before's last
    # `window` frames (its trail) and this chunk's last `window` warm-up frames
    return [Chunk(index=i, offset=a - leads[i], count=(b - a) + leads[i], lead=leads[i],
                  trail=windows[i + 1] if i + 1 < len(pieces) else 0, window=windows[i])
            for i, (a, b, _) in enumerate(pieces)]


@dataclass
class Plan:
    job: str
    fingerprint: str
    count: int
    fps: float
    size: tuple[int, int]
    cuts: list[int]
    chunks: list[Chunk]

    def to_json(self) -> bytes:
        d = {"job": self.job, "fingerprint": self.fingerprint, "count": self.count, "fps": self.fps,
             "size": list(self.size), "cuts": self.cuts, "chunks": [c.__dict__ for c in self.chunks]}
        return json.dumps(d, indent=2).encode()

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        return cls(d["job"], d["fingerprint"], d["count"], d["fps"], tuple(d["size"]), d["cuts"],
                   [Chunk(**c) for c in d["chunks"]])


def job_dir(batch_dir: Path, job: Job) -> Path:
    """The job's own folder, always a child of the batch folder (job names are checked: never ``.`` or ``..``)."""
    d = Path(batch_dir) / job.name
    if not _NAME.fullmatch(job.name) or d.resolve().parent != Path(batch_dir).resolve():
        raise OutputError(f"job '{job.name}' would not have a folder of its own in {batch_dir}: rename the job")
    return d


# what batch itself writes in a job's folder: the only names it ever deletes there
_MADE = re.compile(r"(plan\.json|tiles\.json|publish\.json|report\.json|video\.mp4|final\.\w+"
                   r"|chunk_\d{4}\.mp4|chunk_\d{4}\.report\.json|chunk_\d{4}\.mp4\.dreamvid-work(\.trash)?"
                   r"|window_\d{4}\.mp4|window_\d{4}|\..+\.tmp(\.\w+)?)")
_WINDOW_FRAME = re.compile(r"[ab]_\d{4}\.png|\..+\.tmp\.png")


def tidy_job_dir(d: Path, *, keep: tuple[str, ...] = ()) -> None:
    """Delete what batch made in a job's folder (but ``keep``), and the folder if nothing else is left in it. A
    file or folder batch did not make is never touched, and keeps the folder."""
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.name in keep or not _MADE.fullmatch(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            if p.name.startswith("window_"):  # the join window's frames
                for f in p.iterdir():
                    if _WINDOW_FRAME.fullmatch(f.name) and f.is_file():
                        f.unlink()
                with contextlib.suppress(OSError):
                    p.rmdir()  # not empty: something else is in it
            else:  # a chunk's render work folder: all of it is the render's
                shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        d.rmdir()


def plan_job(job: Job, batch_dir: Path, *, overwrite: bool = False, on_warning=None) -> Plan:
    """The job's chunks (``plan.json`` in its folder, made once: finding the cuts decodes the clip)."""
    from . import video
    from .pipeline import scene_cuts

    d = job_dir(batch_dir, job)
    pf = d / "plan.json"
    fp = job.fingerprint()
    if pf.is_file():
        try:
            plan = Plan.from_json(pf.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            plan = None
        if plan is not None and plan.fingerprint == fp:
            return plan
        if any(d.glob("chunk_*")) and not overwrite:
            raise OutputError(f"job '{job.name}' changed since its chunks in {d} were rendered: pass --overwrite to "
                              "render it again, or restore its settings")
        tidy_job_dir(d)
    info = video.probe(job.input)
    _, count = video.frame_range(info, job.start, job.duration)
    size = video.output_size(info.width, info.height, job.max_side)
    cuts = scene_cuts(job.render_options(), job.config, on_warning=on_warning)
    feedback = job.config.video.coherence != "none"
    chunks = split(count, cuts, chunk_frames=job.chunk_frames, warmup=job.warmup, fade=job.fade,
                   join_inside_shots=feedback)
    plan = Plan(job.name, fp, count, info.fps, size, cuts, chunks)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(pf, plan.to_json())
    return plan


def _chunk_path(d: Path, c: Chunk) -> Path:
    return d / f"chunk_{c.index:04d}.mp4"


def _window_png(d: Path, c_index: int, side: str, j: int) -> Path:
    """Frame ``j`` of the join window before chunk ``c_index``: ``side`` "a" (the chunk before) or "b" (this one)."""
    return d / f"window_{c_index:04d}" / f"{side}_{j:04d}.png"


def chunk_done(d: Path, c: Chunk) -> bool:
    from .pipeline import report_path_for, work_dir_for

    out = _chunk_path(d, c)
    return out.is_file() and report_path_for(out).is_file() and not work_dir_for(out).exists()


def tasks_for(job: Job, plan: Plan | None, batch_dir: Path) -> list[Task]:
    """What is left to do for ``job``: its unfinished chunks, or its unfinished stills."""
    cfg = job.config.to_dict()
    if job.kind != "render":
        return [Task(job.name, i, "still", job.engine, cfg, still=(str(s), str(o)), max_side=job.max_side,
                     fp=job.fingerprint())
                for i, (s, o) in enumerate(job.stills) if not _still_done(job, o)]
    d = job_dir(batch_dir, job)
    tiles = _tiles(d)
    out = []
    for c in plan.chunks:
        if chunk_done(d, c):
            continue
        save = []
        nxt = plan.chunks[c.index + 1] if c.index + 1 < len(plan.chunks) else None
        if c.trail:  # the chunk before the next one's join window: its last `trail` frames
            save += [(c.count - c.trail + j, str(_window_png(d, nxt.index, "a", j))) for j in range(c.trail)]
        if c.window:
            save += [(c.lead - c.window + j, str(_window_png(d, c.index, "b", j))) for j in range(c.window)]
        opts = job.render_options(output=_chunk_path(d, c), frames=(c.offset, c.count), held=(c.lead, c.trail),
                                  piece=True, resume=True, overwrite=True)
        chunk_cfg = {**cfg, "dream": {**cfg["dream"], **tiles[str(c.index)]}} if str(c.index) in tiles else cfg
        out.append(Task(job.name, c.index, "chunk", job.engine, chunk_cfg, opts=opts, save=tuple(save)))
    return out


def _tiles(d: Path) -> dict[str, dict]:
    """The tiling each chunk that ran out of memory was retried with (``tiles.json``): a later run resumes it."""
    try:
        got = json.loads((d / "tiles.json").read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def remember_tiles(batch_dir: Path, job: Job, task: Task) -> None:
    """Record the tiling of a chunk's retry after running out of memory, so that its work folder, rendered with it,
    resumes after an interruption instead of being refused as changed."""
    d = job_dir(batch_dir, job)
    tiles = _tiles(d) | {str(task.index): {k: task.config["dream"][k] for k in ("tile_size", "tile_overlap")}}
    atomic_write_bytes(d / "tiles.json", json.dumps(tiles).encode())


# ---- running one task (in a worker process, local or Ray) -----------------------------------------------------------
_DREAMERS: dict[Engine, Any] = {}


def dreamer_for(engine: Engine):
    """This process's Dreamer for ``engine``: built once per worker, reused for every chunk and job."""
    if engine not in _DREAMERS:
        from .dream import Dreamer

        _DREAMERS[engine] = Dreamer(weights=engine.weights, backend=engine.backend, precision=engine.precision,
                                    seed=engine.seed)
    return _DREAMERS[engine]


def is_oom(e: BaseException) -> bool:
    """Out of (GPU) memory, as the frameworks say it."""
    text = f"{type(e).__name__}: {e}".lower()
    return isinstance(e, MemoryError) or "resourceexhausted" in text or "out of memory" in text or "oom" in text.split()


def run_task(task: Task, *, on_frame: Callable[[int, int, bool], None] | None = None,
             on_warning: Callable[[str], None] | None = None) -> dict:
    """Run one task in this process; returns ``{"frames": dreamed now, "seconds": ..., "report": ...}``."""
    from .config import resolve
    from .fsutil import atomic_output
    from .images import write_image

    t0 = time.perf_counter()
    cfg = resolve(task.config)
    dreamer = dreamer_for(task.engine)
    dreamed = [0]
    if task.kind == "still":
        from .images import fit, read_image

        src, out = (Path(p) for p in task.still)
        img = fit(read_image(src), task.max_side)
        res = dreamer.dream(img, cfg.dream)
        write_image(out, res, overwrite=True)
        record = {"input": str(src), "size": [img.shape[1], img.shape[0]], "weights": dreamer.weights.describe(),
                  "backend": dreamer.backend_name, "config": cfg.to_dict(), "batch": task.fp}
        atomic_write_bytes(out.with_name(out.name + ".dreamvid.json"), json.dumps(record, indent=2).encode())
        if on_frame:
            on_frame(0, 1, False)
        return {"frames": 1, "seconds": time.perf_counter() - t0, "report": None}

    from .pipeline import render

    save = dict(task.save)

    def on_output(k, frame):  # the join windows' frames, kept losslessly, on disk before the state counts them
        if k in save:
            p = Path(save[k])
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(p, overwrite=True) as tmp:
                write_image(tmp, frame, overwrite=True)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())

    def frame_event(ev):
        if not ev.resumed:
            dreamed[0] += 1
        if on_frame:
            on_frame(ev.index, ev.total, ev.resumed)

    report = render(task.opts, cfg, dreamer, on_frame=frame_event, on_warning=on_warning, on_output=on_output)
    return {"frames": dreamed[0], "seconds": time.perf_counter() - t0,
            "report": {k: report.get(k) for k in ("frames", "temporal_stability", "dream_strength", "dream_gain",
                                                  "dream_seconds_per_frame", "seconds")}}


def smaller_tiles(task: Task) -> Task | None:
    """The task with half the tile size (after running out of memory), or None below 64 px."""
    d = task.config["dream"]
    size = int(d["tile_size"]) // 2
    if size < 64:
        return None
    overlap = min(int(d.get("tile_overlap", 0)), size // 2 - 1)
    cfg = {**task.config, "dream": {**d, "tile_size": size, "tile_overlap": overlap}}
    opts = replace(task.opts, resume=False, overwrite=True) if task.opts is not None else None
    return replace(task, config=cfg, opts=opts)


# ---- joining a job's chunks ------------------------------------------------------------------------------------------
def finish_job(job: Job, plan: Plan | None, batch_dir: Path, *, overwrite: bool = False,
               on_warning=None, stats: dict | None = None) -> dict:
    """Join a render job's finished chunks (cross-fading the join windows), mux the song once, write the report,
    publish the output (the render core's publishing: :mod:`dreamvid.publish`); for stills, the report. Returns the
    job's report. A run killed at any instant of it finishes it when run again."""
    from . import fsutil, publish
    from .pipeline import report_path_for

    stats = stats or {}
    if job.kind != "render":
        return {"name": job.name, "kind": job.kind, "output": str(job.output), "frames": len(job.stills),
                **stats}
    d = job_dir(batch_dir, job)
    final = d / ("final" + job.output.suffix)
    if not (d / "publish.json").is_file():  # not yet marked as publishing: build the output and the report
        report = _join_job(job, plan, d, final, on_warning=on_warning, stats=stats)
        publish.write_report(d, report, final)
        fsutil.durable_write(d / "publish.json", json.dumps({"fingerprint": job.fingerprint()}).encode())
        fsutil.checkpoint("publish")
    moves = ((final, job.output), (d / "report.json", report_path_for(job.output)))
    report = json.loads((moves[1][0] if moves[1][0].exists() else moves[1][1]).read_text())
    # overwrite: load_jobs refused anything in the way that is not this job's (this also makes the output's folder)
    check_output(job.output, overwrite=True)
    publish.place_all(moves, overwrite=True, work=d)
    tidy_job_dir(d)  # the chunks are in the output now
    return report


def _join_job(job: Job, plan: Plan, d: Path, final: Path, *, on_warning, stats: dict) -> dict:
    """The job's output in ``final`` (chunks and cross-faded join windows, joined; the sound muxed) and its report."""
    from . import publish, video
    from .images import read_image
    from .pipeline import report_path_for

    t0 = time.perf_counter()
    pieces: list[Path] = []
    windows = []
    chunk_reports = []
    for c in plan.chunks:
        if c.window:
            seg = d / f"window_{c.index:04d}.mp4"
            if not seg.is_file():
                with video.FrameWriter(seg, fps=plan.fps, size=plan.size, crf=job.crf, preset=job.x264_preset,
                                       piece=True, overwrite=True) as w:
                    for j in range(c.window):
                        a = read_image(_window_png(d, c.index, "a", j)).astype("float32")
                        b = read_image(_window_png(d, c.index, "b", j)).astype("float32")
                        t = (j + 1) / (c.window + 1)
                        w.write(((1 - t) * a + t * b).round().clip(0, 255).astype("uint8"))
            pieces.append(seg)
            windows.append([c.first - c.window, c.first])
        pieces.append(_chunk_path(d, c))
        chunk_reports.append(json.loads(report_path_for(_chunk_path(d, c)).read_text()))
    audio_seconds = publish.join(pieces, d, final, crf=job.crf, preset=job.x264_preset, song=job.song,
                                 source=None if job.song else job.input, start=job.start, loop_song=job.loop_song,
                                 on_warning=on_warning)

    def mean(key):
        vals = [(r.get(key), r["frames"]) for r in chunk_reports if r.get(key) is not None]
        n = sum(w for _, w in vals)
        return round(sum(v * w for v, w in vals) / n, 4) if n else None

    dream_s = sum(r["seconds"].get("dream", 0.0) for r in chunk_reports)
    dreamed = sum(r["frames"] for r in chunk_reports)
    measured = ("temporal_stability", "still_change", "moving_stability", "dream_strength", "dream_gain")
    return {
        "name": job.name, "kind": "render", "input": str(job.input), "output": str(job.output),
        "song": str(job.song) if job.song else None, "frames": plan.count, "frames_dreamed": dreamed,
        "fps": plan.fps, "size": list(plan.size), "audio_seconds": audio_seconds,
        "cuts": plan.cuts, "chunks": [{**c.__dict__, **{k: r.get(k) for k in measured},
                                       "resumed_at_frames": r.get("resumed_at_frames")}
                                      for c, r in zip(plan.chunks, chunk_reports)],
        "join_windows": windows,
        **{k: mean(k) for k in measured},
        "seconds": {"dream": round(dream_s, 3), "join": round(time.perf_counter() - t0, 3)},
        "dream_seconds_per_frame": round(dream_s / max(1, dreamed), 4),
        "weights": chunk_reports[0].get("weights"), "backend": chunk_reports[0].get("backend"),
        "precision": chunk_reports[0].get("precision"), "react": job.react, "config": job.config.to_dict(),
        "batch": {"fingerprint": job.fingerprint(), **stats},
    }


@dataclass
class JobStatus:
    name: str
    kind: str
    state: str = "waiting"  # waiting, planning, running, joining, done, failed, skipped (already done)
    chunks: int = 0
    chunks_done: int = 0
    frames: int = 0
    frames_done: int = 0
    dreamed: int = 0  # frames dreamed in this run
    seconds: float = 0.0
    retries: int = 0
    error: str | None = None
    started: float | None = None
    chunk_states: dict[int, str] = field(default_factory=dict)


@dataclass
class WorkerStatus:
    id: int
    device: str
    task: str | None = None
    frames: int = 0
    busy: float = 0.0
    pid: int | None = None
    peak_rss_mb: float | None = None
    models_loaded: int = 0  # Dreamers this worker built (one per weights/backend/precision, however many jobs)
    tasks: int = 0


@dataclass
class BatchStatus:
    """What the runners report through ``on_update``: jobs, workers, totals."""

    jobs: dict[str, JobStatus] = field(default_factory=dict)
    workers: dict[int, WorkerStatus] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    dreamed: int = 0

    def fps(self) -> float:
        return self.dreamed / max(1e-9, time.time() - self.started)

    def eta(self) -> float | None:
        left = sum(j.frames - j.frames_done for j in self.jobs.values() if j.state not in ("failed", "skipped"))
        f = self.fps()
        return left / f if f > 0 else None


def _chunk_progress(d: Path, c: Chunk) -> int:
    from .pipeline import work_dir_for

    if chunk_done(d, c):
        return c.count
    try:
        return int(json.loads((work_dir_for(_chunk_path(d, c)) / "state.json").read_text()).get("done", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def status(job_file: str | os.PathLike, jobs: list[Job]) -> BatchStatus:
    """The jobs' and chunks' state on disk, without running (or planning) anything."""
    bd = batch_dir_for(Path(job_file))
    st = BatchStatus()
    for job in jobs:
        js = JobStatus(job.name, job.kind)
        if job.kind != "render":
            js.frames = js.chunks = len(job.stills)
            js.frames_done = js.chunks_done = sum(_still_done(job, o) for _, o in job.stills)
            js.state = "done" if js.chunks_done == js.chunks else ("partial" if js.chunks_done else "waiting")
        elif job_done(job):
            js.state = "done"
            rep = _job_report(job) or {}
            js.frames = js.frames_done = int(rep.get("frames", 0))
            js.chunks = js.chunks_done = len(rep.get("chunks", []))
        else:
            d = job_dir(bd, job)
            try:
                plan = Plan.from_json((d / "plan.json").read_text())
            except (OSError, ValueError, KeyError, TypeError):
                plan = None
            if plan is None or plan.fingerprint != job.fingerprint():
                js.state = "not planned"
            else:
                js.chunks, js.frames = len(plan.chunks), plan.count
                for c in plan.chunks:
                    n = _chunk_progress(d, c)
                    js.chunk_states[c.index] = "done" if chunk_done(d, c) else (f"{n}/{c.count}" if n else "waiting")
                    js.chunks_done += chunk_done(d, c)
                    js.frames_done += c.shown(n)
                js.state = "partial" if js.frames_done else "waiting"
        st.jobs[job.name] = js
    return st


# ---- the local runner -----------------------------------------------------------------------------------------------
def detect_gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (no framework is imported), as CUDA_VISIBLE_DEVICES values."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, ln in enumerate(out.splitlines()) if ln.startswith("GPU ")]


class _Events:
    """A worker's own pipe to the parent (a shared queue could be left locked by a worker killed mid-write)."""

    def __init__(self, conn):
        self.conn = conn

    def put(self, item) -> None:
        self.conn.send(item)


def _worker_main(wid: int, device: str | None, inbox, conn, threads: int | None = None,
                 parent: int | None = None) -> None:
    """A worker process: its own device, one Dreamer per engine, tasks from ``inbox`` until None, or until the
    batch that started it is gone (killed: an idle worker must not hold the model and the GPU forever)."""
    import queue

    events = _Events(conn)
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    if threads:  # CPU workers share the cores instead of each taking them all (read when the framework loads)
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, str(threads))
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    events.put(("ready", wid, None, os.getpid()))
    while True:
        try:
            task = inbox.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and os.getppid() != parent:  # orphaned: the batch died without saying so
                os._exit(0)
            continue
        if task is None:  # every result is with the parent: skip the framework's slow teardown
            conn.close()
            os._exit(0)
        def on_frame(k, total, resumed, task=task):
            events.put(("frame", wid, task.id, (k, total, resumed)))

        # for the tests: DREAMVID_TEST_KILL_TASK=<job>#<index>@<attempt>=<stage>:<n> kills this worker at that
        # instant (fsutil.checkpoint) of that one task's attempt
        hook = os.environ.get("DREAMVID_TEST_KILL_TASK", "")
        if hook.partition("=")[0] == f"{task.id}@{task.attempt}":
            os.environ["DREAMVID_TEST_KILL_AT"] = hook.partition("=")[2]
        elif hook:
            os.environ.pop("DREAMVID_TEST_KILL_AT", None)

        def on_warning(msg, task=task):
            events.put(("warning", wid, task.id, msg))

        try:
            result = run_task(task, on_frame=on_frame, on_warning=on_warning)
            result["peak_rss_mb"] = _peak_rss_mb()
            result["models_loaded"] = len(_DREAMERS)
            events.put(("done", wid, task.id, result))
        except BaseException as e:  # noqa: BLE001 - reported; the parent decides (retry, smaller tiles, or fail the job)
            kind = "oom" if is_oom(e) else ("user" if isinstance(e, DreamvidError) else "crash")
            events.put(("error", wid, task.id, (kind, f"{type(e).__name__}: {e}" if kind == "crash" else str(e))))


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


@dataclass
class _Run:
    """The bookkeeping both runners share: tasks per job, results, retries, joins, logs, the batch report."""

    job_file: Path
    jobs: list[Job]
    overwrite: bool
    retries: int
    on_update: Callable[[BatchStatus], None] | None
    on_warning: Callable[[str], None] | None
    status: BatchStatus = field(default_factory=BatchStatus)
    plans: dict[str, Plan] = field(default_factory=dict)
    left: dict[str, set] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    reports: dict[str, dict] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    frame_events: bool = True  # the runner reports each frame (local); else only finished tasks (Ray)

    @property
    def dir(self) -> Path:
        return batch_dir_for(self.job_file)

    def log(self, job: str, text: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{job}.log", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.status)

    def prepare(self) -> deque[Task]:
        """Plan every job that is not done; the tasks left to run, in job order."""
        todo: deque[Task] = deque()
        self.dir.mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            js = JobStatus(job.name, job.kind)
            self.status.jobs[job.name] = js
            if job_done(job):
                js.state = "skipped"
                self.log(job.name, "already done; skipped")
                tidy_job_dir(job_dir(self.dir, job))  # left by a run killed while tidying up after publishing
                continue
            js.state = "planning"
            self.update()
            try:
                plan = plan_job(job, self.dir, overwrite=self.overwrite, on_warning=self.on_warning) \
                    if job.kind == "render" else None
            except DreamvidError as e:
                self.fail(job.name, str(e))
                continue
            tasks = tasks_for(job, plan, self.dir)
            if plan is not None:
                self.plans[job.name] = plan
                d = job_dir(self.dir, job)
                js.chunks, js.frames = len(plan.chunks), plan.count
                for c in plan.chunks:
                    js.chunk_states[c.index] = "done" if chunk_done(d, c) else "waiting"
                    js.frames_done += c.shown(_chunk_progress(d, c))
                js.chunks_done = sum(1 for s in js.chunk_states.values() if s == "done")
                self.log(job.name, f"planned {len(plan.chunks)} chunks over {plan.count} frames (cuts at "
                                   f"{plan.cuts}); {len(tasks)} to render")
            else:
                js.chunks = js.frames = len(job.stills)
                js.chunks_done = js.frames_done = len(job.stills) - len(tasks)
            js.state = "waiting"
            self.left[job.name] = {t.index for t in tasks}
            todo.extend(tasks)
            if not tasks:
                self.finish(job)
        self.update()
        return todo

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.name == name)

    def started(self, task: Task, worker: str) -> None:
        js = self.status.jobs[task.job]
        js.state = "running"
        js.started = js.started or time.time()
        js.chunk_states[task.index] = f"running on {worker}"
        self.log(task.job, f"{task.kind} {task.index} started on {worker}")
        self.update()

    def frame(self, task_id: str, k: int, total: int, resumed: bool, worker: WorkerStatus | None = None) -> None:
        job, idx = task_id.rsplit("#", 1)
        js = self.status.jobs[job]
        if not resumed:
            js.dreamed += 1
            self.status.dreamed += 1
            if worker is not None:
                worker.frames += 1
        plan = self.plans.get(job)
        if plan is None:
            return
        c = plan.chunks[int(idx)]
        if not resumed and c.lead - c.window <= k < c.count - c.trail:
            js.frames_done += 1

    def done(self, task: Task, result: dict) -> None:
        js = self.status.jobs[task.job]
        js.chunk_states[task.index] = "done"
        js.chunks_done += 1
        if task.kind == "still":
            js.frames_done += 1
            js.dreamed += 1
            self.status.dreamed += 1
        elif not self.frame_events:
            c = self.plans[task.job].chunks[task.index]
            n = int(result.get("frames", 0))
            js.frames_done += c.shown(c.count) - c.shown(c.count - n)
            js.dreamed += n
            self.status.dreamed += n
        self.log(task.job, f"{task.kind} {task.index} done: {result.get('frames')} frames dreamed in "
                           f"{result.get('seconds', 0):.1f} s")
        self.left[task.job].discard(task.index)
        if not self.left[task.job] and js.state != "failed":
            self.finish(self.job(task.job))
        self.update()

    def retry(self, task: Task, why: str) -> Task | None:
        """The task to run again after ``why`` (a dead worker or a crash), or None when out of retries."""
        n = self.attempts.get(task.id, 0) + 1
        self.attempts[task.id] = n
        self.status.jobs[task.job].retries += 1
        if n > self.retries:
            self.fail(task.job, f"{task.kind} {task.index}: {why} (after {n - 1} retries; --retries allows more)")
            return None
        self.log(task.job, f"{task.kind} {task.index}: {why}; retry {n} of {self.retries}")
        self.status.jobs[task.job].chunk_states[task.index] = "retrying"
        self.update()
        return replace(task, attempt=n)

    def oom(self, task: Task, message: str) -> Task | None:
        smaller = smaller_tiles(task)
        if smaller is None:
            self.fail(task.job, f"{task.kind} {task.index} ran out of memory even with 64-px tiles: {message}")
            return None
        if task.kind == "chunk":
            remember_tiles(self.dir, self.job(task.job), smaller)
        self.log(task.job, f"{task.kind} {task.index} ran out of memory; again with "
                           f"{smaller.config['dream']['tile_size']}-px tiles")
        self.status.jobs[task.job].retries += 1
        return smaller

    def fail(self, job: str, message: str) -> None:
        js = self.status.jobs[job]
        js.state, js.error = "failed", message
        self.log(job, f"failed: {message}")
        self.update()

    def finish(self, job: Job) -> None:
        js = self.status.jobs[job.name]
        js.state = "joining"
        self.update()
        try:
            stats = {"frames_dreamed_this_run": js.dreamed, "retries": js.retries}
            self.reports[job.name] = finish_job(job, self.plans.get(job.name), self.dir, overwrite=self.overwrite,
                                                on_warning=self.on_warning, stats=stats)
            js.state = "done"
            js.seconds = time.time() - (js.started or time.time())
            self.log(job.name, f"done: {job.output}")
        except DreamvidError as e:
            self.fail(job.name, str(e))
        self.update()

    def report(self, runner: str, workers: list[WorkerStatus]) -> dict:
        wall = time.perf_counter() - self.t0
        jobs = []
        for job in self.jobs:
            js = self.status.jobs[job.name]
            rep = self.reports.get(job.name, {})
            jobs.append({"name": job.name, "kind": job.kind, "output": str(job.output), "state": js.state,
                         "error": js.error, "frames": js.frames, "frames_dreamed": js.dreamed,
                         "chunks": js.chunks, "retries": js.retries,
                         "temporal_stability": rep.get("temporal_stability"),
                         "join_windows": rep.get("join_windows"), "seconds": round(js.seconds, 3)})
        total = {"jobs": len(jobs), "done": sum(j["state"] in ("done", "skipped") for j in jobs),
                 "failed": sum(j["state"] == "failed" for j in jobs),
                 "frames_dreamed": self.status.dreamed, "wall_seconds": round(wall, 3),
                 "frames_per_second": round(self.status.dreamed / max(1e-9, wall), 4)}
        rep = {"job_file": str(self.job_file), "runner": runner, "jobs": jobs, "total": total,
               "workers": [w.__dict__ for w in workers]}
        atomic_write_bytes(self.dir / "batch.report.json", json.dumps(rep, indent=2).encode())
        return rep


def run_local(job_file: str | os.PathLike, jobs: list[Job], *, workers: int | None = None,
              gpus: list[str] | None = None, retries: int = 1, overwrite: bool = False,
              on_update: Callable[[BatchStatus], None] | None = None,
              on_warning: Callable[[str], None] | None = None, poll: float = 0.2) -> dict:
    """Run ``jobs`` on local worker processes and return the batch report (``batch.report.json``).

    One worker per GPU in ``gpus`` (each with its own ``CUDA_VISIBLE_DEVICES``), or ``workers`` on the CPU
    (default: one per GPU that ``nvidia-smi`` lists, else one). Workers are started with ``spawn`` (no fork after a
    framework import) and load the model once. A worker that dies (killed, out of host memory) has its task retried
    up to ``retries`` times on a fresh worker, from where the task's work folder stopped; a task that runs out of
    GPU memory is retried with half the tile size.
    """
    run = _Run(Path(job_file), jobs, overwrite, retries, on_update, on_warning)
    todo = run.prepare()
    if gpus is None:
        found = detect_gpus()
        n = workers or max(1, len(found))
        devices = [found[i % len(found)] if found else None for i in range(n)]
    else:
        n = workers or len(gpus)
        devices = [gpus[i % len(gpus)] for i in range(n)]
    pool: list[WorkerStatus] = []
    if todo:
        n = min(n, len(todo))
        pool = _Pool(run, devices[:n]).run(todo, poll=poll)
    return run.report("local", pool)


class _Pool:
    def __init__(self, run: _Run, devices: list[str | None]):
        self.run_ = run
        self.ctx = mp.get_context("spawn")
        self.conns: dict[int, Any] = {}
        self.devices = devices
        self.procs: dict[int, Any] = {}
        self.inbox: dict[int, Any] = {}
        self.holding: dict[int, Task | None] = {}
        self.ws: dict[int, WorkerStatus] = {}
        self.next_id = 0

    def start(self, device) -> int:
        wid = self.next_id
        self.next_id += 1
        inbox = self.ctx.Queue()
        recv, send = self.ctx.Pipe(duplex=False)
        # CPU workers split the cores between them (on a GPU the CPU threads mostly wait)
        threads = None if device is not None else max(1, (os.cpu_count() or 1) // max(1, len(self.devices)))
        p = self.ctx.Process(target=_worker_main, args=(wid, device, inbox, send, threads, os.getpid()), daemon=True,
                             name=f"dreamvid-worker-{wid}")
        p.start()
        send.close()  # the worker holds the only writing end: its death is an EOF here
        self.conns[wid] = recv
        self.procs[wid], self.inbox[wid], self.holding[wid] = p, inbox, None
        self.ws[wid] = WorkerStatus(wid, f"GPU {device}" if device is not None else "CPU", pid=p.pid)
        self.run_.status.workers[wid] = self.ws[wid]
        return wid

    def run(self, todo: deque[Task], *, poll: float) -> list[WorkerStatus]:
        run = self.run_
        for d in self.devices:
            self.start(d)
        try:
            while True:
                for wid, p in list(self.procs.items()):
                    if self.holding[wid] is None and todo and p.is_alive():
                        t = todo.popleft()
                        if run.status.jobs[t.job].state == "failed":
                            continue
                        self.holding[wid] = t
                        self.ws[wid].task = t.id
                        self.inbox[wid].put(t)
                        run.started(t, f"worker {wid}")
                if not todo and all(v is None for v in self.holding.values()):
                    break
                for wid, msg in self.receive(poll):
                    self.handle(wid, *msg, todo=todo)
                for wid, p in list(self.procs.items()):  # a worker that died holding a task
                    if p.is_alive():
                        continue
                    for _, msg in self.receive(0, only=wid):  # what it said before it died
                        self.handle(wid, *msg, todo=todo)
                    t = self.holding.pop(wid)
                    self.procs.pop(wid)
                    self.inbox.pop(wid)
                    self.conns.pop(wid).close()
                    self.ws[wid].task = None
                    if t is not None:
                        again = run.retry(t, f"worker {wid} died (exit code {p.exitcode})")
                        if again is not None:
                            todo.appendleft(again)
                    if todo:
                        self.start(self.devices[wid % len(self.devices)])
                if not self.procs and todo:
                    self.start(self.devices[0])
        finally:
            self.stop()
        return list(self.ws.values())

    def receive(self, timeout: float, only: int | None = None) -> list[tuple[int, tuple]]:
        """``(worker, message)`` for the messages waiting, from every worker or ``only`` one. A pipe broken by a
        killed worker yields what came before the break; the death itself is seen by the process check."""
        import pickle
        from multiprocessing.connection import wait

        conns = {c: w for w, c in self.conns.items() if only is None or w == only}
        got = []
        for conn in wait(list(conns), timeout=timeout):
            try:
                while conn.poll():
                    got.append((conns[conn], conn.recv()))
            except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError):
                continue
        return got

    def handle(self, wid: int, kind: str, _wid: int, tid: str, payload, *, todo: deque[Task]) -> None:
        run = self.run_
        if kind == "frame":
            run.frame(tid, *payload, worker=self.ws.get(wid))
            run.update()
        elif kind == "warning":
            run.log(tid.rsplit("#", 1)[0], f"warning: {payload}")
            if run.on_warning:
                run.on_warning(payload)
        elif kind in ("done", "error"):
            t = self.holding[wid]
            self.holding[wid], self.ws[wid].task = None, None
            if kind == "done":
                self.ws[wid].peak_rss_mb = payload.get("peak_rss_mb")
                self.ws[wid].models_loaded = payload.get("models_loaded", 0)
                self.ws[wid].tasks += 1
                run.done(t, payload)
                return
            why, message = payload
            if why == "oom":
                again = run.oom(t, message)
            elif why == "crash":
                again = run.retry(t, f"failed with {message}")
            else:
                again = None
                run.fail(t.job, f"{t.kind} {t.index}: {message}")
            if again is not None:
                todo.appendleft(again)

    def stop(self) -> None:
        for wid, p in self.procs.items():
            if p.is_alive():
                with contextlib.suppress(Exception):
                    self.inbox[wid].put(None)
        deadline = time.monotonic() + 30
        for p in self.procs.values():
            p.join(timeout=max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
