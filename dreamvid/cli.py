"""The ``dreamvid`` command line: parse → resolve config → call the library. No logic lives here."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from . import __version__  # noqa: E402
from .access import AUTH_ENV  # noqa: E402
from .errors import DreamvidError  # noqa: E402
from .options import OptionError, RenderOptions, check_option  # noqa: E402

app = typer.Typer(
    help="dreamvid: DeepDream music videos. Dream photos, or render footage + a song into a video.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


# User text (paths, messages, warnings, preset descriptions) is never rich markup: "br[x]/a.mp4" and "[/]" are
# printed as they are. Every print of it goes through say() (markup off); styled parts are rich Text objects.
def say(console: Console, text: str | Text) -> None:
    """Print ``text`` on one logical line (no wrapping inside paths), never interpreted as markup."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """Print a library warning (``on_warning``; the decode thread calls it too)."""
    say(err, f"warning: {message}")


def error_line(message: str) -> Text:
    return Text.assemble(("error:", "bold red"), " ", message)


def friendly(fn):
    """Turn dreamvid's errors into one line and a non-zero exit; Ctrl-C into a hint to resume."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DreamvidError as e:
            say(err, error_line(str(e)))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            say(err, "interrupted. `dreamvid render` picks up where it stopped when run again with --resume; "
                     "`dreamvid batch`, when run again.")
            raise typer.Exit(130) from None

    return wrapper


