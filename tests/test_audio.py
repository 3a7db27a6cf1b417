"""dreamvid.audio: loading, analysis, frame alignment. Real librosa on short synthetic songs."""

from __future__ import annotations

import math
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from dreamvid.audio import FEATURE_NAMES, AudioFeatures, analyze, envelope, load_song, pool_to_frames
from dreamvid.errors import AudioError, ConfigError
from tests.songs import KICKS, LOUD_START, SR, click_track, kick_song

FPS_2997 = 30000 / 1001


def tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


@pytest.fixture(scope="module")
def kicks() -> AudioFeatures:
    return analyze((kick_song(), SR), fps=FPS_2997)


# ---------------------------------------------------------------------------------------------------------------
# loading


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_load_song_reads_stereo_file_as_mono_at_sr(tmp_path, suffix):
    y = tone(1.0, 44100)
    path = tmp_path / f"song{suffix}"
    sf.write(path, np.stack([y, y], axis=1), 44100)
    out, sr = load_song(path, sr=22050)
    assert sr == 22050
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - 22050) <= 2
    assert rms(out) == pytest.approx(rms(y), rel=0.03)


def test_load_song_decodes_m4a_with_ffmpeg(tmp_path):
    wav, m4a = tmp_path / "in.wav", tmp_path / "song.m4a"
    y = tone(1.0, 44100)
    sf.write(wav, np.stack([y, 0.5 * y], axis=1), 44100)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(wav),
                    "-c:a", "aac", "-b:a", "128k", str(m4a)], check=True)  # fmt: skip
    out, sr = load_song(m4a, sr=16000)
    assert sr == 16000 and out.dtype == np.float32
    assert abs(len(out) / sr - 1.0) < 0.05
    assert rms(out) == pytest.approx(rms(0.75 * y), rel=0.05)  # mean of the two channels
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(len(out), 1 / sr)[np.argmax(spectrum)] == pytest.approx(440, abs=3)
    feats = analyze(m4a, fps=25)  # a path goes through the same loader
    assert feats.n_frames == 25 and feats.duration == pytest.approx(1.0, abs=0.05) and feats.rms[5:20].min() > 0.5


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300
    return msg


def test_missing_song(tmp_path):
    with pytest.raises(AudioError) as err:
        load_song(tmp_path / "nope.mp3")
    assert "does not exist" in _one_line(err) and "nope.mp3" in str(err.value)


def test_empty_song(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError) as err:
        load_song(tmp_path / "empty.wav")
    assert "empty" in _one_line(err)


@pytest.mark.parametrize("name", ["corrupt.wav", "corrupt.m4a", "corrupt.mp3"])
def test_corrupt_song(tmp_path, name):
    (tmp_path / name).write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    with pytest.raises(AudioError) as err:
        analyze(tmp_path / name, fps=24)
    assert "cannot decode" in _one_line(err) and name in str(err.value)


def test_zero_length_song(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError) as err:
        load_song(tmp_path / "zero.wav")
    assert "no audio samples" in _one_line(err)
    with pytest.raises(AudioError):
        analyze((np.zeros(0, np.float32), SR), fps=24)


def test_video_without_audio_track(tmp_path):
    path = tmp_path / "silent.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                    "color=c=black:s=32x32:d=0.4", "-c:v", "mpeg4", str(path)], check=True)  # fmt: skip
    with pytest.raises(AudioError, match="no audio track"):
        load_song(path)


def test_all_silent_song_is_fine():
    feats = analyze((np.zeros(SR, np.float32), SR), fps=24)
    assert feats.n_frames == 24
    for name in ("rms", "onset", "low", "mid", "high", "beat"):
        assert not feats.feature(name).any(), name
    assert feats.tempo == 0.0 and len(feats.beat_frames) == 0


# ---------------------------------------------------------------------------------------------------------------
# analysis


