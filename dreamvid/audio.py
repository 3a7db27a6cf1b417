"""Analysis of a song into per-video-frame features: loudness, onsets, beats and three frequency bands.

This is the only module that imports librosa. The pipeline is::

    load_song ─► mono float32 at ``sr`` ─► STFT at a fine hop (≈11.6 ms at 22050 Hz), in blocks of ~30 s
        ├─ band energies (< 200 Hz, 200–2000 Hz, > 2000 Hz) and total energy, in dBFS
        └─ HPSS ─► percussive part ─► log-mel spectral flux (onset strength) ─► beat tracking
    ─► robust normalisation to [0, 1] (percentiles, not min/max)
    ─► pooled onto the exact video frame times ``k / fps`` (mean; max for onsets)
    ─► attack/release envelope follower at the frame rate

Video frame ``k`` stands for the song time ``k / fps`` and pools the analysis hops whose times lie in
``[(k - 0.5) / fps, (k + 0.5) / fps)``: a transient at time ``t`` lands on frame ``round(t * fps)`` whatever
the frame rate (23.976, 29.97, 60, …), with no drift however long the song is. Spectrograms live only for
one block at a time; what is kept are 1-D arrays, one value per hop or per frame.

:class:`CausalAnalyzer` computes the same features from a live signal (``dreamvid live --audio-in``), block by
block, knowing only the past (numpy alone, no librosa): its docstring says what differs.
"""

from __future__ import annotations

import math
import numbers
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError, ConfigError, suggest
from .fsutil import check_input

__all__ = ["FEATURE_NAMES", "AudioFeatures", "load_song", "analyze", "CausalAnalyzer", "HeardFrame", "HEARD_NAMES",
           "mel_filters"]

FEATURE_NAMES = ("rms", "energy", "onset", "beat", "low", "mid", "high")

#: Band edges in Hz: low < 200 <= mid < 2000 <= high.
BANDS = {"low": (20.0, 200.0), "mid": (200.0, 2000.0), "high": (2000.0, math.inf)}

# Containers that libsndfile cannot read: decode them with ffmpeg straight away.
_FFMPEG_SUFFIXES = {".m4a", ".m4b", ".aac", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".wma", ".avi", ".3gp"}
_SILENCE_DB = -80.0  # dBFS; anything quieter counts as silence
_MIN_RANGE_DB = 12.0  # a loudness feature spans at least this many dB between 0 and 1
_BLOCK_SECONDS = 30.0  # analysis block length (bounds the memory taken by spectrograms)
_HPSS_KERNEL = (31, 9)  # (time in hops, frequency in mel bands) of the HPSS median filters
_TEMPO_WINDOW = 8.0  # s, autocorrelation window of the tempo estimate (librosa's ac_size)


# ---------------------------------------------------------------------------------------------------------------
# loading


def load_song(path: str | os.PathLike, *, sr: int = 22050) -> tuple[np.ndarray, int]:
    """Load a song as mono float32 at ``sr`` Hz.

    WAV, FLAC, OGG and MP3 are read with soundfile; M4A/AAC, video containers and anything soundfile
    cannot read are decoded by the ffmpeg binary bundled with imageio-ffmpeg.

    Parameters
    ----------
    path : str or os.PathLike
        The song file.
    sr : int > 0
        Sample rate of the result in Hz; the file is resampled if it differs.

    Returns
    -------
    y : np.ndarray [shape=(n,), dtype=float32]
        Mono signal, nominally in [-1, 1], ``n > 0``.
    sr : int
        Its sample rate (the ``sr`` asked for).

    Raises
    ------
    AudioError
        The file is missing, empty, corrupt, has no audio track or holds no samples.
    ConfigError
        ``sr`` is not a sensible sample rate.
    """
    sr = _check_sr(sr)
    path = check_input(path, what="song", error=AudioError, give="an audio file (wav, flac, ogg, mp3, m4a)")

    y = None
    if path.suffix.lower() not in _FFMPEG_SUFFIXES:
        y = _read_soundfile(path, sr)
    if y is None:
        y = _read_ffmpeg(path, sr)
    if y.size == 0:
        raise AudioError(f"song {path} holds no audio samples (0 s long); give a song with sound in it")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"song {path} contains NaN or infinite samples; re-export it as 16-bit or 24-bit PCM")
    return y, sr


def _check_sr(sr: object) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not 1000 <= int(sr) <= 384000:
        raise ConfigError(f"sample rate must be an integer number of Hz between 1000 and 384000, got {sr!r}")
    return int(sr)


