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

__all__ = ["FEATURE_NAMES", "AudioFeatures", "load_song", "analyze"]

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
    path = Path(path)
    if not path.exists():
        raise AudioError(f"song not found: {path}; check the path")
    if path.is_dir():
        raise AudioError(f"song path {path} is a folder; give an audio file (wav, flac, ogg, mp3, m4a)")
    if path.stat().st_size == 0:
        raise AudioError(f"song {path} is empty (0 bytes); give an audio file with sound in it")

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
