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

__all__ = ["plot_analysis"]


def plot_analysis(
    features: AudioFeatures,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    overwrite: bool = False,
    dpi: int = 100,
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
