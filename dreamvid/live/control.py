"""The performance: live controls → keyframe schedules → the schedule every live frame is dreamed with.

A control moves a key a schedule can drive (``config.SCHEDULABLE``, or ``dream.layers.<layer>``). Every move is
kept as a keyframe of that key, time-stamped on the song's clock, and the film's schedule is rebuilt from the
preset plus those keyframes with the render's own ``pipeline.film_schedule``: the schedule live dreams frame k
with *is* the schedule a render of the recorded preset computes for frame k. Exact by construction:

* a move takes effect from the first frame the loop has not started yet, ``k``; its keyframe is written at the
  midpoint before it, ``(k - 0.5) / fps`` seconds, as a *hold* (``=``: the value before holds until there, then
  jumps), so frames ``< k`` keep the old value and frames ``>= k`` get the new one whatever the rounding;
* the loop reads the schedule and marks frame k started under one lock (:meth:`Performance.begin`), and a move
  is committed under that lock only if its frame is still ahead (else it is rebuilt for the next frame);
* the recording (:meth:`Performance.layer`) is the config layer live resolves its own config with, on top of the
  same preset, exactly as ``dreamvid render --preset P --config perf.toml`` does.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, LayerSpec, format_layers, live_key_range, resolve
from ..errors import ConfigError

__all__ = ["Performance", "default_controls", "MAX_SCHEDULE"]

#: A recorded key's schedule text stays under the keyframe parser's limit for keyframe lists (400000 characters)
MAX_SCHEDULE = 390_000


@dataclass
class _Key:
    """One recorded keyframe: ``at`` in frames (a midpoint, ``k - 0.5``), ``hold``: a step there."""

    at: float
    value: float
    hold: bool = True


def default_controls(config: Config) -> dict[str, Any]:
    """The ``[live]`` table of a preset that has none: the dream's strength (or its step size, without a governor)
    and its deepest layer's weight on sliders, and a pulse."""
    d, v = config.dream, config.video
    if v.strength > 0:
        first = {"key": "video.strength", "range": [0.0, float(min(128.0, max(2.5 * v.strength, 20.0)))]}
    else:
        first = {"key": "dream.step_size", "range": [round(d.step_size / 4, 6), float(min(1.0, d.step_size * 2.5))]}
    deep = d.layers[-1].name
    controls = {"strength": first, deep: {"key": f"dream.layers.{deep}", "range": [0.0, 3.0]}}
    return {"controls": controls, "pulse": {"key": first["key"], "peak": 2.0, "decay": 0.4}}