def test_features_shapes_ranges_and_names(kicks):
    n = math.ceil(8.0 * FPS_2997)
    assert kicks.n_frames == n and kicks.duration == pytest.approx(8.0) and kicks.sr == SR
    np.testing.assert_allclose(kicks.times, np.arange(n) / FPS_2997)
    for name in FEATURE_NAMES:
        a = kicks.feature(name)
        assert a.shape == (n,) and a.dtype == np.float32, name
        assert a.min() >= 0.0 and a.max() <= 1.0, name
        assert not a.flags.writeable, name
    assert set(np.unique(kicks.beat)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.flatnonzero(kicks.beat), kicks.beat_frames)
    with pytest.raises(ConfigError, match="did you mean 'onset'"):
        kicks.feature("onsets")


def test_loudness_follows_the_song(kicks):
    t = kicks.times
    silence, loud = t < 1.9, t > LOUD_START + 0.3
    assert kicks.rms[silence].max() == 0.0  # digital silence is 0, not a normalisation artefact
    assert kicks.rms[loud].mean() > 0.9
    between = _between_kicks(t)
    assert kicks.rms[loud].mean() > kicks.rms[between].mean() + 0.2
    # the kick is bass: the low band dominates the kicks, the high band wakes up in the loud section
    assert kicks.low[between].mean() > kicks.high[between].mean() + 0.3
    assert kicks.high[loud].mean() > 0.8


def _between_kicks(t: np.ndarray) -> np.ndarray:
    phase = (t - KICKS[0]) % 0.5
    return (t > KICKS[0]) & (t < LOUD_START - 0.05) & (phase > 0.2) & (phase < 0.45)


def test_each_kick_peaks_on_its_frame(kicks):
    for t0 in KICKS:
        k = round(t0 * kicks.fps)
        window = kicks.onset[k - 4 : k + 5]
        peak = k - 4 + int(np.argmax(window))
        assert abs(peak - k) <= 1, f"kick at {t0}s peaks on frame {peak}, expected {k}"
        assert kicks.onset[peak] > 0.8
        assert kicks.onset[k - 4] < 0.5 * kicks.onset[peak]


def test_beats_track_the_kicks(kicks):
    kick_frames = np.array([round(t0 * kicks.fps) for t0 in KICKS])
    on_kick = [np.min(np.abs(kick_frames - b)) <= 1 for b in kicks.beat_frames if b < LOUD_START * kicks.fps]
    assert len(on_kick) >= 6 and all(on_kick)
    assert 110 < kicks.tempo < 130


def test_click_track_alignment_over_five_minutes_at_2997():
    """Clicks late in a 5-minute song land on frame round(t * fps): no drift between hop and frame clocks."""
    sr = 8000  # low rate keeps the 5-minute analysis cheap; the clock arithmetic is the same
    clicks = [12.3456, 247.1234, 271.3371, 288.9004, 299.2571]
    feats = analyze((click_track(clicks, 300.0, sr), sr), fps=FPS_2997, sr=sr)
    assert feats.n_frames == math.ceil(300.0 * FPS_2997) == 8992
    for c in clicks:
        k = round(c * FPS_2997)
        window = feats.onset[k - 5 : k + 6]
        peak = k - 5 + int(np.argmax(window))
        assert abs(peak - k) <= 1, f"click at {c}s peaks on frame {peak}, expected {k}"
        assert window.max() > 0.9


@pytest.mark.parametrize("fps", [24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0, 60.0])
@pytest.mark.parametrize("hop_rate", [22050 / 256, 8000 / 128, 48000 / 512])
def test_pooling_has_no_drift(fps, hop_rate):
    """Impulses at hop times late in 5 minutes pool onto frame round(t * fps) at every common frame rate."""
    n_frames = math.ceil(300 * fps)
    x = np.zeros(int(301 * hop_rate) + 2, np.float32)
    rng = np.random.default_rng(0)
    hops = np.sort(rng.choice(np.arange(int(250 * hop_rate), int(299.9 * hop_rate)), 40, replace=False))
    x[hops] = 1.0
    pooled = pool_to_frames(x, hop_rate=hop_rate, fps=fps, n_frames=n_frames, how="max")
    assert pooled.shape == (n_frames,)
    expected = np.unique(np.floor(hops / hop_rate * fps + 0.5).astype(int))
    np.testing.assert_array_equal(np.flatnonzero(pooled), expected)
    mean = pool_to_frames(x, hop_rate=hop_rate, fps=fps, n_frames=n_frames, how="mean")
    np.testing.assert_array_equal(np.flatnonzero(mean), expected)