# ---- shared options ------------------------------------------------------------------------------------------
Preset = Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset name (see `dreamvid presets`) or a .toml path. Default: lysergic.")]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", "-c", help="A TOML file with [dream]/[video]/[audio] keys; overrides the preset.")]
Layers = Annotated[Optional[str], typer.Option("--layers", "-l", help="Objective, e.g. 'mixed3:1,mixed5:1.5' or 'mixed4[10-20]:1' for channels.")]
Octaves = Annotated[Optional[int], typer.Option("--octaves", help="Number of octaves (scales).")]
OctaveScale = Annotated[Optional[float], typer.Option("--octave-scale", help="Size ratio between octaves.")]
Steps = Annotated[Optional[int], typer.Option("--steps", help="Gradient steps per octave.")]
StepSize = Annotated[Optional[float], typer.Option("--step-size", help="Step size (image range is [-1, 1]).")]
Jitter = Annotated[Optional[int], typer.Option("--jitter", help="Max random roll in pixels per step.")]
TileSize = Annotated[Optional[int], typer.Option("--tile-size", help="Tile size in pixels for big images.")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Random seed; the same seed and input give the same output.")]
Weights = Annotated[Optional[str], typer.Option("--weights", "-w", help="Weights: a file, 'imagenet' (default, downloaded once) or 'random'. Env: DREAMVID_WEIGHTS.")]
Backend = Annotated[Optional[str], typer.Option("--backend", help="tensorflow (default), jax or torch. Env: DREAMVID_BACKEND.")]
Precision = Annotated[str, typer.Option("--precision", help="fp32 or bf16 (faster on recent CPUs and GPUs).")]
MaxSide = Annotated[Optional[int], typer.Option("--max-side", help="Scale down so the longest side is at most N pixels.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Creativity = Annotated[Optional[float], typer.Option("--creativity", help="One lever from 0 (faithful: shallow layers, small steps, 2 octaves) to 1 (strange: deep layers, big steps, 5 octaves); your explicit --layers/--steps/--step-size/--octaves win. See docs/creative.md.")]
Guide = Annotated[Optional[Path], typer.Option("--guide", help="Dream toward this image's features (google/deepdream's guided objective).")]
GuideWeight = Annotated[Optional[float], typer.Option("--guide-weight", help="The guide's share of the objective, 0..1 (1: only the guide; default 1).")]
DreamClass = Annotated[Optional[str], typer.Option("--dream-class", help="Make an ImageNet class appear: a name ('tabby cat') or an index 0..999. Needs InceptionV3's ImageNet top (downloaded once).")]
ClassWeight = Annotated[Optional[float], typer.Option("--class-weight", help="The class's share of the objective, 0..1 (default 0.5).")]
# the pages (ui, live): one login rule (dreamvid.access)
Auth = Annotated[Optional[str], typer.Option("--auth", envvar=AUTH_ENV, show_envvar=False, help=f"USER:PASS: the page asks for this login on every request. Needed with --share or a --host other than this machine. Env: {AUTH_ENV}.")]
# render and zoom
React = Annotated[float, typer.Option("--react", help="How strongly the dream follows the music: 0 off, 1 the preset's amount, 2 double.")]
KeepWork = Annotated[bool, typer.Option("--keep-work", help="Keep the work folder (checkpointed frames) after success.")]
Crf = Annotated[int, typer.Option("--crf", help="H.264 quality, 0 (lossless) to 51; 18 is visually lossless. The video is encoded once, at the end, from finer checkpoints.")]


def _direction(creativity, guide, guide_weight, dream_class, class_weight) -> dict:
    """The [dream] keys of the creative-direction flags (None: not given)."""
    return {"creativity": creativity, "guide": None if guide is None else str(guide), "guide_weight": guide_weight,
            "dream_class": dream_class, "class_weight": class_weight}


def _check_targets(dream) -> None:
    """Decode the guide image and make sure the ImageNet top is at hand (a download, the first time) before the
    framework is imported: a bad guide or a missing top is one line, before any slow work."""
    if dream.guide:
        from .errors import InputError
        from .images import read_image

        try:
            from .targets import find_guide

            read_image(find_guide(dream.guide))
        except InputError as e:
            raise InputError(f"guide image: {e}") from None
    if dream.dream_class != "":
        from . import model

        model.ensure_top()


def _config(preset, config_file, **flags):
    from . import presets
    from .config import load_toml, resolve

    name = preset or presets.DEFAULT
    layers = [presets.load(name)]
    if config_file is not None:
        layers.append(load_toml(config_file))
    dream = {k: v for k, v in flags.items() if v is not None}
    layers.append({"dream": dream} if dream else None)
    return resolve(*layers, preset=name)


def _check_engine(weights, backend, precision, seed) -> None:
    """Check the weights file, backend and precision without importing a framework (fail fast)."""
    from . import backends, model

    model.check_precision(precision)
    backends.check(backend)
    model.check_weights(model.resolve_weights(weights, seed=seed or 0))


def _dreamer(weights, backend, precision, seed):
    """The Dreamer; this imports the framework, so every check of the command comes before it."""
    from .dream import Dreamer

    dreamer = Dreamer(weights=weights, backend=backend, precision=precision, seed=seed or 0)
    say(err, f"weights: {dreamer.weights.describe()}")
    return dreamer


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}", markup=False), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=err, disable=quiet, transient=False,
    )


def _check_positive(name: str, value, minimum=1):
    from .errors import ConfigError

    if value is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")


@app.command()
@friendly
def dream(
    images: Annotated[list[Path], typer.Argument(help="One or more images.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image, or a folder for several inputs.")],
    preset: Preset = None, config: ConfigFile = None, layers: Layers = None, octaves: Octaves = None,
    octave_scale: OctaveScale = None, steps: Steps = None, step_size: StepSize = None, jitter: Jitter = None,
    tile_size: TileSize = None, seed: Seed = None, weights: Weights = None, backend: Backend = None,
    precision: Precision = "fp32", max_side: MaxSide = None, overwrite: Overwrite = False, quiet: Quiet = False,
    creativity: Creativity = None, guide: Guide = None, guide_weight: GuideWeight = None,
    dream_class: DreamClass = None, class_weight: ClassWeight = None,
):
    """Dream still images (photos, thumbnails)."""
    from .stills import dream_files, plan, read_inputs

    check_option("max-side", max_side)
    cfg = _config(preset, config, layers=layers, octaves=octaves, octave_scale=octave_scale, steps=steps,
                  step_size=step_size, jitter=jitter, tile_size=tile_size, seed=seed,
                  **_direction(creativity, guide, guide_weight, dream_class, class_weight))
    jobs = plan(images, output, overwrite=overwrite)
    _check_engine(weights, backend, precision, cfg.dream.seed)
    _check_targets(cfg.dream)
    inputs = read_inputs(jobs, max_side=max_side)  # every input decoded before the framework is imported
    dreamer = _dreamer(weights, backend, precision, cfg.dream.seed)
    with _progress(quiet) as bar:
        task = bar.add_task("dreaming", total=None, rate="")

        def on_image(i, job, shape):
            from .dream.octaves import octave_shapes

            n = len(octave_shapes(*shape, octaves=cfg.dream.octaves, scale=cfg.dream.octave_scale)) * cfg.dream.steps
            bar.update(task, description=f"[{i + 1}/{len(jobs)}] {job.src.name}", total=n, completed=0)

        written = dream_files(jobs, cfg, dreamer, images=inputs, overwrite=overwrite, on_image=on_image,
                              on_step=lambda info: bar.advance(task))
    for p in written:
        say(out, str(p))


@app.command()
@friendly
def render(
    clip: Annotated[Path, typer.Argument(help="The footage (any format OpenCV/ffmpeg reads).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4.")],
    song: Annotated[Optional[Path], typer.Option("--song", "-s", help="Music to drive the dream and to mux in (wav, flac, ogg, mp3, m4a).")] = None,
    loop_song: Annotated[bool, typer.Option("--loop-song", help="If the song is shorter than the video, loop it (default: silence after it ends).")] = False,
    react: React = 1.0,
    start: Annotated[float, typer.Option("--start", help="Start time in seconds.")] = 0.0,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Seconds to render (default: to the end).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted render of the same output.")] = False,
    keep_work: KeepWork = False,
    crf: Crf = 18,
    x264_preset: Annotated[str, typer.Option("--x264-preset", help="x264 speed preset, ultrafast..veryslow; veryfast keeps up with a GPU's real-time render.")] = "medium",
    preset: Preset = None, config: ConfigFile = None, layers: Layers = None, octaves: Octaves = None,
    octave_scale: OctaveScale = None, steps: Steps = None, step_size: StepSize = None, jitter: Jitter = None,
    tile_size: TileSize = None, seed: Seed = None, weights: Weights = None, backend: Backend = None,
    precision: Precision = "fp32", max_side: MaxSide = None, overwrite: Overwrite = False, quiet: Quiet = False,
    creativity: Creativity = None, guide: Guide = None, guide_weight: GuideWeight = None,
    dream_class: DreamClass = None, class_weight: ClassWeight = None,
):
    """Render a dreamed music video: flow-coherent frames, the song muxed in, resumable, with a JSON report."""
    opts = RenderOptions(input=clip, output=output, song=song, loop_song=loop_song, start=start, duration=duration,
                         max_side=max_side, react=react, overwrite=overwrite, resume=resume, crf=crf,
                         x264_preset=x264_preset, keep_work=keep_work)
    cfg = _config(preset, config, layers=layers, octaves=octaves, octave_scale=octave_scale, steps=steps,
                  step_size=step_size, jitter=jitter, tile_size=tile_size, seed=seed,
                  **_direction(creativity, guide, guide_weight, dream_class, class_weight))
    report = _render_video(opts, cfg, weights, backend, precision, quiet, "rendering")
    say(out, f"{report['output']}  ({report['frames']} frames, temporal_stability {report['temporal_stability']}, "
             f"dream_strength {report['dream_strength']}, dream_gain {report['dream_gain']}, "
             f"audio_sync {report['audio_sync']})")


def _check_schedules(cfg, song) -> None:
    """A schedule that counts in beats needs a song or ``[motion] bpm`` (known before any work)."""
    from .schedule import check_schedules

    check_schedules(cfg, song=song is not None)


@app.command()
@friendly
def batch(
    job_file: Annotated[Path, typer.Argument(help="The job file (TOML: [defaults] and [[job]] tables; see docs/batch.md).", show_default=False)],
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes (default: one per GPU, else 1).")] = None,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPUs to use, e.g. '0,1': one worker each, with its own CUDA_VISIBLE_DEVICES.")] = None,
    retries: Annotated[int, typer.Option("--retries", help="Times a chunk whose worker died or crashed is run again.")] = 1,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Run the good jobs even if some are bad (each bad one is listed).")] = False,
    status: Annotated[bool, typer.Option("--status", help="Print the jobs and chunks and how far each got; run nothing.")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Run the chunks as Ray tasks: on the cluster $RAY_ADDRESS names, else on a Ray instance started here.")] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Run on this Ray cluster (implies --ray): 'auto' (the cluster this machine is a node of) or 'ray://HEAD:10001'.")] = None,
    overwrite: Overwrite = False, quiet: Quiet = False,
):
    """Render a job file of renders and stills on local workers or a Ray cluster: chunked, resumable, one report."""
    from . import batch as lib
    from .errors import ConfigError

    _check_positive("--workers", workers)
    _check_positive("--retries", retries, 0)
    gpu_list = None
    if gpus is not None:
        gpu_list = [g.strip() for g in gpus.split(",") if g.strip()]
        if not gpu_list or not all(g.isdigit() for g in gpu_list):
            raise ConfigError(f"--gpus must list GPU numbers such as 0,1, got {gpus!r}")
    ray = ray or ray_address is not None
    if ray and (workers is not None or gpus is not None):
        raise ConfigError("--ray runs on the cluster's own workers: leave out --workers and --gpus")

    def skipped(line, name, reason):
        say(err, f"warning: skipping job '{name}' (line {line}): {reason}")

    jobs = lib.load_jobs(job_file, overwrite=overwrite, skip_bad=skip_bad, on_skip=skipped)
    if status:
        out.print(_batch_table(lib.status(job_file, jobs), chunks=True))
        return
    from rich.live import Live

    with Live(console=err, refresh_per_second=4, transient=False, auto_refresh=False) as live:
        def on_update(st):
            if not quiet:
                live.update(_batch_table(st), refresh=True)

        if ray:
            from .batch_ray import run_ray

            report = run_ray(job_file, jobs, address=ray_address, retries=retries, overwrite=overwrite, on_update=on_update,
                             on_warning=warn)
        else:
            report = lib.run_local(job_file, jobs, workers=workers, gpus=gpu_list, retries=retries,
                                   overwrite=overwrite, on_update=on_update, on_warning=warn)
    t = report["total"]
    for j in report["jobs"]:
        if j["state"] == "failed":
            say(err, error_line(f"job '{j['name']}' failed: {j['error']}"))
    say(out, f"{lib.batch_dir_for(job_file) / 'batch.report.json'}  ({t['done']}/{t['jobs']} jobs done, "
             f"{t['frames_dreamed']} frames dreamed in {t['wall_seconds']:.1f} s, {t['frames_per_second']:.2f} frames/s)")
    if t["failed"]:
        raise typer.Exit(1)


