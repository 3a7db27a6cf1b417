"""The gradio page over a :class:`~dreamvid.ui.studio.Studio`, and :func:`serve`. The only module that imports gradio.

The page holds no logic: every control's change records a preview request and returns at once, and a second event
delivers the newest preview; long jobs (strip, render) run in the Studio's threads and the page polls their state,
so a reload finds them where they are. Every handler that can fail shows its error as one line (:func:`build`'s
``attempt``).
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import presets as _presets
from ..errors import OutputError
from .access import check_access, check_available, check_port, check_workdir, served
from .controls import Control, controls
from .inputs import DEFAULT_UPLOAD_MB, SONG_SUFFIXES, VIDEO_SUFFIXES
from .jobs import Job
from .preview import PREVIEW_SIDE
from .studio import STRIP_SECONDS, Studio

__all__ = ["build", "serve", "DEFAULT_WORKDIR"]

DEFAULT_WORKDIR = "dreamvid-ui"


def _progress_html(job: Job | None) -> str:
    if job is None:
        return "<div id='dv-progress-text'>no render yet</div>"
    pct = 100.0 if job.status == "done" else 100.0 * job.done / job.total if job.total else 0.0
    bits = [f"{job.kind}: {job.status}", f"{job.done}/{job.total or '?'}"]
    if job.rate > 0 and job.active:
        bits.append(f"{job.rate:.2f} {'steps' if job.kind == 'still' else 'frames'}/s")
    if job.eta is not None and job.active:
        bits.append(f"eta {int(job.eta) // 60}:{int(job.eta) % 60:02d}")
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
    if isinstance(r.get("seconds"), Mapping):
        rows.append(f"| seconds (this run) | {r['seconds'].get('total_this_run', '')} |")
    return "| measure | value |\n|---|---|\n" + "\n".join(rows) if rows else ""


def build(studio: Studio):
    """The gradio Blocks page over ``studio``."""
    import gradio as gr

    ctl = controls()
    comps: dict[str, Any] = {}
    s = studio.settings

    def make(c: Control):
        elem = f"ctl-{c.key.replace(':', '-')}"
        if c.choices:
            return gr.Dropdown(list(c.choices), value=s.get(c.key), label=c.label, info=c.info or None, elem_id=elem)
        return gr.Slider(c.lo, c.hi, value=s.get(c.key) if s.get(c.key) is not None else c.lo, step=c.step,
                         label=c.label, info=c.info or None, elem_id=elem)

    with gr.Blocks(title="dreamvid", analytics_enabled=False, delete_cache=(600, 1800)) as page:
        gr.Markdown("## dreamvid: tune a dream by eye, then render")
        model_md = gr.Markdown(studio.model_status(), elem_id="model-status")
        message = gr.Markdown("", elem_id="message")
        with gr.Row():
            clip_in = gr.File(label="clip", file_types=list(VIDEO_SUFFIXES), elem_id="clip-upload")
            song_in = gr.File(label="song", file_types=list(SONG_SUFFIXES), elem_id="song-upload")
            still_in = gr.File(label="or a still image", file_types=[".jpg", ".jpeg", ".png", ".webp", ".bmp",
                                                                      ".tif", ".tiff"], elem_id="still-upload")
            preset = gr.Dropdown(studio.presets.choices(studio.preset), value=studio.preset, label="preset",
                                 elem_id="preset")
        inputs_md = gr.Markdown("", elem_id="inputs")
        with gr.Row():
            source_img = gr.Image(label="source", interactive=False, elem_id="source", height=PREVIEW_SIDE)
            preview_img = gr.Image(label="dreamed (preview)", interactive=False, elem_id="preview",
                                   height=PREVIEW_SIDE)
        preview_md = gr.Markdown("", elem_id="preview-info")
        frame = gr.Slider(0, max(1, studio.inputs.frames - 1), value=studio.frame, step=1, label="frame",
                          elem_id="frame")
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
        with gr.Accordion("strip: frames of the render from this frame on, at preview size", open=True):
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
        def attempt(fn: Callable, *args, **kw) -> tuple[Any, str | None]:
            """``(fn(...), None)``, or ``(None, the error as the page's one line)``."""
            try:
                return fn(*args, **kw), None
            except Exception as e:  # noqa: BLE001 - one line on the page (a traceback goes to ui.log)
                return None, f"**error:** {studio.one_line(e)}"

        def plot_or_none():
            p, _ = attempt(studio.plot)
            return str(p) if p else None

        def on_input(load: Callable[[str], str]):
            def handler(path):
                if path is None:
                    return gr.skip(), gr.skip(), gr.skip(), gr.skip()
                _, error = attempt(load, path)
                if error:  # the previous input, if any, stays loaded
                    return error, gr.skip(), gr.skip(), gr.skip()
                fr = gr.update(maximum=max(1, studio.inputs.frames - 1), value=studio.frame,
                               interactive=studio.inputs.info is not None)
                return studio.inputs.summary(), gr.skip(), fr, plot_or_none()

            return handler

        def on_clear(kind: str):
            def handler():
                if kind not in studio.inputs.notes:  # the box held a rejected upload: its error line stays
                    return gr.skip(), gr.skip()
                studio.inputs.clear(kind)
                return studio.inputs.summary(), plot_or_none()

            return handler

        def on_preset(name):
            vals, error = attempt(studio.set_preset, name)
            if error:
                return [error] + [gr.update() for _ in keys]
            return [f"preset {Path(name).stem}: {attempt(_presets.describe, name)[0] or ''}"] + [vals.get(k) for k in keys]

        def on_lever(c):
            vals = studio.lever(c)
            return [vals[k] if k in vals else gr.update() for k in keys]

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
            return plot_or_none() or gr.skip()

        def started(what: str, fn: Callable, *args, **kw) -> str:
            _, error = attempt(fn, *args, **kw)
            return error or f"{what} started"

        def on_render(start, dur, side, crf):
            return started("render", studio.start_render, start=float(start or 0.0),
                           duration=float(dur) if dur else None, max_side=int(side) if side else None,
                           crf=int(crf if crf is not None else 18))

        def on_save(name, desc, over):
            path, error = attempt(studio.save_preset, name, description=desc, overwrite=bool(over))
            if error:
                return error, gr.update()
            return (f"saved `{path}`: `dreamvid render CLIP --preset {path}` reads it",
                    gr.update(choices=studio.presets.choices(studio.preset)))

        def poll(last):
            job = studio.job
            key = None if job is None else (job.id, job.status, job.done, job.message)
            resum = [r["name"] for r in studio.jobs.resumable()]
            state = (key, tuple(resum), studio.model_status())
            if state == last:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), last
            finished = job is not None and job.status == "done" and (last is None or last[0] != key)
            strip = str(job.output) if finished and job.kind == "strip" else gr.skip()
            file = str(job.output) if finished and job.kind != "strip" else gr.skip()
            return (_progress_html(job), _measures_md(job), file, strip,
                    gr.update(choices=resum, value=resum[0] if resum else None), state[2], state)

        def on_load():
            r, job, inputs = studio.previews.result, studio.job, studio.inputs
            shown = r is not None and not r.error
            done = job is not None and job.status == "done"
            return [
                gr.update(maximum=max(1, inputs.frames - 1), value=studio.frame),
                gr.update(choices=studio.presets.choices(studio.preset), value=studio.preset),
                inputs.summary(),
                r.source if shown else None,
                r.image if shown else None,
                r.message if r is not None else "",
                plot_or_none(),
                _progress_html(job),
                _measures_md(job),
                str(job.output) if done and job.kind != "strip" else None,
                str(job.output) if done and job.kind == "strip" else None,
                *(str(p) if p is not None else None for p in (inputs.clip, inputs.song, inputs.still)),
            ] + [studio.settings.get(k) for k in keys]

        # -- wiring ---------------------------------------------------------------------------------------------
        evs = []
        for kind, comp, load in (("clip", clip_in, studio.load_clip), ("song", song_in, studio.inputs.load_song),
                                 ("still", still_in, studio.load_still)):
            evs.append(comp.upload(on_input(load), comp, [inputs_md, comp, frame, plot_img], show_progress="minimal"))
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
        strip_btn.click(lambda sec: started("strip", studio.start_strip, float(sec)), strip_s, message)
        render_btn.click(on_render, [r_start, r_dur, r_side, r_crf], message)
        stop_btn.click(lambda: "stopping after this frame…" if studio.stop() else "nothing is running", None, message)
        resume_btn.click(lambda name: started("resume", studio.jobs.resume, name), resume_dd, message)
        p_btn.click(on_save, [p_name, p_desc, p_over], [p_msg, preset])
        timer.tick(poll, seen, [progress, measures, download, strip_vid, resume_dd, model_md, seen],
                   show_progress="hidden")
        page.load(on_load, None, [frame, preset, inputs_md, source_img, preview_img, preview_md, plot_img, progress,
                                  measures, download, strip_vid, clip_in, song_in, still_in, *setting_comps])
    return page


def serve(*, host: str = "127.0.0.1", port: int = 7860, share: bool = False, auth: str | None = None,
          workdir: str | os.PathLike = DEFAULT_WORKDIR, preset: str | None = None, weights: str | None = None,
          backend: str | None = None, precision: str = "fp32", max_upload_mb: float = DEFAULT_UPLOAD_MB,
          block: bool = True, on_ready: Callable[[str], None] | None = None):
    """Start the app: check who may reach it and what it may serve (:mod:`.access`), build the Studio (the model
    loads in the background) and serve the page on ``host:port``, with gradio's login where ``auth`` is given.

    Gradio's upload cache is put inside ``workdir`` (``GRADIO_TEMP_DIR``), so nothing is written outside it, and
    only what the page shows is served from it. ``on_ready(url)`` is called once the page is served; with
    ``block`` this returns when the server stops.
    """
    check_available()
    login = check_access(host=host, share=share, auth=auth)
    workdir = check_workdir(workdir)
    check_port(host, port)
    from .. import backends

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
            server_name=host, server_port=port, share=share, auth=login, prevent_thread_lock=True, quiet=True,
            allowed_paths=served(studio.workdir), max_file_size=studio.inputs.max_upload_bytes, ssr_mode=False,
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