def test_envelope_attack_and_release():
    dt = 0.001
    x = np.r_[np.zeros(10), np.ones(200), np.zeros(1000)]
    env = envelope(x, dt=dt, attack=0.005, release=0.2)
    assert env.dtype == np.float32
    assert env[10 + 5] == pytest.approx(1 - math.exp(-6 / 5), abs=0.01)  # rises with time constant 5 ms
    assert env[209] > 0.99
    assert env[209 + 200] == pytest.approx(math.exp(-1), abs=0.01)  # falls with time constant 200 ms
    np.testing.assert_array_equal(envelope(x, dt=dt, attack=0, release=0), x)


def test_release_sets_how_long_a_kick_lingers():
    y = kick_song()[: int(4.0 * SR)]
    fast = analyze((y, SR), fps=30, release=0.05)
    slow = analyze((y, SR), fps=30, release=0.6)
    t = fast.times
    after = (t > 2.25) & (t < 2.45)  # late in the first kick's tail
    assert slow.rms[after].mean() > fast.rms[after].mean() + 0.15


def test_n_frames_pads_with_silence_cuts_or_loops():
    y = click_track([0.13, 0.61], 1.0, SR)
    padded = analyze((y, SR), fps=25, n_frames=100)
    assert padded.n_frames == 100 and padded.duration == pytest.approx(1.0)
    assert padded.onset[40:].max() < 0.05 and padded.rms[50:].max() < 0.01
    looped = analyze((y, SR), fps=25, n_frames=100, loop=True)
    o = looped.onset
    peaks = np.flatnonzero((o > 0.5) & (o >= np.roll(o, 1)) & (o >= np.roll(o, -1)))
    expected = [round((t0 + rep) * 25) for rep in range(4) for t0 in (0.13, 0.61)]
    assert len(peaks) == len(expected) and np.all(np.abs(peaks - expected) <= 1), peaks
    cut = analyze((y, SR), fps=25, n_frames=10)
    assert cut.n_frames == 10 and len(cut.rms) == 10 and cut.duration == pytest.approx(1.0)
    assert np.all(cut.beat_frames < 10)