def _batch_table(st, *, chunks: bool = False) -> Table:
    """The live table of ``dreamvid batch``: jobs (and chunks), workers, frames/s and ETA."""
    import time

    eta = st.eta()
    table = Table("job", "kind", "state", "chunks", "frames", "retries", box=None,
                  title=None if chunks else f"{st.fps():.2f} frames/s" + (f", eta {eta:.0f} s" if eta is not None and
                                                                          st.dreamed else ""))
    for j in st.jobs.values():
        table.add_row(Text(j.name), Text(j.kind), Text(j.state + (f": {j.error}" if j.error else "")),
                      Text(f"{j.chunks_done}/{j.chunks}"), Text(f"{j.frames_done}/{j.frames}"), Text(str(j.retries)))
        if chunks:
            for i, s in sorted(j.chunk_states.items()):
                table.add_row(Text(f"  chunk {i}"), Text(""), Text(s), Text(""), Text(""), Text(""))
    for w in st.workers.values():
        busy = f"{w.frames / max(1e-9, time.time() - st.started):.2f} frames/s" if w.frames else ""
        table.add_row(Text(f"worker {w.id}"), Text(w.device), Text(w.task or "idle"), Text(""), Text(str(w.frames)),
                      Text(busy))
    return table


@app.command()
@friendly
def zoom(
    image: Annotated[Path, typer.Argument(help="The image to zoom into.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .mp4.")],
    song: Annotated[Optional[Path], typer.Option("--song", "-s", help="Music: the zoom's speed and pulses follow it, and the video lasts as long as it.")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="Length in seconds (default: the song's length, or 10 without a song).")] = None,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate of the video.")] = 25.0,
    react: React = 1.0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted zoom of the same output.")] = False,
    keep_work: KeepWork = False,
    crf: Crf = 18,
    preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset name or a .toml path. Default: zoom-tunnel.")] = None,
    config: ConfigFile = None, layers: Layers = None, octaves: Octaves = None,
    octave_scale: OctaveScale = None, steps: Steps = None, step_size: StepSize = None, jitter: Jitter = None,
    tile_size: TileSize = None, seed: Seed = None, weights: Weights = None, backend: Backend = None,
    precision: Precision = "fp32", max_side: MaxSide = None, overwrite: Overwrite = False, quiet: Quiet = False,
    creativity: Creativity = None, guide: Guide = None, guide_weight: GuideWeight = None,
    dream_class: DreamClass = None, class_weight: ClassWeight = None,
):
    """The infinite zoom: each frame is the previous dream moved by the preset's [motion], then dreamed again."""
    if seconds is None and song is None:
        seconds = 10.0
    try:
        opts = RenderOptions(input=image, output=output, song=song, duration=seconds, max_side=max_side, react=react,
                             overwrite=overwrite, resume=resume, crf=crf, keep_work=keep_work, feedback=True, fps=fps)
    except OptionError as e:  # the zoom's length is --seconds
        raise OptionError("seconds", e.rule, e.value) if e.key == "duration" else e from None
    cfg = _config(preset or "zoom-tunnel", config, layers=layers, octaves=octaves, octave_scale=octave_scale,
                  steps=steps, step_size=step_size, jitter=jitter, tile_size=tile_size, seed=seed,
                  **_direction(creativity, guide, guide_weight, dream_class, class_weight))
    report = _render_video(opts, cfg, weights, backend, precision, quiet, "zooming")
    say(out, f"{report['output']}  ({report['frames']} frames, dream_strength {report['dream_strength']}, "
             f"audio_sync {report['audio_sync']})")