class Performance:
    """The controls of a live run and their recording.

    Parameters
    ----------
    preset : str, the preset's name (what the recording's ``--preset`` is)
    preset_layer : mapping, the preset's table (``presets.load``); live's config is ``resolve(preset_layer, layer)``
    fps : float, the film's frame rate
    build : callable ``Config -> Schedule``, the film's schedule of a config (``pipeline.film_schedule``)
    on_warning : callable taking one line
    """

    def __init__(self, *, preset: str, preset_layer: Mapping[str, Any], fps: float,
                 build: Callable[[Config], Any], on_warning: Callable[[str], None] | None = None):
        self.preset, self.preset_layer, self.fps = preset, preset_layer, float(fps)
        self._build = build
        self.on_warning = on_warning or (lambda line: None)
        self.base = resolve(preset_layer, preset=preset)
        self.table = self.base.live or default_controls(self.base)
        scheduled = dict(self.base.schedules) | {f"dream.layers.{s.name}": s.schedule for s in self.base.dream.layers
                                                 if s.schedule is not None}
        keys = [c["key"] for c in self.table["controls"].values()]
        keys += [self.table["pulse"]["key"]] if "pulse" in self.table else []
        for key in keys:
            if key in scheduled:
                raise ConfigError(f"[live] drives {key}, which preset {preset} schedules ({scheduled[key]!r}): a live "
                                  "control replaces a schedule, so give the key a plain value or drive another key")
        self._scheduled = scheduled
        self._keys: dict[str, list[_Key]] = {}
        self._value: dict[str, float] = {}  # each moved key's latest set value (the knob, without pulses)
        self._full: set[str] = set()
        self._lock = threading.Lock()  # the loop's begin() and a commit
        self._moves = threading.Lock()  # one move at a time
        self.started = -1  # the last frame the loop started
        self.config = self.base
        self.schedule = build(self.base)
        self.changes = 0  # moves committed

    # -- what the keys are ---------------------------------------------------------------------------------
    def range_of(self, key: str) -> tuple[float, float]:
        return live_key_range(key, self.base.dream.layer_names)

    def value(self, key: str) -> float:
        """The key's current set value (its base value until it is moved)."""
        if key in self._value:
            return self._value[key]
        if key.startswith("dream.layers."):
            name = key.removeprefix("dream.layers.")
            return next(s.weight for s in self.base.dream.layers if s.name == name)
        section, name = key.split(".")
        return float(getattr(getattr(self.base, section), name))

    def controls(self) -> list[dict[str, Any]]:
        """The mapped controls with their current values (for the page)."""
        return [{"name": n, "key": c["key"], "range": c["range"], "value": self.value(c["key"]),
                 "cc": c.get("cc"), "full": c["key"] in self._full} for n, c in self.table["controls"].items()]

    # -- the loop's side -----------------------------------------------------------------------------------
    def begin(self, k: int):
        """The loop starts frame ``k``: returns the schedule to dream it with (and no move reaches frame ``k`` any
        more)."""
        with self._lock:
            self.started = max(self.started, int(k))
            return self.schedule

    # -- moves ---------------------------------------------------------------------------------------------
    def set(self, key: str, value: float, *, now_frame: int | None = None) -> bool:
        """Move ``key`` to ``value`` (clipped to its range) from the next frame the loop starts. False: refused
        (a key the preset schedules, or whose recording is full; a warning says which)."""
        lo, hi = self.range_of(key)
        v = float(min(max(float(value), lo), hi))
        if not math.isfinite(v):
            return False
        return self._move(key, lambda keys, k: self._hold(keys, k, v), value=v, now_frame=now_frame)

    def pulse(self, *, now_frame: int | None = None) -> bool:
        """The pulse trigger: its key jumps to ``peak`` times its value, then returns to it over ``decay`` s."""
        p = self.table.get("pulse")
        if p is None:
            return False
        key = p["key"]
        lo, hi = self.range_of(key)
        base = self.value(key)
        peak = float(min(max(base * p["peak"], lo), hi))
        span = max(1.0, p["decay"] * self.fps)

        def edit(keys: list[_Key], k: int) -> None:
            self._hold(keys, k, peak)
            keys.append(_Key(k - 0.5 + span, base, hold=False))

        return self._move(key, edit, value=base, now_frame=now_frame)

    def _hold(self, keys: list[_Key], k: int, v: float) -> None:
        """From frame ``k`` on the key holds ``v``: keyframes at or after ``k`` (a pulse's return) are replaced."""
        while keys and keys[-1].at >= k - 0.5 - 1e-9:
            keys.pop()
        keys.append(_Key(k - 0.5, v))

    def _move(self, key: str, edit, *, value: float, now_frame: int | None) -> bool:
        if key in self._scheduled:
            self.on_warning(f"{key} follows the preset's schedule; a live control cannot move it")
            return False
        with self._moves:
            if key in self._full:
                return False
            while True:
                k = max(self.started + 1, 0 if now_frame is None else int(now_frame) + 1)
                keys = [_Key(x.at, x.value, x.hold) for x in self._keys.get(key, [_Key(0.0, self.value(key), False)])]
                edit(keys, k)
                text = self._text(keys)
                if len(text) > MAX_SCHEDULE:
                    self._full.add(key)
                    self.on_warning(f"the recording of {key} is full ({len(keys)} keyframes, the most one schedule "
                                    "holds): it stays where it is for the rest of this performance")
                    return False
                trial = dict(self._keys, **{key: keys})
                config = self._config(trial)
                schedule = self._build(config)  # outside the lock: the loop is not held up
                with self._lock:
                    if self.started < k:  # the frame it starts from is still ahead: commit
                        self._keys, self.config, self.schedule = trial, config, schedule
                        self._value[key] = value
                        self.changes += 1
                        return True
                # the loop started frame k meanwhile: build it again for the frame after

    # -- the recording ---------------------------------------------------------------------------------------
    def _text(self, keys: list[_Key]) -> str:
        """A key's keyframes as a schedule string, in seconds (to 0.1 ms, far inside half a frame)."""
        parts = []
        for x in keys:
            t = max(0.0, x.at / self.fps)
            parts.append(f"{t:.4f}".rstrip("0").rstrip(".") + ":" + ("=" if x.hold else "") + f"{x.value:.6g}")
        return ", ".join(parts)

    def layer(self, keys: Mapping[str, list[_Key]] | None = None) -> dict[str, Any]:
        """The recording as a config layer: every moved key as a keyframe schedule (layer weights inside the
        ``layers`` string)."""
        keys = self._keys if keys is None else keys
        out: dict[str, dict[str, Any]] = {}
        layers = {}
        for key, ks in keys.items():
            if key.startswith("dream.layers."):
                layers[key.removeprefix("dream.layers.")] = self._text(ks)
                continue
            section, name = key.split(".")
            out.setdefault(section, {})[name] = self._text(ks)
        if layers:
            specs = tuple(LayerSpec(s.name, s.weight, s.channels, layers.get(s.name, s.schedule))
                          for s in self.base.dream.layers)
            out.setdefault("dream", {})["layers"] = format_layers(specs)
        return out

    def _config(self, keys: Mapping[str, list[_Key]]) -> Config:
        return resolve(self.preset_layer, self.layer(keys), preset=self.preset)

    def document(self, *, song: Path | None, source: str, replay: str | None = None) -> dict[str, Any]:
        """The recording as a preset file's table (``--record``); ``replay``: the command that renders it (its
        description says it)."""
        how = replay or (f"dreamvid render CLIP{f' --song {song}' if song else ''} --preset {self.preset} "
                         "--config PERF.toml")
        return {"description": f"recorded live ({source}{f', {Path(song).name}' if song else ''}); {self.changes} "
                               f"control moves. Replay: {how}",
                "preset": self.preset, **self.layer()}

    def write(self, path: Path, *, song: Path | None, source: str, replay: str | None = None,
              overwrite: bool = True) -> Path:
        """Write the recording (TOML, atomically)."""
        import tomli_w

        from ..fsutil import atomic_write_bytes

        document = self.document(song=song, source=source, replay=replay)
        return atomic_write_bytes(path, tomli_w.dumps(document).encode(), overwrite=overwrite)
