"""Dream still images: one file, or many into a folder. Validates everything before the first dream."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .dream import Dreamer, StepInfo  # cheap: the framework is imported when a Dreamer is made
from .errors import InputError, OutputError
from .fsutil import atomic_write_bytes, check_output
from .images import IMAGE_SUFFIXES, fit, read_image, write_image


@dataclass(frozen=True)
class Job:
    src: Path
    out: Path


def plan(inputs: Sequence[str | Path], output: str | Path, *, overwrite: bool) -> list[Job]:
    """Map inputs to outputs. One input: ``output`` is a file (or an existing folder to put it in).
    Several inputs: ``output`` is a folder and each result keeps its input's name. Checks every output first."""
    if not inputs:
        raise InputError("no input images given: dreamvid dream IMG... -o OUT")
    srcs = [Path(p) for p in inputs]
    out = Path(output)
    if len(srcs) == 1 and not out.is_dir():
        jobs = [Job(srcs[0], out)]
    else:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out} is a file, but {len(srcs)} inputs need an output folder: give -o a folder")
        if out.suffix.lower() in IMAGE_SUFFIXES and not out.exists():
            raise OutputError(f"{len(srcs)} inputs need an output folder, but -o {out} looks like an image file")
        names = [s.name for s in srcs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise InputError(f"two inputs share the name {sorted(dupes)[0]}; their outputs would collide in {out}")
        jobs = [Job(s, out / s.name) for s in srcs]
    for job in jobs:
        if job.out.suffix.lower() not in IMAGE_SUFFIXES:
            raise OutputError(f"cannot tell the image format of {job.out}: end the name in .jpg, .png, .webp, .bmp or .tif")
        if job.out.resolve() == job.src.resolve():
            raise OutputError(f"output {job.out} is the input itself; choose another -o")
        check_output(job.out, overwrite=overwrite)
    return jobs


def read_inputs(jobs: Sequence[Job], *, max_side: int | None = None) -> list:
    """Read (and so validate) every job's input, scaled down to ``max_side``: uint8 RGB arrays, in job order.
    Cheap next to a dream, so a bad input among many fails before any dreaming (or framework import)."""
    return [fit(read_image(job.src), max_side) for job in jobs]


def dream_files(
    jobs: Sequence[Job],
    config: Config,
    dreamer: Dreamer,
    *,
    images: Sequence | None = None,
    max_side: int | None = None,
    overwrite: bool = False,
    on_image: Callable[[int, Job, tuple[int, int]], None] | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
) -> list[Path]:
    """Dream every job. ``images`` are the inputs from :func:`read_inputs`; without them every input is read
    (and so validated) before the first dream starts."""
    if images is None:
        images = read_inputs(jobs, max_side=max_side)
    written = []
    for i, (job, img) in enumerate(zip(jobs, images)):
        if on_image:
            on_image(i, job, img.shape[:2])
        out = dreamer.dream(img, config.dream, callback=on_step)
        written.append(write_image(job.out, out, overwrite=overwrite))
        sidecar = job.out.with_name(job.out.name + ".dreamvid.json")
        record = {"input": str(job.src), "size": [img.shape[1], img.shape[0]], "weights": dreamer.weights.describe(),
                  "backend": dreamer.backend_name, "config": config.to_dict()}
        atomic_write_bytes(sidecar, json.dumps(record, indent=2).encode())
    return written
