"""Pictures of an analysis, for checking what the dream will react to. The only module that imports matplotlib.

It draws with the Agg canvas directly (no pyplot, no global backend switch), so it works headless and leaves
the caller's matplotlib state alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from .audio import AudioFeatures
from .errors import OutputError
from .fsutil import atomic_output, check_output

__all__ = ["plot_analysis", "plot_schedule"]


def plot_analysis(
    features: AudioFeatures,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
    dpi: int = 100,
    marker: float | None = None,
) -> Path:
    """Draw the per-frame features of a song on a shared time axis and write them as a PNG.

    Top: the ``rms`` and ``onset`` envelopes; bottom: the ``low``, ``mid`` and ``high`` bands. Tracked
    beats are vertical lines on both.

    Parameters
    ----------
    features : AudioFeatures
        The analysis to draw.
    out_path : str or os.PathLike
        Where to write the picture; must end in ``.png``. Written atomically.
    title : str, optional
        Title above the plot; defaults to a summary (frames, fps, tempo).
    overwrite : bool
        Replace ``out_path`` if it exists.
    dpi : int
        Resolution; the figure is 12 × 5 inches.
    marker : float, optional
        A time in seconds to mark with a vertical line on both plots (e.g. the frame shown in ``dreamvid ui``).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    OutputError
        ``out_path`` exists (without ``overwrite``), is not a ``.png`` or cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".png":
        raise OutputError(f"the analysis plot is a PNG: give a path ending in .png, not {out_path.name}")
    check_output(out_path, overwrite=overwrite)  # fail before drawing

    t = features.times
    fig = Figure(figsize=(12, 5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_env, ax_bands = fig.subplots(2, 1, sharex=True)
    ax_env.plot(t, features.rms, color="#1f77b4", lw=1.2, label="rms")
    ax_env.plot(t, features.onset, color="#d62728", lw=0.8, alpha=0.8, label="onset")
    ax_bands.plot(t, features.low, color="#8c564b", lw=1.0, label="low < 200 Hz")
    ax_bands.plot(t, features.mid, color="#2ca02c", lw=1.0, label="mid")
    ax_bands.plot(t, features.high, color="#9467bd", lw=1.0, label="high > 2 kHz")
    beat_times = features.beat_frames / features.fps
    for ax in (ax_env, ax_bands):
        if len(beat_times):
            ax.vlines(beat_times, 0, 1.05, colors="0.6", lw=0.6, alpha=0.6, zorder=0,
                      label="beat" if ax is ax_env else None)  # fmt: skip
        if marker is not None:
            ax.axvline(marker, color="#ff7f0e", lw=1.6, zorder=3, label="frame" if ax is ax_env else None)
        ax.set_ylim(0, 1.08)
        ax.set_xlim(0, max(t[-1], 1.0 / features.fps))
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    ax_env.set_ylabel("envelope")
    ax_bands.set_ylabel("band energy")
    ax_bands.set_xlabel("time (s)")
    if title is None:
        title = (
            f"{features.n_frames} frames at {features.fps:g} fps, {features.duration:.1f} s song, "
            f"{features.tempo:.0f} BPM, {len(features.beat_frames)} beats"
        )
    fig.suptitle(title, fontsize=10)
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return out_path


# what each schedule curve is called on the plot, in order (the curves that stay constant are left out, unless the
# config schedules them)
_CURVES = (
    ("step_size", "step size", "dream.step_size"),
    ("steps", "steps / octave", "dream.steps"),
    ("jitter", "jitter (px)", "dream.jitter"),
    ("octaves", "octaves", "dream.octaves"),
    ("octave_scale", "octave scale", "dream.octave_scale"),
    ("blend", "blend", "video.blend"),
    ("strength", "strength x", None),
    ("target", "strength (grey levels)", "video.strength"),
    ("zoom", "zoom pulse", None),
    ("move_zoom", "zoom / frame", "motion.zoom"),
    ("rotate", "rotate (deg / frame)", "motion.rotate"),
    ("translate_x", "translate x / frame", "motion.translate_x"),
    ("translate_y", "translate y / frame", "motion.translate_y"),
)


def plot_schedule(
    schedule,
    features: AudioFeatures,
    out_path: str | os.PathLike,
    *,
    scheduled: tuple[str, ...] = (),
    title: str | None = None,
    overwrite: bool = False,
    dpi: int = 100,
) -> Path:
    """Draw every parameter a schedule moves over the song, under the song's analysis, as a PNG.

    Top: the ``rms`` and ``onset`` envelopes and the bands, with the beats. Below, one panel per curve of
    ``schedule`` (a :class:`dreamvid.schedule.Schedule`) that changes over the song or whose key is in
    ``scheduled`` (e.g. ``"dream.step_size"``), and the layer weights (one line per layer) if they change.

    Parameters
    ----------
    schedule : Schedule, over ``features.n_frames`` frames (or fewer)
    features : AudioFeatures
    out_path : path ending in ``.png``; written atomically
    scheduled : config keys given as schedules (always drawn)
    title, overwrite, dpi : as :func:`plot_analysis`

    Returns
    -------
    Path
        ``out_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".png":
        raise OutputError(f"the schedule plot is a PNG: give a path ending in .png, not {out_path.name}")
    check_output(out_path, overwrite=overwrite)

    curves = schedule.curves()
    n = len(schedule)
    t = features.times[:n]
    panels = []
    for name, label, key in _CURVES:
        if name not in curves:
            continue
        v = curves[name]
        if key in scheduled or (len(v) and float(v.max()) != float(v.min())):
            panels.append((label, [(label, v)]))
    w = curves["layer_weights"]
    if len(w) and (w.max(axis=0) != w.min(axis=0)).any():
        panels.append(("layer weights", [(spec.name, w[:, i]) for i, spec in enumerate(schedule.base.layers)]))

    rows = 1 + len(panels)
    fig = Figure(figsize=(12, 2.0 + 1.3 * rows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.plot(t, features.rms[:n], color="#1f77b4", lw=1.0, label="rms")
    ax.plot(t, features.onset[:n], color="#d62728", lw=0.7, alpha=0.8, label="onset")
    for band, colour in (("low", "#8c564b"), ("mid", "#2ca02c"), ("high", "#9467bd")):
        ax.plot(t, features.feature(band)[:n], color=colour, lw=0.7, alpha=0.7, label=band)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("song")
    beat_times = features.beat_frames[features.beat_frames < n] / features.fps
    colours = ("#ff7f0e", "#17becf", "#e377c2", "#7f7f7f", "#bcbd22", "#1f77b4")
    for ax, (label, lines) in zip(axes[1:], panels, strict=True):
        for i, (name, v) in enumerate(lines):
            ax.plot(t, v, color=colours[i % len(colours)], lw=1.1, label=name if len(lines) > 1 else None)
        ax.set_ylabel(label, fontsize=8)
        if len(lines) > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    for ax in axes:
        if len(beat_times):
            ax.vlines(beat_times, 0, 1, transform=ax.get_xaxis_transform(), colors="0.75", lw=0.5, zorder=0)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_xlim(0, max(t[-1] if len(t) else 0.0, 1.0 / features.fps))
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    axes[-1].set_xlabel("time (s)")
    if not panels:
        axes[0].set_title("nothing is scheduled: every parameter is constant", fontsize=9)
    if title is None:
        title = f"{n} frames at {features.fps:g} fps, {features.tempo:.0f} BPM"
    fig.suptitle(title, fontsize=10)
    with atomic_output(out_path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return out_path