def _render_video(opts, cfg, weights, backend, precision: str, quiet: bool, what: str) -> dict:
    """``render`` and ``zoom`` after their flags: every cheap check (outputs, inputs, schedules, engine, guide and
    class), then the model, then ``pipeline.render`` with a progress bar (frames, rate, ETA); returns the report."""
    import time

    from .pipeline import check, render as run_render

    check(opts)
    _check_schedules(cfg, opts.song)
    _check_engine(weights, backend, precision, cfg.dream.seed)
    _check_targets(cfg.dream)
    dreamer = _dreamer(weights, backend, precision, cfg.dream.seed)

    with _progress(quiet) as bar:
        task = bar.add_task(what, total=None, rate="")
        t0 = [None, 0]

        def on_start(done, total):
            bar.update(task, total=total, completed=done, description=what + (" (resumed)" if done else ""))

        def on_frame(ev):
            if ev.resumed:
                return
            if t0[0] is None:
                t0[0] = time.perf_counter() - ev.seconds
            t0[1] += 1
            rate = t0[1] / max(1e-9, time.perf_counter() - t0[0])
            bar.update(task, completed=ev.index + 1, rate=f"{rate:.2f} frames/s")

        def on_publish(done, total):  # the last stage: the whole video encoded once
            bar.update(task, total=total, completed=done, description="encoding", rate="")

        return run_render(opts, cfg, dreamer, on_start=on_start, on_frame=on_frame, on_warning=warn,
                          on_publish=on_publish)


