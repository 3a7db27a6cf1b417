"""Remote control of a live run: OSC (``python-osc``) and MIDI (``mido`` with python-rtmidi).

The only importers of those packages. Both turn messages into :class:`Performance` moves:

* OSC ``/dreamvid/<section>/<key> value`` moves that key (its units, clipped to its range; a layer's weight is
  ``/dreamvid/dream/layers/<layer>``), ``/dreamvid/control/<name> x`` moves a ``[live]`` control by its position
  ``x`` in 0..1 across its range, ``/dreamvid/pulse`` fires the pulse;
* MIDI: a control change on a control's ``cc`` (and ``channel``, if given) moves it across its range (0..127), the
  pulse's ``cc`` fires it on a value of 64 or more, its ``note`` on a note-on.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, InputError
from ..native import quiet_stderr

__all__ = ["Remote", "check_osc", "open_midi", "midi_ports", "need"]

PREFIX = "/dreamvid/"


def need(module: str, what: str) -> None:
    """One line if ``module`` (an optional package) is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the live extra: pip install \"dreamvid[live]\" ({module} is not installed)")


class Remote:
    """Routes OSC addresses, MIDI messages and the page's sliders to a performance's moves.

    Parameters
    ----------
    perf : Performance
    on_move : called with ``(key, value)`` after each committed move (for the page and the CLI)
    on_warning : one line
    """

    def __init__(self, perf, *, on_move: Callable[[str, float], None] | None = None,
                 on_warning: Callable[[str], None] | None = None):
        self.perf = perf
        self.on_move = on_move or (lambda key, value: None)
        self.on_warning = on_warning or (lambda line: None)
        self._warned: set[str] = set()

    def _warn_once(self, line: str) -> None:
        if line not in self._warned:
            self._warned.add(line)
            self.on_warning(line)

    # -- what every front end calls --------------------------------------------------------------------------
    def move(self, key: str, value: float) -> bool:
        """Move a key (``video.strength``, ``dream.layers.mixed5``) to ``value`` in its own units."""
        try:
            self.perf.range_of(key)
        except ConfigError as e:
            self._warn_once(str(e))
            return False
        if self.perf.set(key, value):
            self.on_move(key, self.perf.value(key))
            return True
        return False

    def control(self, name: str, x: float) -> bool:
        """Move the ``[live]`` control ``name`` to position ``x`` (0..1) across its range."""
        c = self.perf.table["controls"].get(name)
        if c is None:
            self._warn_once(f"no live control is called {name!r}; the preset's [live] has "
                            f"{', '.join(self.perf.table['controls']) or 'none'}")
            return False
        lo, hi = c["range"]
        x = min(max(float(x), 0.0), 1.0)
        return self.move(c["key"], lo + (hi - lo) * x)

    def slider(self, name: str, value: float) -> bool:
        """A page slider: control ``name`` to ``value`` in its key's units."""
        c = self.perf.table["controls"].get(name)
        return self.move(c["key"], value) if c is not None else self.control(name, 0.0)

    def pulse(self) -> bool:
        if self.perf.pulse():
            self.on_move("pulse", 1.0)
            return True
        return False

    # -- OSC -------------------------------------------------------------------------------------------------
    def osc(self, address: str, *args: Any) -> bool:
        """Handle one OSC message."""
        if not address.startswith(PREFIX):
            self._warn_once(f"OSC address {address} is not dreamvid's: send /dreamvid/<section>/<key> value")
            return False
        path = address[len(PREFIX):].strip("/")
        if path == "pulse":
            return self.pulse()
        number = next((a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)), None)
        if number is None:
            self._warn_once(f"OSC {address} needs a number")
            return False
        if path.startswith("control/"):
            return self.control(path[len("control/"):], float(number))
        return self.move(path.replace("/", "."), float(number))

    # -- MIDI ------------------------------------------------------------------------------------------------
    def midi(self, msg) -> bool:
        """Handle one ``mido.Message``."""
        table = self.perf.table
        channel = getattr(msg, "channel", 0) + 1
        pulse = table.get("pulse") or {}
        if msg.type == "control_change":
            if pulse.get("cc") == msg.control and pulse.get("channel", channel) == channel:
                return self.pulse() if msg.value >= 64 else False
            for name, c in table["controls"].items():
                if c.get("cc") == msg.control and c.get("channel", channel) == channel:
                    return self.control(name, msg.value / 127.0)
        elif msg.type == "note_on" and msg.velocity > 0 and pulse.get("note") == msg.note:
            if pulse.get("channel", channel) == channel:
                return self.pulse()
        return False


class OscServer:
    """An OSC server on its own thread (``python-osc``), bound when made."""

    def __init__(self, remote: Remote, host: str, port: int):
        need("pythonosc", "--osc")
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import ThreadingOSCUDPServer

        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: None if remote.osc(address, *args) else None)
        try:
            self._server = ThreadingOSCUDPServer((host, int(port)), dispatcher)
        except OSError as e:
            why = "the port is in use" if getattr(e, "errno", None) in (98, 48, 10048) else e.strerror or str(e)
            raise InputError(f"cannot listen for OSC on {host}:{port} (UDP): {why}; pick another --osc port") from None
        self.port = self._server.server_address[1]
        self._t = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                   name="dreamvid-osc", daemon=True)

    def start(self) -> None:
        self._t.start()

    def close(self) -> None:
        if self._t.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()


def check_osc(port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--osc must be a UDP port from 1 to 65535 (0: any free one), got {port}")


def midi_ports() -> list[str]:
    """The MIDI input ports (raises :class:`InputError` where MIDI cannot be opened at all)."""
    need("mido", "--midi")
    import mido

    try:
        with quiet_stderr():  # ALSA prints its own line without a sequencer; ours says it
            return list(mido.get_input_names())
    except Exception as e:  # rtmidi's SystemError without an ALSA sequencer, ImportError without rtmidi, ...
        raise InputError(f"MIDI is not available here ({_reason(e)}): connect a MIDI device or leave out --midi") from None


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


def open_midi(remote: Remote, port: str | None):
    """Open MIDI input ``port`` (None or "": the first one) with ``remote.midi`` as its callback."""
    ports = midi_ports()
    import mido

    if not ports:
        raise InputError("no MIDI input port is connected: plug in a controller, or leave out --midi")
    name = port or ports[0]
    if name not in ports:
        match = [p for p in ports if name.lower() in p.lower()]
        if len(match) != 1:
            raise InputError(f"no MIDI input port {name!r}; the ports are: {', '.join(ports)}")
        name = match[0]
    try:
        with quiet_stderr():
            return mido.open_input(name, callback=remote.midi)
    except Exception as e:
        raise InputError(f"cannot open MIDI port {name!r}: {_reason(e)}") from None
