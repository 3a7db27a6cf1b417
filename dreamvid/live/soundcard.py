"""The sound card (``--audio-in``): PortAudio through ``sounddevice``, the only importer of it.

:func:`find_input` says in one line why there is no input to open (sounddevice or PortAudio missing, no capture
device, no such device), before any slow import. :class:`SoundCard` opens the input stream when made (a busy
device or a rate it refuses is one line too) and hands each block to ``feed`` from PortAudio's thread once
started; the analysis runs elsewhere (``heard.Listener``), so the callback only copies.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError
from ..native import quiet_stderr

__all__ = ["SoundCard", "find_input", "BLOCK"]

BLOCK = 512  # samples a block: 11.6 ms at 44.1 kHz, 10.7 ms at 48 kHz (the analysis' hop)
_FIX = ("install PortAudio (Debian, Ubuntu: apt-get install libportaudio2; Fedora: dnf install portaudio; macOS: "
        "brew install portaudio), or play a song file with --song")


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


def _sounddevice():
    """The ``sounddevice`` module, or one line saying what is missing (the package, or PortAudio under it)."""
    if importlib.util.find_spec("sounddevice") is None:
        raise InputError('--audio-in needs the live extra: pip install "dreamvid[live]" (sounddevice is not '
                         f"installed), and PortAudio: {_FIX}")
    try:
        with quiet_stderr():  # ALSA and JACK print their own lines while PortAudio looks for devices
            import sounddevice
    except OSError as e:  # "PortAudio library not found"
        raise InputError(f"--audio-in needs PortAudio, the sound card library, which is not installed here "
                         f"({_reason(e)}): {_FIX}") from None
    return sounddevice


def find_input(device: str) -> tuple[Any, dict[str, Any]]:
    """The ``sounddevice`` module and the input device ``device`` names: ``default`` (the system's default input), a
    device number, or a part of a device's name. One line (:class:`InputError`) when there is none."""
    sd = _sounddevice()
    try:
        with quiet_stderr():
            devices = [dict(d, index=i) for i, d in enumerate(sd.query_devices())]
    except Exception as e:  # PortAudio cannot initialise (no ALSA, ...)
        raise InputError(f"--audio-in: PortAudio cannot list the sound cards here ({_reason(e)}): connect one, or "
                         "play a song file with --song") from None
    inputs = [d for d in devices if d.get("max_input_channels", 0) > 0]
    if not inputs:
        raise InputError("--audio-in: PortAudio finds no sound card input here (no capture device): connect one (a "
                         "microphone, a line in, or a loopback from your player), or play a song file with --song")
    names = ", ".join(f"{d['index']} {d['name']!r}" for d in inputs)
    if device in ("", "default"):
        try:
            index = sd.default.device[0]
        except Exception:  # noqa: BLE001 - no default: take the first input
            index = -1
        chosen = next((d for d in inputs if d["index"] == index), inputs[0])
    elif device.isdigit():
        chosen = next((d for d in inputs if d["index"] == int(device)), None)
        if chosen is None:
            raise InputError(f"--audio-in {device}: no sound card input has that number; the inputs are: {names}")
    else:
        exact = [d for d in inputs if d["name"] == device]
        match = exact or [d for d in inputs if device.lower() in d["name"].lower()]
        if len(match) != 1:
            why = "names more than one" if match else "is not"
            raise InputError(f"--audio-in {device!r} {why} a sound card input; the inputs are: {names}")
        chosen = match[0]
    return sd, chosen


class SoundCard:
    """A sound card input, opened now (one line if it cannot be), started by :meth:`start`.

    Attributes
    ----------
    name : the device's name; sr : its default sample rate; channels : 1 or 2 (the device's, at most 2)
    overflows : blocks PortAudio flagged as lost (the callback came too late)
    """

    def __init__(self, device: str, *, block: int = BLOCK):
        sd, info = find_input(device)
        self.name = str(info["name"])
        self.sr = int(round(float(info.get("default_samplerate") or 48000)))
        self.channels = int(min(2, info["max_input_channels"]))
        self.overflows = 0
        self._feed: Callable[[np.ndarray], None] | None = None
        try:
            with quiet_stderr():
                self._stream = sd.InputStream(device=info["index"], samplerate=self.sr, channels=self.channels,
                                              blocksize=block, dtype="float32", latency="low", callback=self._callback)
        except Exception as e:  # busy, a rate it refuses, ...
            raise InputError(f"--audio-in: cannot open {self.name!r} ({self.channels} channels at {self.sr} Hz): "
                             f"{_reason(e)}; close what else uses it, or pick another input") from None

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread: copy and go
        if status:
            self.overflows += 1
        if self._feed is not None:
            self._feed(indata)

    def start(self, feed: Callable[[np.ndarray], None]) -> None:
        self._feed = feed
        self._stream.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.stop()
        with contextlib.suppress(Exception):
            self._stream.close()
        self._feed = None