@app.command()
@friendly
def schedule(
    preset: Annotated[str, typer.Argument(help="Preset name or a .toml path.", show_default=False)],
    song: Annotated[Path, typer.Option("--song", "-s", help="The song the schedule follows.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .png plot.")],
    config: ConfigFile = None,
    fps: Annotated[float, typer.Option("--fps", help="Video frame rate the schedule is built at.")] = 25.0,
    react: Annotated[float, typer.Option("--react", help="Scale of the music's reaction, as in render.")] = 1.0,
    overwrite: Overwrite = False,
):
    """Plot every scheduled parameter of a preset over a song, under the song's analysis."""
    from .errors import ConfigError
    from .fsutil import check_output
    from .plot import plot_schedule
    from .schedule import for_song

    check_option("fps", fps)
    check_option("react", react)
    if output.suffix.lower() != ".png":
        raise ConfigError(f"the schedule plot is a PNG: give an -o path ending in .png, not {output.name}")
    check_output(output, overwrite=overwrite)
    cfg = _config(preset, config)
    sched, feats = for_song(cfg, song, fps=fps, react=react)
    scheduled = tuple(k for k, _ in cfg.schedules)
    scheduled += ("dream.layers",) if any(spec.schedule is not None for spec in cfg.dream.layers) else ()
    plot_schedule(sched, feats, output, scheduled=scheduled, overwrite=overwrite,
                  title=f"{cfg.preset} over {song.name}: {feats.duration:.1f} s, {feats.tempo:.0f} BPM")
    say(out, f"{output}  ({len(sched)} frames; scheduled: {', '.join(scheduled) or 'none'})")


