"""dreamvid.plot: the analysis picture is written headless, atomically, and never over a file by accident."""

from __future__ import annotations

import numpy as np
import pytest

from dreamvid.audio import analyze
from dreamvid.errors import OutputError
from dreamvid.plot import plot_analysis
from tests.songs import SR, kick_song


@pytest.fixture(scope="module")
def feats():
    return analyze((kick_song()[: 4 * SR], SR), fps=24)


def test_writes_png(tmp_path, feats):
    out = plot_analysis(feats, tmp_path / "a.png", title="kicks")
    assert out == tmp_path / "a.png"
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_refuses_to_overwrite(tmp_path, feats):
    path = tmp_path / "a.png"
    path.write_bytes(b"keep")
    with pytest.raises(OutputError, match="overwrite"):
        plot_analysis(feats, path)
    assert path.read_bytes() == b"keep"
    plot_analysis(feats, path, overwrite=True)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_png_only(tmp_path, feats):
    with pytest.raises(OutputError, match=r"\.png"):
        plot_analysis(feats, tmp_path / "a.jpg")


def test_silent_song_without_beats(tmp_path):
    feats = analyze((np.zeros(SR // 2, np.float32), SR), fps=30)
    assert plot_analysis(feats, tmp_path / "s.png").stat().st_size > 0


def test_schedule_plot_draws_a_panel_per_moving_or_scheduled_parameter(tmp_path, feats):
    from matplotlib.image import imread

    from dreamvid.config import resolve
    from dreamvid.plot import plot_schedule
    from dreamvid.schedule import build_schedule

    cfg = resolve({"dream": {"layers": "mixed3:{0%:1, 100%:0}, mixed5:{0%:0, 100%:1}"},
                   "motion": {"rotate": "0.5", "zoom": "1 + 0.01*onset"}, "audio": {"step": [0.5, 1.5]}})
    sched = build_schedule(feats, cfg.audio, base=cfg.dream, blend=0.5, n_frames=feats.n_frames, config=cfg)
    small = plot_schedule(sched, feats, tmp_path / "s.png", scheduled=("motion.rotate",))
    # the song, step size (the music), zoom / frame (an expression), rotate (scheduled, even if constant), layers
    flat = build_schedule(feats, {}, base=resolve({}).dream, blend=0.5, n_frames=feats.n_frames)
    none = plot_schedule(flat, feats, tmp_path / "n.png")
    assert imread(small).shape[0] > imread(none).shape[0] + 4 * 100  # four panels more, ~130 px each
    with pytest.raises(OutputError, match="already exists"):
        plot_schedule(flat, feats, tmp_path / "n.png")