def test_stereo_tuple_at_other_rate_is_resampled():
    y = np.stack([tone(2.0, 44100), tone(2.0, 44100, freq=3000)])
    feats = analyze((y, 44100), fps=24)
    assert feats.sr == SR and feats.duration == pytest.approx(2.0) and feats.n_frames == 48
    assert feats.high[12:36].mean() > 0.5 and feats.mid[12:36].mean() > 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"fps": 24, "n_frames": 0}, "n_frames"),
        ({"fps": 24, "attack": -1}, "attack"),
        ({"fps": 24, "sr": 10}, "sample rate"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        analyze((tone(0.5, SR), SR), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# causal features (dreamvid live --audio-in): the offline features from the past alone, block by block


def _heard(y: np.ndarray, sr: int, fps: float, block: int) -> np.ndarray:
    """Feed ``y`` to a CausalAnalyzer ``block`` samples at a time: the frames' features, (n_frames, HEARD_NAMES)."""
    from dreamvid.audio import CausalAnalyzer

    an = CausalAnalyzer(sr=sr, fps=fps)
    rows = []
    for a in range(0, len(y), block):
        frames = an.push(y[a:a + block])
        assert [f.k for f in frames] == list(range(len(rows), len(rows) + len(frames)))  # in order, none missed
        rows += [f.values() for f in frames]
    return np.asarray(rows, np.float64)


@pytest.fixture(scope="module")
def groove44():
    from tests.conftest import EXAMPLES

    return load_song(EXAMPLES / "groove.wav", sr=44100)[0]


@pytest.mark.parametrize("sr, n_fft", [(22050, 1024), (44100, 2048), (48000, 2048)])
def test_mel_filters_are_librosas(sr, n_fft):
    import librosa

    from dreamvid.audio import mel_filters

    ours = mel_filters(sr=sr, n_fft=n_fft)
    theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=64, fmin=20.0, fmax=sr / 2)
    assert ours.shape == theirs.shape and np.allclose(ours, theirs, rtol=1e-5, atol=1e-8)


def test_causal_features_follow_the_offline_ones(groove44):
    """The song fed block by block (512 samples at 44.1 kHz, as a sound card gives them), played twice: once the
    analyzer has heard it (the second pass), every feature follows the offline one of the same frame one frame
    later (the offline features look half a frame and half a window ahead). Measured: r = 0.99 (rms, level, low,
    mid, high), 0.98 (energy), 0.92 (onset) at a lag of 1 frame; the bounds leave a margin."""
    from dreamvid.audio import HEARD_NAMES

    fps, sr = 25.0, 44100
    y = np.tile(groove44, 2)
    heard = _heard(y, sr, fps, 512)
    offline = analyze((y, sr), fps=fps)
    n = min(len(heard), offline.n_frames)
    half = n // 2  # the second pass

    def r(name: str, lag: int) -> float:
        c = heard[half + lag:n, HEARD_NAMES.index(name)]
        o = np.asarray(offline.level if name == "level" else offline.feature(name), np.float64)[half:n - lag]
        return float(np.corrcoef(c, o)[0, 1])

    bounds = {"rms": 0.95, "energy": 0.93, "level": 0.95, "onset": 0.85, "low": 0.95, "mid": 0.95, "high": 0.95}
    got = {name: r(name, 1) for name in bounds}
    assert all(got[name] >= bound for name, bound in bounds.items()), got
    assert r("level", 1) > r("level", 0) + 0.2 and r("level", 1) > r("level", 2), "the lag is one frame"
    assert heard[:, HEARD_NAMES.index("beat")].sum() >= 8  # strong onsets: the kicks and snares


def test_causal_features_never_look_ahead_and_ignore_how_the_signal_is_cut(groove44):
    """Changing the signal from sample s on changes no frame computed from the samples before s, and shows within
    a hop and a frame; and the frames are the same whatever the block sizes (512, 1000 or everything at once)."""
    from dreamvid.audio import CausalAnalyzer

    fps, sr = 30000 / 1001, 44100
    y = groove44[: 4 * sr]
    s = int(2.5 * sr)
    changed = y.copy()
    changed[s:] = 0.5 * np.random.default_rng(0).standard_normal(len(y) - s).astype(np.float32)
    a, b = _heard(y, sr, fps, 512), _heard(changed, sr, fps, 512)
    an = CausalAnalyzer(sr=sr, fps=fps)
    before = [k for k in range(len(a)) if an.frame_end(k) <= s]
    assert len(before) == 75 and np.array_equal(a[before], b[before])
    first = next(k for k in range(len(a)) if not np.array_equal(a[k], b[k]))
    assert s < an.frame_end(first) <= s + an.hop + sr / fps, (first, an.frame_end(first) - s)
    assert np.array_equal(a, _heard(y, sr, fps, 1000)) and np.array_equal(a, _heard(y, sr, fps, len(y)))


def test_causal_analyzer_checks_its_parameters():
    from dreamvid.audio import CausalAnalyzer

    with pytest.raises(ConfigError, match="memory"):
        CausalAnalyzer(sr=44100, fps=25, memory=0)
    with pytest.raises(ConfigError, match="fps"):
        CausalAnalyzer(sr=44100, fps=0)
    an = CausalAnalyzer(sr=48000, fps=25)
    assert (an.hop, an.n_fft) == (512, 2048)
    silent = an.push(np.zeros((48000, 2), np.float32))  # stereo blocks are averaged; silence is 0
    assert len(silent) == 26 and all(f.rms == f.energy == f.onset == f.level == 0 for f in silent)  # frames 0..25