@app.command()
@friendly
def analyze(
    song: Annotated[Path, typer.Argument(help="The song to analyse.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .png plot.")],
    fps: Annotated[float, typer.Option("--fps", help="Video frame rate the features are aligned to.")] = 25.0,
    overwrite: Overwrite = False,
):
    """Plot what will drive the video: energy and onset envelopes, bands and beats on a time axis."""
    from .audio import analyze as run_analyze
    from .fsutil import check_output
    from .plot import plot_analysis

    check_option("fps", fps)
    check_output(output, overwrite=overwrite)
    feats = run_analyze(song, fps=fps)
    plot_analysis(feats, output, title=song.name, overwrite=overwrite)
    say(out, f"{output}  ({feats.duration:.1f} s, tempo {feats.tempo:.0f} BPM, {len(feats.beat_frames)} beats)")


@app.command()
@friendly
def presets(name: Annotated[Optional[str], typer.Argument(help="Show this preset's settings.")] = None):
    """List the presets, or show one."""
    from . import presets as p

    if name is None:
        table = Table("preset", "description", "file", box=None)
        for n, path in p.available().items():
            table.add_row(Text(n), Text(p.describe(n)), Text(str(path)))  # Text: never markup
        out.print(table)
    else:
        say(out, p.find(name).read_text().rstrip())  # verbatim, no wrapping: pipe-able TOML


@app.command()
@friendly
def layers(size: Annotated[int, typer.Option("--size", help="Input side in pixels for the shapes shown.")] = 512):
    """List the dreamable layers and their output shapes."""
    from .model import layer_table

    if size < 75:
        from .errors import ConfigError

        raise ConfigError(f"--size must be at least 75 (InceptionV3's smallest input), got {size}")
    table = Table("layer", f"output shape for a {size}x{size} input", "character", box=None)
    notes = {"mixed0": "edges, fine texture", "mixed2": "swirls", "mixed3": "swirls, strokes", "mixed4": "patterns, eyes",
             "mixed5": "eyes, animal parts", "mixed6": "objects", "mixed8": "objects, deep", "mixed10": "deepest"}
    for n, shape in layer_table(size=(size, size)):
        table.add_row(Text(n), Text(str(shape)), Text(notes.get(n, "")))
    out.print(table)


@app.command()
@friendly
def weights(
    weights: Weights = None,
    import_file: Annotated[Optional[Path], typer.Option("--import", help="Check a weights file and copy it into the dreamvid cache as the default.")] = None,
    overwrite: Overwrite = False,
):
    """Show which weights would be used and from where, or import a weights file into the cache."""
    from . import model

    if import_file is not None:
        dest = model.import_weights(import_file, overwrite=overwrite)
        say(out, f"imported {import_file} → {dest}; it is now the default (unless --weights or ${model.ENV_VAR} says "
                 "otherwise)")
        return
    src = model.resolve_weights(weights)
    say(out, src.describe())