def _read_soundfile(path: Path, sr: int) -> np.ndarray | None:
    """Mono float32 at ``sr`` via libsndfile, or None if libsndfile cannot read the file."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        parts = [
            block.mean(axis=1, dtype=np.float32)
            for block in sf.blocks(str(path), blocksize=1 << 18, dtype="float32", always_2d=True)
        ]
    except (RuntimeError, sf.LibsndfileError, ValueError, EOFError):
        return None  # let ffmpeg try; it reports what is wrong
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if y.size and int(info.samplerate) != sr:
        y = _resample(y, int(info.samplerate), sr)
    return y


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import librosa

    return librosa.resample(y, orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq").astype(np.float32, copy=False)


def _read_ffmpeg(path: Path, sr: int) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sr`` with the bundled ffmpeg, over a pipe."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # ImportError, RuntimeError: no binary for this platform
        raise AudioError(
            f"cannot read song {path}: soundfile does not support it and ffmpeg is unavailable; "
            "convert it to WAV or FLAC, or `pip install imageio-ffmpeg`"
        ) from None
    cmd = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", f"file:{path}", "-map", "0:a:0",
           "-vn", "-ac", "1", "-rematrix_maxval", "1.0", "-ar", str(sr), "-f", "f32le", "-acodec", "pcm_f32le",
           "pipe:1"]  # fmt: skip
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        if "matches no streams" in err:
            raise AudioError(
                f"{path} has no audio track; give a song file (wav, flac, ogg, mp3, m4a) or a video with sound"
            )
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        why = lines[-1] if lines else f"ffmpeg exit status {proc.returncode}"
        why = why.replace(f"file:{path}", "").replace(str(path), "").strip(" :")
        raise AudioError(
            f"cannot decode song {path}: {why}; check that it is a playable audio file (wav, flac, ogg, mp3, m4a)"
        )
    # rematrix_maxval=1 makes ffmpeg's downmix a weighted mean (stereo: (L + R) / 2, as the soundfile path),
    # instead of a sum louder by sqrt(2).
    n = len(proc.stdout) // 4
    return np.frombuffer(proc.stdout[: 4 * n], dtype="<f4").astype(np.float32)


def _as_mono(song: tuple, sr: int) -> tuple[np.ndarray, int]:
    """Validate a ``(y, sr)`` pair; return mono float32 resampled to ``sr``."""
    if len(song) != 2:
        raise ConfigError("song must be a path or a (y, sr) pair")
    y, sr_in = song
    sr_in = _check_sr(sr_in)
    y = np.asarray(y)
    if y.ndim == 2:  # librosa convention: (channels, n)
        y = y.mean(axis=0)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.number):
        raise AudioError(f"song samples must be a 1-D (or channels × samples) numeric array, got shape {y.shape}")
    if y.size == 0:
        raise AudioError("song holds no audio samples (0 s long); give a song with sound in it")
    y = y.astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise AudioError("song contains NaN or infinite samples; clean the signal before analysing it")
    if sr_in != sr:
        y = _resample(y, sr_in, sr)
    return y, sr


# ---------------------------------------------------------------------------------------------------------------
# features


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """Per-video-frame features of a song. All arrays are read-only, of length ``n_frames``.

    Attributes
    ----------
    fps : float
        Video frame rate; frame ``k`` stands for song time ``k / fps`` seconds.
    n_frames : int
        Number of video frames.
    duration : float
        Length of the song in seconds (before it was cut, padded or looped to ``n_frames``).
    sr : int
        Sample rate the song was analysed at.
    tempo : float
        Global tempo estimate in beats per minute (0 when no beat was found).
    rms : np.ndarray [shape=(n_frames,), dtype=float32, range [0, 1]]
        Loudness: frame energy in dB, normalised between the 5th and 95th percentiles of the song's
        non-silent hops (at least 12 dB apart; -80 dBFS and below is 0), smoothed.
    energy : np.ndarray [shape=(n_frames,), dtype=float32, range [0, 1]]
        Loudness as linear RMS amplitude (not dB) over its 95th percentile in the song, smoothed like ``rms``:
        it rises and falls in proportion to the signal, where ``rms`` compresses loud passages.
    level : np.ndarray [shape=(n_frames,), dtype=float32, >= 0]
        The song's RMS amplitude over each frame's samples, unsmoothed and unnormalised (0..1 full scale): the
        reference that ``audio_sync`` correlates the dream with. Not a feature to map.
    onset : np.ndarray [shape=(n_frames,), dtype=float32, range [0, 1]]
        Onset strength (log-mel spectral flux) of the percussive part, normalised between its median and
        99th percentile, max-pooled over each frame so a transient is never missed (it peaks on frame
        ``round(t * fps)``), smoothed.
    low, mid, high : np.ndarray [shape=(n_frames,), dtype=float32, range [0, 1]]
        Band energies below 200 Hz, 200–2000 Hz and above 2000 Hz, normalised and smoothed like ``rms``.
    beat : np.ndarray [shape=(n_frames,), dtype=float32, values {0, 1}]
        1.0 on frames that hold a tracked beat.
    beat_frames : np.ndarray [shape=(n_beats,), dtype=int64]
        Sorted indices of those frames: ``round(t_beat * fps)``.
    """

    fps: float
    n_frames: int
    duration: float
    sr: int
    tempo: float
    rms: np.ndarray
    energy: np.ndarray
    level: np.ndarray
    onset: np.ndarray
    low: np.ndarray
    mid: np.ndarray
    high: np.ndarray
    beat: np.ndarray
    beat_frames: np.ndarray

    @property
    def times(self) -> np.ndarray:
        """Time of each frame in seconds, ``arange(n_frames) / fps`` [shape=(n_frames,), dtype=float64]."""
        return np.arange(self.n_frames) / self.fps

    def feature(self, name: str) -> np.ndarray:
        """Return the per-frame array called ``name`` (one of :data:`FEATURE_NAMES`).

        Raises
        ------
        ConfigError
            ``name`` is not a feature.
        """
        if name not in FEATURE_NAMES:
            raise ConfigError(
                f"unknown audio feature '{name}'{suggest(name, FEATURE_NAMES)}; choose from {', '.join(FEATURE_NAMES)}"
            )
        return getattr(self, name)

    def __repr__(self) -> str:
        return (
            f"AudioFeatures(n_frames={self.n_frames}, fps={self.fps:g}, duration={self.duration:.2f}s, "
            f"sr={self.sr}, tempo={self.tempo:.1f}, beats={len(self.beat_frames)})"
        )


def analyze(
    song: str | os.PathLike | tuple[np.ndarray, int],
    *,
    fps: float,
    n_frames: int | None = None,
    sr: int = 22050,
    attack: float = 0.01,
    release: float = 0.25,
    loop: bool = False,
    hop_length: int | None = None,
) -> AudioFeatures:
    """Analyse a song into features sampled at the video frame times ``k / fps``.

    Parameters
    ----------
    song : str, os.PathLike or (np.ndarray, int)
        A song file (see :func:`load_song`) or a ``(y, sr)`` pair; ``y`` of shape (n,) or (channels, n).
    fps : float > 0
        Video frame rate, e.g. ``30000 / 1001``.
    n_frames : int >= 1, optional
        Number of video frames. Defaults to ``ceil(duration * fps)``. A shorter song is padded with silence
        (or repeated when ``loop``); a longer one is cut.
    sr : int
        Analysis sample rate in Hz.
    attack, release : float >= 0
        Rise and fall times (seconds) of the envelope follower applied to every continuous feature: the
        envelope jumps up within ``attack`` and decays with time constant ``release``.
    loop : bool
        Repeat the song to fill ``n_frames`` instead of padding with silence.
    hop_length : int, optional
        Analysis hop in samples. Defaults to the power of two nearest ``sr / 86`` (256 at 22050 Hz).

    Returns
    -------
    AudioFeatures

    Raises
    ------
    AudioError
        The song cannot be read or holds no samples.
    ConfigError
        A parameter is out of range.
    """
    fps = _check_positive("fps", fps, upper=1000.0)
    attack = _check_nonneg("attack", attack, upper=10.0)
    release = _check_nonneg("release", release, upper=60.0)
    sr = _check_sr(sr)
    if isinstance(song, tuple):
        y, sr = _as_mono(song, sr)
    else:
        y, sr = load_song(song, sr=sr)
    duration = len(y) / sr
    if n_frames is None:
        n_frames = max(1, math.ceil(duration * fps - 1e-6))
    elif isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise ConfigError(f"n_frames must be a whole number >= 1, got {n_frames!r}")
    n_frames = int(n_frames)
    if hop_length is None:
        hop_length = 1 << max(4, round(math.log2(sr / 86.0)))
    elif isinstance(hop_length, bool) or not isinstance(hop_length, (int, np.integer)) or not 16 <= hop_length <= sr:
        raise ConfigError(f"hop_length must be a whole number of samples between 16 and sr, got {hop_length!r}")
    hop = int(hop_length)
    n_fft = 4 * hop

    # The signal covers the video up to half a frame past its last frame time, plus one hop.
    need = int(math.ceil((n_frames + 0.5) / fps * sr)) + hop
    if len(y) >= need:
        y = y[:need]
        song_end = need / sr
    elif loop:
        y = np.tile(y, -(-need // len(y)))[:need]
        song_end = need / sr
    else:
        song_end = len(y) / sr
        y = np.concatenate([y, np.zeros(need - len(y), np.float32)])

    raw = _hop_features(y, sr=sr, n_fft=n_fft, hop=hop)
    del y
    hop_rate = sr / hop
    n_song = max(1, min(len(raw["rms"]), int(math.ceil(song_end * hop_rate))))  # hops inside the song

    tempo, beat_times = _track_beats(raw["onset"], sr=sr, hop=hop)
    beat_frames = np.unique(np.round(beat_times * fps).astype(np.int64))
    beat_frames = beat_frames[(beat_frames >= 0) & (beat_frames < n_frames)]
    beat = np.zeros(n_frames, np.float32)
    beat[beat_frames] = 1.0

    # normalise at the hop rate, pool onto frames (max for onsets: a transient stays on its frame), then
    # smooth at the frame rate so the envelope's rise cannot push a peak into the next frame
    out: dict[str, np.ndarray] = {}
    for name in ("rms", "low", "mid", "high", "onset"):
        x = raw[name]
        norm = _normalise_onset(x, x[:n_song]) if name == "onset" else _normalise_db(x, x[:n_song])
        how = "max" if name == "onset" else "mean"
        pooled = pool_to_frames(norm, hop_rate=hop_rate, fps=fps, n_frames=n_frames, how=how)
        out[name] = _readonly(envelope(pooled, dt=1.0 / fps, attack=attack, release=release))
    # linear amplitude: sqrt of the mean power over each frame's hops
    power = 10.0 ** (raw["rms"].astype(np.float64) / 10.0)
    level = np.sqrt(pool_to_frames(power, hop_rate=hop_rate, fps=fps, n_frames=n_frames, how="mean"))
    ref = np.percentile(np.sqrt(power[:n_song]), 95)
    energy = np.clip(level / ref, 0.0, 1.0) if ref > 1e-6 else np.zeros_like(level)
    out["energy"] = _readonly(envelope(energy, dt=1.0 / fps, attack=attack, release=release))
    out["level"] = _readonly(level.astype(np.float32))

    return AudioFeatures(
        fps=float(fps),
        n_frames=n_frames,
        duration=float(duration),
        sr=sr,
        tempo=float(tempo),
        rms=out["rms"],
        energy=out["energy"],
        level=out["level"],
        onset=out["onset"],
        low=out["low"],
        mid=out["mid"],
        high=out["high"],
        beat=_readonly(beat),
        beat_frames=_readonly(beat_frames),
    )


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _check_positive(name: str, value: object, *, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0 < v <= upper):
        raise ConfigError(f"{name} must be above 0 and at most {upper:g}, got {value!r}")
    return v


def _check_nonneg(name: str, value: object, *, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0 <= v <= upper):
        raise ConfigError(f"{name} must be between 0 and {upper:g} seconds, got {value!r}")
    return v


def _hop_features(y: np.ndarray, *, sr: int, n_fft: int, hop: int) -> dict[str, np.ndarray]:
    """Raw features at the hop rate: hop ``j`` is centred on sample ``j * hop``.

    Returns float32 arrays of length ``1 + len(y) // hop``: ``rms``, ``low``, ``mid``, ``high`` in dBFS
    (floored at -80) and ``onset`` (non-negative percussive log-mel flux, shifted so that a transient at
    time t peaks at hop ``round(t * sr / hop)``). Works in blocks of ~30 s with enough context on both
    sides that the result does not depend on the block boundaries.
    """
    import librosa

    n_hops = 1 + len(y) // hop
    pad = n_fft // 2
    yp = np.pad(y, (pad, pad + n_fft))
    window = librosa.filters.get_window("hann", n_fft, fftbins=True).astype(np.float32)
    # mean square of the signal ≈ 2 * sum(one-sided |X|²) / (n_fft * sum(w²))
    scale = 2.0 / (n_fft * float(np.sum(window.astype(np.float64) ** 2)))
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    band_bins = {name: (freqs >= lo) & (freqs < hi) for name, (lo, hi) in BANDS.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "empty filters" at very low sample rates
        mel = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=64, fmin=20.0, fmax=sr / 2).astype(np.float32)
    floor_db = _SILENCE_DB

    block = max(1, int(round(_BLOCK_SECONDS * sr / hop)))
    ctx = _HPSS_KERNEL[0] // 2 + 2
    feats = {name: np.empty(n_hops, np.float32) for name in ("rms", "low", "mid", "high", "flux")}
    for a in range(0, n_hops, block):
        b = min(a + block, n_hops)
        a0, b0 = max(0, a - ctx), min(n_hops, b + ctx)
        seg = yp[a0 * hop : (b0 - 1) * hop + n_fft]
        power = np.abs(librosa.stft(seg, n_fft=n_fft, hop_length=hop, window=window, center=False)) ** 2
        power *= scale
        sl = slice(a - a0, a - a0 + (b - a))
        feats["rms"][a:b] = _db(power[:, sl].sum(axis=0), floor_db)
        for name, bins in band_bins.items():
            feats[name][a:b] = _db(power[bins][:, sl].sum(axis=0), floor_db)
        # HPSS on the mel spectrogram: 8x cheaper than on linear bins, and the flux is taken over mels anyway
        mel_mag = np.sqrt(mel @ power)
        del power
        _, perc = librosa.decompose.hpss(mel_mag, kernel_size=_HPSS_KERNEL)
        mel_db = _db(perc**2, floor_db)
        flux = np.maximum(0.0, np.diff(mel_db, axis=1)).mean(axis=0)  # flux[i] belongs to frame i + 1
        flux = np.concatenate([[0.0], flux]).astype(np.float32)
        feats["flux"][a:b] = flux[sl]
    # A frame centred at t sees a transient half a window early; the largest log jump comes one hop after
    # it enters the (Hann) window. Shift by half a window less one hop, so a transient at t peaks at hop t.
    shift = min(max(n_fft // (2 * hop) - 1, 0), n_hops)
    onset = np.zeros(n_hops, np.float32)
    onset[shift:] = feats.pop("flux")[: n_hops - shift]
    feats["onset"] = onset
    return feats


def _db(power: np.ndarray, floor_db: float) -> np.ndarray:
    return (10.0 * np.log10(np.maximum(power, 10.0 ** (floor_db / 10.0)))).astype(np.float32)


def _track_beats(onset: np.ndarray, *, sr: int, hop: int) -> tuple[float, np.ndarray]:
    """Tempo (BPM) and beat times (s) from a hop-rate onset envelope.

    The tempogram is averaged block by block: librosa's one-shot tempogram of a 5-minute song at a
    256-sample hop takes ~900 MB.
    """
    import librosa

    if not np.any(onset > 0):
        return 0.0, np.zeros(0)
    win = max(8, int(round(_TEMPO_WINDOW * sr / hop)))
    block = max(4 * win, int(round(_BLOCK_SECONDS * sr / hop)))
    total = np.zeros(win, np.float64)
    count = 0
    for a in range(0, len(onset), block):
        part = onset[a : a + block]
        if len(part) < win // 2 and count:
            break  # a short tail would only add edge effects
        tg = librosa.feature.tempogram(onset_envelope=part, sr=sr, hop_length=hop, win_length=win)
        total += tg.sum(axis=1)
        count += tg.shape[1]
    tempo = float(librosa.feature.tempo(tg=(total / count)[:, None], sr=sr, hop_length=hop, aggregate=None)[0])
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sr, hop_length=hop, bpm=tempo, units="time", trim=True)
    return tempo, np.asarray(beats, dtype=np.float64)


def _normalise_db(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Map dB values to [0, 1] between the 5th and 95th percentile of the non-silent values of ``ref``.

    The range spans at least 12 dB (so a steady loud sound stays near 1 instead of flickering), and
    anything at the -80 dBFS silence floor is always 0.
    """
    ref = ref[ref > _SILENCE_DB + 1.0]  # digital silence (intros, gaps) would drag the 5th percentile down
    if ref.size == 0:
        return np.zeros_like(x, dtype=np.float32)
    lo, hi = np.percentile(ref, [5, 95])
    lo = max(min(lo, hi - _MIN_RANGE_DB), _SILENCE_DB)
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _normalise_onset(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Map onset strength to [0, 1] between its median and 99th percentile in ``ref``.

    Onsets are sparse, so the top is at least a tenth of the strongest onset: in a sparse click track
    every click still reaches 1 while the background stays at 0.
    """
    lo, hi = np.percentile(ref, [50, 99])
    hi = max(hi, 0.1 * float(np.max(ref)))
    if hi <= lo or hi <= 1e-6:
        return np.zeros_like(x, dtype=np.float32)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def envelope(x: np.ndarray, *, dt: float, attack: float, release: float) -> np.ndarray:
    """One-pole envelope follower with separate attack and release.

    Parameters
    ----------
    x : np.ndarray [shape=(n,)]
        Input, sampled every ``dt`` seconds.
    dt : float > 0
        Sample spacing in seconds.
    attack, release : float >= 0
        Time constants in seconds for rising and falling input (0: follow instantly).

    Returns
    -------
    np.ndarray [shape=(n,), dtype=float32]
        ``e[i] = x[i] + a * (e[i-1] - x[i])`` with ``a = exp(-dt / attack)`` while ``x`` rises above the
        envelope and ``exp(-dt / release)`` otherwise; ``e[-1] = 0``.
    """
    a_up = math.exp(-dt / attack) if attack > 0 else 0.0
    a_dn = math.exp(-dt / release) if release > 0 else 0.0
    out = np.empty(len(x), np.float32)
    e = 0.0
    for i, v in enumerate(np.asarray(x, dtype=np.float64).tolist()):
        a = a_up if v > e else a_dn
        e = v + a * (e - v)
        out[i] = e
    return out


def pool_to_frames(x: np.ndarray, *, hop_rate: float, fps: float, n_frames: int, how: str = "mean") -> np.ndarray:
    """Aggregate a hop-rate series onto video frames without drift.

    Sample ``j`` of ``x`` is at time ``j / hop_rate``. Frame ``k`` takes the samples whose times lie in
    ``[(k - 0.5) / fps, (k + 0.5) / fps)`` and reduces them with ``how`` (``"mean"`` or ``"max"``); a frame
    whose window holds no sample (hops longer than frames) takes the next sample.

    Returns
    -------
    np.ndarray [shape=(n_frames,), dtype=float32]
    """
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    k = np.arange(n_frames + 1, dtype=np.float64)
    edges = np.ceil((k - 0.5) * (hop_rate / fps) - 1e-9).astype(np.int64)
    edges = np.clip(edges, 0, n)
    starts = np.minimum(edges[:-1], n - 1)
    end = max(int(edges[-1]), int(starts[-1]) + 1)
    x = x[:end]
    if how == "max":
        return np.maximum.reduceat(x, starts).astype(np.float32)
    if how == "mean":
        counts = np.diff(np.append(starts, end))
        counts[counts <= 0] = 1  # an empty window took one sample
        return (np.add.reduceat(x.astype(np.float64), starts) / counts).astype(np.float32)
    raise ValueError(f"how must be 'mean' or 'max', got {how!r}")


# ---------------------------------------------------------------------------------------------------------------
# causal features: the same features from a live signal, block by block (``dreamvid live --audio-in``)

#: What :class:`CausalAnalyzer` gives per video frame (:class:`HeardFrame`): the features and ``level``.
HEARD_NAMES = ("rms", "energy", "level", "onset", "beat", "low", "mid", "high")

_HPSS_CAUSAL = _HPSS_KERNEL[0]  # hops of the causal harmonic median (the offline one is centred on its hop)
_BEAT_ONSET = 0.5  # a causal beat: the frame's normalised onset reaches this, rising ...
_BEAT_GAP = 0.3  # ... at least this many seconds after the last one (at most 200 a minute)


def mel_filters(*, sr: int, n_fft: int, n_mels: int = 64, fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style mel filterbank, equal to ``librosa.filters.mel`` with its defaults, in numpy alone.

    :class:`CausalAnalyzer` uses it so a live run does not import librosa; the offline analysis keeps librosa's.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float32]
    """
    fmax = float(sr) / 2 if fmax is None else float(fmax)

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    fft_freqs = np.linspace(0, float(sr) / 2, int(1 + n_fft // 2), endpoint=True)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


@dataclass(frozen=True)
class HeardFrame:
    """One video frame's features from the audio heard up to its time (:class:`CausalAnalyzer`).

    Attributes
    ----------
    k : int, the video frame (song time ``k / fps``)
    rms, energy, onset, low, mid, high : float in [0, 1], as :class:`AudioFeatures`' (smoothed, normalised)
    level : float >= 0, the RMS amplitude of the frame's hops (unsmoothed, unnormalised)
    beat : float, 1.0 on a causal beat: a strong rising onset (see :class:`CausalAnalyzer`), else 0.0
    """

    k: int
    rms: float
    energy: float
    level: float
    onset: float
    beat: float
    low: float
    mid: float
    high: float

    def values(self) -> tuple[float, ...]:
        """The features in :data:`HEARD_NAMES` order."""
        return tuple(getattr(self, name) for name in HEARD_NAMES)


class _Running:
    """Percentiles and the peak of a stream of values, the older ones forgotten with time constant ``memory`` (in
    values; ``inf``: never): a histogram on fixed ``edges`` whose new entries weigh more and more (``1 / decay``
    each), rescaled now and then."""

    def __init__(self, edges: np.ndarray, memory: float):
        self.edges = np.asarray(edges, np.float64)
        self.counts = np.zeros(len(self.edges) - 1, np.float64)
        self.grow = math.exp(1.0 / memory) if math.isfinite(memory) else 1.0
        self.weight = 1.0
        self.peak = 0.0

    def add(self, x: float) -> None:
        i = int(np.searchsorted(self.edges, x, side="right")) - 1
        self.counts[min(max(i, 0), len(self.counts) - 1)] += self.weight
        self.peak = max(float(x), self.peak / self.grow)
        self.weight *= self.grow
        if self.weight > 1e100:
            self.counts /= self.weight
            self.weight = 1.0

    def percentiles(self, qs, *, above: float | None = None) -> np.ndarray | None:
        """The ``qs`` percentiles (0..100) of the values (only those above ``above``), or None without any."""
        start = 0 if above is None else int(np.searchsorted(self.edges, above, side="right"))
        counts = self.counts[start:]
        cum = np.cumsum(counts)
        if cum.size == 0 or cum[-1] <= 0:
            return None
        out = []
        for q in qs:
            target = q / 100.0 * cum[-1]
            i = min(int(np.searchsorted(cum, target, side="left")), len(cum) - 1)
            before = cum[i - 1] if i else 0.0
            frac = (target - before) / counts[i] if counts[i] > 0 else 0.0
            lo, hi = self.edges[start + i], self.edges[start + i + 1]
            out.append(lo + min(max(frac, 0.0), 1.0) * (hi - lo))
        return np.asarray(out)


class CausalAnalyzer:
    """The offline features (:func:`analyze`), computed from a live signal block by block, knowing only the past.

    Feed it the sound card's blocks (any sizes; the result does not depend on how the signal is cut); it returns
    each video frame as soon as the signal reaches the frame's time: frame ``k`` (time ``k / fps``) comes out of
    the call whose block holds sample ``ceil(k * sr / fps) - 1``, computed from the samples before that. No
    librosa: numpy alone, a few hundred microseconds per block.

    What is the same as :func:`analyze`: the hop (the power of two nearest ``sr / 86``: 512 at 44.1 and 48 kHz)
    and window (4 hops, Hann), the scaling to dBFS, the bands, the total and linear levels, the mel spectrogram
    (64 bands from 20 Hz), the percussive part's log-mel spectral flux for onsets, the pooling (mean; max for
    onsets) and the attack/release envelope at the frame rate. What differs, because the future is unknown:

    * **the windows end now**: a hop's window is the last 4 hops of samples, so frame ``k`` pools the hops whose
      windows end in ``((k - 1) / fps, k / fps]`` where the offline frame pools the hops centred within half a
      frame of ``k / fps`` (a hop's values are the offline ones, known half a window later);
    * **the harmonic part** for onsets is the median of the last 31 hops, not of the 31 centred on the hop;
    * **normalisation by the signal so far**: the same percentiles as the offline analysis (5th and 95th of the
      non-silent hops' dB for ``rms`` and the bands, at least 12 dB apart; the 95th of the amplitude for
      ``energy``; the median and 99th of the onset strength, at least a tenth of its peak for ``onset``), taken
      over the hops heard so far, the older ones forgotten with time constant ``memory`` seconds (``inf``: the
      whole signal so far, which is the offline normalisation once the song has played). Before any sound,
      every feature is 0; the first loud sound is 1 until more is heard;
    * **beat**: 1.0 on a frame whose pooled normalised onset reaches 0.5 and rises, at least 0.3 s after the last
      such frame: strong onsets, not the offline beat tracker's regular grid (there is no tempo).

    Parameters
    ----------
    sr : int, the signal's sample rate
    fps : float > 0, the video frame rate
    attack, release : float >= 0, the envelope's rise and fall times in seconds (the ``[audio]`` table's)
    memory : float > 0, seconds over which the normalisation forgets (``inf``: never); the default, two minutes
        (about a song), follows a set's changes of level and still matches the offline features closely
        (docs/live.md has the measures)
    """

    def __init__(self, *, sr: int, fps: float, attack: float = 0.01, release: float = 0.25, memory: float = 120.0):
        self.sr = _check_sr(sr)
        self.fps = _check_positive("fps", fps, upper=1000.0)
        attack = _check_nonneg("attack", attack, upper=10.0)
        release = _check_nonneg("release", release, upper=60.0)
        if not (isinstance(memory, (int, float)) and not isinstance(memory, bool) and memory > 0):
            raise ConfigError(f"memory must be a number of seconds above 0 (inf: never forget), got {memory!r}")
        self.hop = 1 << max(4, round(math.log2(self.sr / 86.0)))
        self.n_fft = 4 * self.hop
        hop_rate = self.sr / self.hop
        n = self.n_fft
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic Hann
        self._scale = 2.0 / (n * float(np.sum(self._window.astype(np.float64) ** 2)))
        freqs = np.linspace(0, self.sr / 2, 1 + n // 2)
        # one product gives the total power and the bands': rows all, low, mid, high
        self._sums = np.stack([np.ones_like(freqs)] + [((freqs >= lo) & (freqs < hi)).astype(np.float64)
                                                       for lo, hi in BANDS.values()])
        self._mel = mel_filters(sr=self.sr, n_fft=n).astype(np.float64)
        n_mels = self._mel.shape[0]
        self._harm = np.zeros((_HPSS_CAUSAL, n_mels), np.float64)  # the last hops' mel magnitudes (a ring)
        half = _HPSS_KERNEL[1] // 2  # the percussive median across mel bands, edges mirrored (scipy's "reflect")
        mirror = np.concatenate([np.arange(half)[::-1], np.arange(n_mels), n_mels - 1 - np.arange(half)])
        self._across = mirror[np.arange(n_mels)[:, None] + np.arange(_HPSS_KERNEL[1])[None, :]]
        self._prev_db = np.full(n_mels, _SILENCE_DB, np.float64)
        self._hops = 0  # hops analysed
        self._buf = np.zeros(n, np.float32)  # samples from self._buf_at on (zeros before the signal)
        self._buf_at = -n
        self._heard = 0  # samples received
        self._k = 0  # the next frame
        remember = memory * hop_rate
        db_edges = np.linspace(_SILENCE_DB, 0.0, 321)
        db_edges[-1] = np.inf
        self._db = {name: _Running(db_edges, remember) for name in ("rms", "low", "mid", "high")}
        self._onset = _Running(np.concatenate([[0.0], np.geomspace(1e-3, 200.0, 300), [np.inf]]), remember)
        self._pending: list[tuple[float, ...]] = []  # this frame's hops: (rms, low, mid, high dB, power, flux)
        self._last: tuple[float, ...] | None = None
        dt = 1.0 / self.fps
        self._a_up = math.exp(-dt / attack) if attack > 0 else 0.0
        self._a_dn = math.exp(-dt / release) if release > 0 else 0.0
        self._env = dict.fromkeys(("rms", "energy", "onset", "low", "mid", "high"), 0.0)
        self._onset_before = 0.0
        self._beat_at = -math.inf

    @property
    def heard(self) -> int:
        """Samples received so far."""
        return self._heard

    def frame_end(self, k: int) -> int:
        """The number of samples frame ``k`` is computed from: ``ceil(k * sr / fps)``."""
        return int(math.ceil(k * self.sr / self.fps - 1e-9))

    def push(self, block: np.ndarray) -> list[HeardFrame]:
        """Take the next samples (shape ``(n,)`` or ``(n, channels)``, float in [-1, 1]; channels are averaged) and
        return the frames they complete, in order (possibly none)."""
        x = np.asarray(block, np.float32)
        if x.ndim == 2:
            x = x.mean(axis=1, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"a block is (n,) or (n, channels) samples, got shape {x.shape}")
        self._buf = np.concatenate([self._buf, x])
        self._heard += len(x)
        out = []
        while True:
            hop_end = (self._hops + 1) * self.hop
            frame_end = self.frame_end(self._k)
            if hop_end <= frame_end and hop_end <= self._heard:
                a = hop_end - self.n_fft - self._buf_at
                self._hop(self._buf[a:a + self.n_fft])
            elif frame_end < hop_end and frame_end <= self._heard:
                out.append(self._frame())
            else:
                break
        keep = (self._hops + 1) * self.hop - self.n_fft  # the next window's first sample
        if keep > self._buf_at:
            self._buf = self._buf[keep - self._buf_at:]
            self._buf_at = keep
        return out

    def _hop(self, seg: np.ndarray) -> None:
        """Analyse one window (the ``n_fft`` samples ending at the hop): the offline analysis' values for it."""
        spec = np.fft.rfft(seg * self._window)
        power = spec.real * spec.real + spec.imag * spec.imag
        power *= self._scale
        sums = self._sums @ power  # total, low, mid, high
        dbs = 10.0 * np.log10(np.maximum(sums, 10.0 ** (_SILENCE_DB / 10.0)))
        mag = np.sqrt(self._mel @ power)
        self._harm[self._hops % _HPSS_CAUSAL] = mag
        harm = np.partition(self._harm, _HPSS_CAUSAL // 2, axis=0)[_HPSS_CAUSAL // 2]  # median of the last hops
        perc = np.partition(mag[self._across], _HPSS_KERNEL[1] // 2, axis=1)[:, _HPSS_KERNEL[1] // 2]
        p2, h2 = perc * perc, harm * harm  # librosa's soft mask (power 2), 0.5 where both are 0
        both = p2 + h2
        good = np.maximum(perc, harm) >= np.finfo(np.float32).tiny
        mask = np.where(good, p2 / np.where(good, both, 1.0), 0.5)
        part = mag * mask
        mel_db = 10.0 * np.log10(np.maximum(part * part, 10.0 ** (_SILENCE_DB / 10.0)))
        flux = float(np.maximum(0.0, mel_db - self._prev_db).mean())
        self._prev_db = mel_db
        self._hops += 1
        for name, v in zip(("rms", "low", "mid", "high"), dbs.tolist()):
            self._db[name].add(v)
        self._onset.add(flux)
        self._pending.append((*dbs.tolist(), float(sums[0]), flux))

    def _frame(self) -> HeardFrame:
        """Frame ``self._k``: its hops normalised by the signal so far, pooled, smoothed."""
        hops = self._pending or ([self._last] if self._last is not None else [])
        self._pending = []
        if hops:
            self._last = hops[-1]
        vals: dict[str, float] = {}
        arr = np.asarray(hops, np.float64).reshape(-1, 6)
        for i, name in enumerate(("rms", "low", "mid", "high")):
            pct = self._db[name].percentiles((5, 95), above=_SILENCE_DB + 1.0)
            if pct is None or not hops:
                vals[name] = 0.0
                continue
            lo, hi = float(pct[0]), float(pct[1])
            lo = max(min(lo, hi - _MIN_RANGE_DB), _SILENCE_DB)
            vals[name] = float(np.clip((arr[:, i] - lo) / (hi - lo), 0.0, 1.0).mean()) if hi > lo else 0.0
        level = float(np.sqrt(arr[:, 4].mean())) if hops else 0.0
        ref_db = self._db["rms"].percentiles((95,))
        ref = 10.0 ** (float(ref_db[0]) / 20.0) if ref_db is not None else 0.0
        vals["energy"] = min(max(level / ref, 0.0), 1.0) if ref > 1e-6 and ref_db[0] > _SILENCE_DB + 0.25 else 0.0
        onset = 0.0
        pct = self._onset.percentiles((50, 99))
        if pct is not None and hops:
            lo, hi = float(pct[0]), max(float(pct[1]), 0.1 * self._onset.peak)
            if hi > lo and hi > 1e-6:
                onset = float(np.clip((arr[:, 5].max() - lo) / (hi - lo), 0.0, 1.0))
        vals["onset"] = onset
        t = self._k / self.fps
        beat = 0.0
        if onset >= _BEAT_ONSET and onset > self._onset_before and t - self._beat_at >= _BEAT_GAP - 1e-9:
            beat, self._beat_at = 1.0, t
        self._onset_before = onset
        for name, v in vals.items():
            e = self._env[name]
            a = self._a_up if v > e else self._a_dn
            self._env[name] = v + a * (e - v)
        env = self._env
        frame = HeardFrame(k=self._k, rms=env["rms"], energy=env["energy"], level=level, onset=env["onset"],
                           beat=beat, low=env["low"], mid=env["mid"], high=env["high"])
        self._k += 1
        return frame
