"""The job runner: one strip, render or still at a time, in a thread whose state the page polls.

A strip and a render are ``pipeline.render`` of :class:`~dreamvid.pipeline.RenderOptions` the Studio builds;
a render writes ``renders/NAME.ui-job.json`` (its options and config) first, so an interrupted one is listed by
:meth:`JobRunner.resumable` and finished by :meth:`JobRunner.resume`, in this app or the next, with its own
settings. Every name a render gets obeys :mod:`.names`, which is what ``resume`` accepts.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, resolve
from ..errors import InputError, OutputError
from ..fsutil import atomic_write_bytes
from .names import NAME_RE
from .preview import Superseded

__all__ = ["Job", "JobRunner", "Stopped"]


class Stopped(Exception):
    """The page asked a job to stop."""


@dataclass
class Job:
    """A strip, a render or a still running in a thread (its state is what the page polls)."""

    id: int
    kind: str  # "strip", "render", "still"
    output: Path
    status: str = "starting"  # starting, running, done, failed, stopped
    done: int = 0
    total: int = 0
    resumed_from: int = 0
    started: float = field(default_factory=time.time)
    first_frame_at: float | None = None
    rate: float = 0.0  # frames (a still: steps) per second in this run
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

    def count(self, done: int, *, since: int = 0, seconds: float = 0.0, timed: bool = True) -> None:
        """``done`` units finished (``since`` of them by an earlier run; ``timed``: by this one, in ``seconds``);
        raises :class:`Stopped` if the page asked the job to stop."""
        self.done = done
        if self.stop.is_set():
            raise Stopped
        if not timed:
            return
        now = time.time()
        if self.first_frame_at is None:
            self.first_frame_at = now - seconds
        self.rate = (done - since) / max(1e-6, now - self.first_frame_at)


class JobRunner:
    """Runs the app's jobs, one at a time.

    Parameters
    ----------
    renders : the folder of renders and their records (``<workdir>/renders``)
    dreamer : ``dreamer(cancel=...)`` gives the app's Dreamer (waiting for it to be built)
    one_line : an exception as the one line the page shows
    """

    def __init__(self, renders: Path, *, dreamer: Callable[..., Any], one_line: Callable[[BaseException], str]):
        self.renders, self._dreamer, self._one_line = renders, dreamer, one_line
        self._lock = threading.Lock()
        self.current: Job | None = None
        self._ids = 0

    def new(self, kind: str, output: Path) -> Job:
        """A new job, unless one is running."""
        with self._lock:
            if self.current is not None and self.current.active:
                raise OutputError(f"a {self.current.kind} is running; wait for it or stop it first")
            self._ids += 1
            self.current = Job(self._ids, kind, output)
            return self.current

    def stop(self) -> bool:
        """Ask the running job to stop after its current frame (a render can then be resumed)."""
        job = self.current
        if job is None or not job.active:
            return False
        job.stop.set()
        return True

    # -- strips and renders --------------------------------------------------------------------------------------
    def render(self, kind: str, opts, cfg: Config, *, preset: str | None = None) -> Job:
        """``pipeline.render(opts, cfg)`` as a ``kind`` job. With the ``preset`` it was made from, its record
        (options, config, preset) is written first, so that :meth:`resume` can finish it."""
        from ..pipeline import check, render

        check(opts)  # one clear line before the thread starts
        job = self.new(kind, Path(opts.output))
        if preset is not None:
            record = {"options": {k: (str(v) if isinstance(v, Path) else v) for k, v in
                                  dataclasses.asdict(opts).items()}, "config": cfg.to_dict(), "preset": preset}
            try:
                atomic_write_bytes(_record_path(job.output), json.dumps(record, indent=2).encode(), overwrite=False)
            except BaseException:
                job.status = "failed"
                raise

        def on_start(done, total):
            job.status, job.done, job.total, job.resumed_from = "running", done, total, done

        def on_frame(ev):  # the frame is finished (kept by a stop) before this is called
            job.count(ev.index + 1, since=job.resumed_from, seconds=ev.seconds, timed=not ev.resumed)

        def run(dreamer):
            job.report = render(opts, cfg, dreamer, on_start=on_start, on_frame=on_frame,
                                on_warning=lambda m: setattr(job, "message", f"warning: {m}"),
                                on_publish=lambda done, total: setattr(job, "message", f"encoding {done}/{total}"))
            job.done = job.report.get("frames", job.done)
            return f"{kind} done: {job.output.name}"

        return self._spawn(job, run)

    def resumable(self) -> list[dict[str, Any]]:
        """Interrupted renders that :meth:`resume` can finish: name, frames done and total."""
        from ..pipeline import work_dir_for

        out = []
        active = self.current.output if self.current is not None and self.current.active else None
        for rec in sorted(self.renders.glob("*.ui-job.json")):
            output = rec.with_name(rec.name[: -len(".ui-job.json")] + ".mp4")
            work = work_dir_for(output)
            if output == active or output.exists() or not NAME_RE.fullmatch(output.stem):
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
        """Continue the interrupted render ``renders/<name>.mp4`` with its own settings (``resume=True``)."""
        from ..pipeline import RenderOptions

        if not name or not NAME_RE.fullmatch(name):
            raise InputError("choose an interrupted render to resume")
        output = self.renders / f"{name}.mp4"
        try:
            record = json.loads(_record_path(output).read_text())
        except (OSError, ValueError):
            raise InputError(f"no interrupted render named {name} in {self.renders}") from None
        o = dict(record["options"])
        for k in ("input", "output", "song"):
            o[k] = Path(o[k]) if o.get(k) else None
        for k in ("frames", "held"):  # tuples in RenderOptions, lists in JSON
            if isinstance(o.get(k), list):
                o[k] = tuple(o[k])
        known = {f.name for f in dataclasses.fields(RenderOptions)}
        opts = RenderOptions(**{**{k: v for k, v in o.items() if k in known}, "resume": True, "overwrite": False})
        return self.render("render", opts, resolve(record["config"]))

    # -- stills ---------------------------------------------------------------------------------------------------
    def still(self, source: Path, img, output: Path, cfg: Config) -> Job:
        """Dream ``img`` (read from ``source``) into ``output`` as ``dreamvid dream`` does (``stills.dream_files``)."""
        from ..dream.octaves import octave_shapes
        from ..stills import Job as StillJob
        from ..stills import dream_files

        job = self.new("still", output)
        d = cfg.dream
        job.total = len(octave_shapes(*img.shape[:2], octaves=d.octaves, scale=d.octave_scale)) * d.steps

        def run(dreamer):
            job.status = "running"
            dream_files([StillJob(source, output)], cfg, dreamer, images=[img],
                        on_step=lambda _info: job.count(job.done + 1))
            job.report = {"output": str(output), "size": [img.shape[1], img.shape[0]]}
            return f"image done: {output.name}"

        return self._spawn(job, run)

    def _spawn(self, job: Job, run: Callable[[Any], str]) -> Job:
        """Run ``run(dreamer)`` in a thread; its outcome (or its error, as one line) becomes the job's status."""

        def main():
            try:
                dreamer = self._dreamer(cancel=job.stop.is_set)
                job.status = "running"
                job.status, job.message = "done", run(dreamer)
            except (Stopped, Superseded):
                job.status = "stopped"
                job.message = (f"stopped after {job.done} frames; resume it below" if job.kind == "render"
                               and self.resumable() else f"{job.kind} stopped")
            except Exception as e:  # noqa: BLE001 - one line on the page, the traceback in ui.log
                job.status, job.message = "failed", f"error: {self._one_line(e)}"

        threading.Thread(target=main, name=f"dreamvid-ui-{job.kind}", daemon=True).start()
        return job


def _record_path(output: Path) -> Path:
    return output.with_name(output.stem + ".ui-job.json")