@app.command()
@friendly
def ui(
    port: Annotated[int, typer.Option("--port", help="Port to serve the page on.")] = 7860,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only; any other address, e.g. 0.0.0.0, opens it to the network and needs --auth).")] = "127.0.0.1",
    share: Annotated[bool, typer.Option("--share", help="Also serve it through a public gradio.live link (needs --auth).")] = False,
    auth: Auth = None,
    workdir: Annotated[Path, typer.Option("--workdir", help="The app's own working folder (new, empty, or made by dreamvid ui; never a home or project folder): uploads, renders, saved presets, caches. Nothing is written outside it; only what the page shows is served from it.")] = Path("dreamvid-ui"),
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="Largest upload accepted, in MB.")] = 2048,
    preset: Preset = None, weights: Weights = None, backend: Backend = None, precision: Precision = "fp32",
):
    """Tune a dream by eye in the browser: a live preview, sliders, a strip, the song's plot, then render.
    Needs the ui extra: pip install "dreamvid[ui]"."""
    from .errors import ConfigError
    from .ui import check_access, check_available, check_workdir, serve

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535, got {port}")
    if max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb must be at least 1, got {max_upload_mb}")
    check_access(host=host, share=share, auth=auth)
    check_workdir(workdir)
    check_available()
    _config(preset, None)  # a bad preset is one line now
    _check_engine(weights, backend, precision, 0)
    try:
        serve(host=host, port=port, share=share, auth=auth, workdir=workdir, preset=preset, weights=weights,
              backend=backend, precision=precision, max_upload_mb=max_upload_mb,
              on_ready=lambda url: say(err, f"dreamvid ui: {url}  (working folder {workdir}; Ctrl-C to stop)"))
    except KeyboardInterrupt:
        say(err, "stopped")


@app.command()
@friendly
def live(
    source: Annotated[str, typer.Argument(help="A camera index (0, 1, ...), a clip (played in a loop) or an image (the infinite zoom).", show_default=False)],
    song: Annotated[Optional[Path], typer.Option("--song", "-s", help="The song: its features drive the dream, the page plays it, and its playback is the clock.")] = None,
    audio_in: Annotated[Optional[str], typer.Option("--audio-in", metavar="<device>", help="Listen to the sound card instead of a song: 'default' (the default input), a device number or part of its name. Its features, known up to now, drive the dream; with --record the sound is captured beside the preset (.wav). Needs PortAudio.")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset name or a .toml path; its [live] table maps the controls. Default: lysergic (zoom-tunnel for an image).")] = None,
    size: Annotated[int, typer.Option("--size", help="Long side of the dream in pixels (the pacer may go down to half of it to hold --fps).")] = 256,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frame rate to hold (default: the clip's or camera's; 25 for an image).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address of the page (default: this machine only; any other address, e.g. 0.0.0.0, opens it to the network and needs --auth).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the page.")] = 8765,
    auth: Auth = None,
    osc: Annotated[Optional[int], typer.Option("--osc", help="Listen for OSC on this UDP port: /dreamvid/<section>/<key> value, /dreamvid/control/<name> 0..1, /dreamvid/pulse.")] = None,
    midi: Annotated[Optional[str], typer.Option("--midi", help="Read MIDI control changes from this input port ('any': the first one).")] = None,
    record: Annotated[Optional[Path], typer.Option("--record", help="Write the performance as a preset of keyframe schedules (.toml) that `dreamvid render --config` replays.")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Also write what was shown (.mp4, the song or the sound heard muxed in).")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", help="Stop after this many seconds (default: at the song's end, or Ctrl-C; an hour at most without a song).")] = None,
    adapt: Annotated[bool, typer.Option("--adapt/--no-adapt", help="Hold --fps by choosing size, steps and carried octaves per frame.")] = True,
    virtual_camera: Annotated[bool, typer.Option("--virtual-camera", help="Also send the frames to a virtual camera (pyvirtualcam) for OBS and VJ software.")] = False,
    react: React = 1.0,
    weights: Weights = None, backend: Backend = None, precision: Precision = "fp32", overwrite: Overwrite = False,
    quiet: Quiet = False,
):
    """Play the dream live from a camera, a clip or an image, with a song or the sound card, OSC/MIDI knobs and
    sliders; record the performance and render it offline. Needs the live extra for OSC/MIDI and the sound card:
    pip install "dreamvid[live]"."""
    from .live import LiveOptions, Session

    opts = LiveOptions(source=source, song=song, audio_in=audio_in, preset=preset, size=size, fps=fps, host=host,
                       port=port, auth=auth, osc=osc, midi=None if midi is None else ("" if midi == "any" else midi),
                       record=record, out=out_path, seconds=seconds, adapt=adapt, react=react, overwrite=overwrite,
                       virtual_camera=virtual_camera)
    session = Session.open(opts, on_warning=warn)
    try:
        _check_schedules(session.config, song)
        _check_engine(weights, backend, precision, session.config.dream.seed)
        _check_targets(session.config.dream)
        dreamer = _dreamer(weights, backend, precision, session.config.dream.seed)
    except BaseException:
        session.close()
        raise

    def ready(url):
        heard = f", sound card {session.sound.name!r} at {session.sound.sr} Hz" if session.sound else ""
        say(err, f"dreamvid live: {url or 'no page'}  ({session.source.kind} {source}, {session.fps:g} fps, "
                 f"preset {session.preset_name}{heard}{f', OSC on udp {session.osc.port}' if session.osc else ''}; "
                 "Ctrl-C to stop)")

    def frame(ev):
        if not quiet and ev.k % max(1, int(session.fps)) < 1 + ev.skipped:
            err.print(f"frame {ev.k}  t {ev.t:6.2f} s  {1 / max(ev.dream_seconds, 1e-9):5.1f} fps  "
                      f"{ev.quality.size[0]}x{ev.quality.size[1]} {ev.quality.steps} steps  "
                      f"latency {1000 * ev.latency:4.0f} ms", markup=False, highlight=False, end="\r")

    summary = session.run(dreamer, on_ready=ready, on_frame=frame)  # Ctrl-C ends the performance normally
    if not quiet:
        err.print()
    lat, heard = summary["latency_ms"], summary.get("heard") or {}
    say(out, f"{summary['frames']} frames in {summary['seconds']:.1f} s ({summary['fps']:.2f} fps, latency "
                       f"{lat['median']} ms median), {summary['moves']} control moves"
                       + (f"; recorded {summary['record']}" if summary["record"] else "")
                       + (f" and the sound in {heard['capture']}" if heard.get("capture") else "")
                       + (f"; wrote {summary['out']}" if summary["out"] else ""))
    if heard.get("dropped") or heard.get("overflows"):
        warn(f"the sound card's blocks came faster than they were taken: {heard['dropped']} dropped here, "
             f"{heard['overflows']} lost by PortAudio (a busy machine: try a smaller --size)")
    if summary["record"]:
        say(err, f"replay: {summary['replay']}")


@app.command()
def version():
    """Print the version."""
    say(out, __version__)


# click's exceptions (typer vendors click in recent versions, so they are found through typer's own classes)
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:  # console-script entry point
    """Run the app; a usage error (unknown option, bad value, missing argument) is one ``error:`` line too."""
    try:
        code = app(standalone_mode=False)
    except _ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `dreamvid`: the help
            e.show()
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        say(err, error_line(f"{e.format_message()}{hint}"))
        sys.exit(e.exit_code)
    except typer.Abort:
        say(err, "aborted")
        sys.exit(1)
    _exit(code if isinstance(code, int) else 0)


def _exit(code: int) -> None:
    """Exit with ``code``. Once a framework is loaded, skip the interpreter's teardown: TensorFlow's takes ~0.7 s
    on two cores, and by now every output is written, closed and renamed into place (atomic writes) and every
    worker thread and ffmpeg process of a render is joined, so only the standard streams need flushing.
    (Under coverage, whose data is saved at exit, the normal exit is kept.)"""
    if any(m in sys.modules for m in ("tensorflow", "jax", "torch")) and "coverage" not in sys.modules:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    main()
