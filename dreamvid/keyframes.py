"""Keyframed schedules and expressions: a number that changes over the film. Pure: numpy only, no ``eval``.

Any schedulable key of a preset or config (``SCHEDULABLE`` in :mod:`dreamvid.config`) may be a string instead
of a number. Two forms (docs/presets.md has the full grammar):

Keyframes (the text holds a ``:``)
    ``"0:0.01, 8b:0.03, 16b:0.01"``: comma-separated ``TIME:VALUE`` pairs. ``TIME`` is seconds (``12`` or
    ``12s``), beats (``8b``: the 9th tracked beat, beat 0 being the first), frames (``30f``) or a share of the
    whole film (``50%``: half-way; ``100%``: the last frame). Between two
    keyframes the value moves linearly; a ``~`` before a value (``8b:~0.03``) eases into that keyframe
    instead (smoothstep: no kink, no overshoot), and a ``~`` before the whole list eases every segment. A
    ``=`` before a value (``8b:=0.03``) *holds* the value before it until that keyframe and jumps there (a
    step: what ``dreamvid live`` records for a knob's moves), and a ``=`` before the whole list holds every
    segment. Before the first keyframe the value holds the first value, after the last the last. Two keyframes at
    the same time make a jump.
Expressions (no ``:``)
    ``"0.02 + 0.01*sin(t*2*pi/8) + 0.02*onset"``: numbers, ``+ - * / % ^`` (``**`` too), comparisons
    (``<  <=  >  >=  ==  !=``, giving 1 or 0), parentheses, the names of :data:`VARIABLES` and
    :data:`CONSTANTS` and the functions of :data:`FUNCTIONS`.

Both are evaluated for every frame at once with numpy (:meth:`Curve.evaluate` over a :class:`Timeline`). A
mistake raises :class:`~dreamvid.errors.ConfigError` naming the key and the 1-based character position. So does
an expression longer than 4000 characters (a keyframe list: 400000), or one nested more than 60 levels deep (parentheses, function
arguments, signs and powers; a flat chain such as ``1+1+...+1`` nests nothing): any text gives a :class:`Curve`
or one ConfigError, never another exception.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, suggest

__all__ = ["CONSTANTS", "FEATURES", "FUNCTIONS", "VARIABLES", "Curve", "Timeline", "parse"]

#: Audio features an expression may name (each 0..1 per frame; 0 on every frame without a song).
FEATURES = ("rms", "energy", "onset", "low", "mid", "high")
#: Every variable: seconds, beats (continuous: 2.5 is half-way from beat 2 to beat 3), frame index, frame rate,
#: the share of the film done (0 on the first frame, 1 on the last) and the film's length in seconds.
VARIABLES = ("t", "beat", "frame", "fps", "progress", "length", *FEATURES)
CONSTANTS = {"pi": math.pi, "tau": 2 * math.pi, "e": math.e}


def _smoothstep(e0, e1, x):
    u = np.clip((x - e0) / np.where(e1 == e0, 1e-12, e1 - e0), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


#: name: (number of arguments, numpy function)
FUNCTIONS: dict[str, tuple[int, Callable]] = {
    "sin": (1, np.sin), "cos": (1, np.cos), "tan": (1, np.tan), "abs": (1, np.abs), "sqrt": (1, np.sqrt),
    "exp": (1, np.exp), "log": (1, np.log), "floor": (1, np.floor), "ceil": (1, np.ceil), "round": (1, np.round),
    "sign": (1, np.sign), "fract": (1, lambda x: x - np.floor(x)),
    "min": (2, np.minimum), "max": (2, np.maximum), "pow": (2, np.power),
    "step": (2, lambda edge, x: np.greater_equal(x, edge).astype(np.float64)),
    "clip": (3, np.clip), "mix": (3, lambda a, b, u: a + (b - a) * u), "smoothstep": (3, _smoothstep),
    "where": (3, lambda c, a, b: np.where(c != 0, a, b)),
}  # fmt: skip

_MAX_LEN = 4000  # an expression
_MAX_KEYFRAMES_LEN = 400_000  # a keyframe list: read in a flat loop; a recorded live performance is long
_MAX_DEPTH = 60


# ---------------------------------------------------------------------------------------------------------------
# the time axes


@dataclass(frozen=True, eq=False)
class Timeline:
    """The axes a schedule is evaluated over: one entry per video frame, of the film or of a range of it.

    A film has ``n`` frames; a timeline covers its frames ``start .. start + count`` (all of them by default), so
    frames a..b of a film are evaluated as the whole film evaluates them there: ``t``, ``frame``, ``progress``,
    ``length``, beats and ``%`` keyframes are the film's.

    Attributes
    ----------
    n : int >= 1, number of frames of the film
    fps : float > 0
    beat_frames : int64 (m,) or None, film frames of the tracked beats (beat ``i`` on ``beat_frames[i]``)
    bpm : float, the tempo for beats when there are fewer than two tracked beats (0: none)
    features : mapping feature name -> float (count,) in [0, 1], entry ``i`` on film frame ``start + i``; missing
        features are 0
    start : int >= 0, the first film frame covered; count : int or None, frames covered (None: to the film's end)
    """

    n: int
    fps: float
    beat_frames: np.ndarray | None = None
    bpm: float = 0.0
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    start: int = 0
    count: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.n or not 1 <= self.size <= self.n - self.start:
            raise ValueError(f"frames {self.start}..{self.start + self.size} are not within the film's {self.n}")

    @classmethod
    def of(cls, n: int, fps: float, features=None, *, bpm: float = 0.0, frames: range | None = None) -> Timeline:
        """From an :class:`~dreamvid.audio.AudioFeatures` (or None: no song, beats at ``bpm``), over the film's
        ``frames`` (default: all ``n``); the features' rows are those frames (row ``i``: film frame
        ``frames[i]``), their ``beat_frames`` the film's."""
        start, count = (0, int(n)) if frames is None else (frames.start, len(frames))
        if features is None:
            return cls(n=int(n), fps=float(fps), bpm=float(bpm), start=start, count=count)
        feats = {name: np.asarray(features.feature(name)[:count], np.float64) for name in FEATURES}
        bpm = float(features.tempo) if features.tempo > 0 else float(bpm)
        return cls(n=int(n), fps=float(fps), beat_frames=np.asarray(features.beat_frames, np.float64), bpm=bpm,
                   features=feats, start=start, count=count)

    @property
    def size(self) -> int:
        """The number of frames covered."""
        return self.n - self.start if self.count is None else int(self.count)

    @property
    def frame(self) -> np.ndarray:
        """The film frames covered [shape=(size,), dtype=float64]."""
        return np.arange(self.start, self.start + self.size, dtype=np.float64)

    @property
    def t(self) -> np.ndarray:
        return self.frame / self.fps

    def _beat_grid(self, key: str) -> tuple[np.ndarray, np.ndarray, float]:
        """(beat numbers, their frames, frames per beat past either end)."""
        bf = self.beat_frames
        if bf is not None and len(bf) >= 2:
            period = float(np.median(np.diff(bf)))
            return np.arange(len(bf), dtype=np.float64), bf.astype(np.float64), max(period, 1e-6)
        if self.bpm > 0:
            period = 60.0 * self.fps / self.bpm
            first = float(bf[0]) if bf is not None and len(bf) == 1 else 0.0
            return np.array([0.0, 1.0]), np.array([first, first + period]), period
        if bf is not None:
            raise ConfigError(f"{key} counts in beats, but the song has fewer than two tracked beats: give its "
                              "times in seconds, or set [motion] bpm")
        raise ConfigError(f"{key} counts in beats, but there is no song: pass --song, or set [motion] bpm "
                          "(beats per minute)")

    def beat_of_frame(self, frames: np.ndarray, *, key: str) -> np.ndarray:
        """Continuous beat number of (fractional) frames: integer ``i`` on tracked beat ``i``."""
        beats, where, period = self._beat_grid(key)
        f = np.asarray(frames, np.float64)
        out = np.interp(f, where, beats)
        out = np.where(f < where[0], beats[0] - (where[0] - f) / period, out)
        return np.where(f > where[-1], beats[-1] + (f - where[-1]) / period, out)

    def frame_of_beat(self, beat: np.ndarray, *, key: str) -> np.ndarray:
        """Fractional frame of (continuous) beat numbers: beat ``i`` lands on ``beat_frames[i]``."""
        beats, where, period = self._beat_grid(key)
        b = np.asarray(beat, np.float64)
        out = np.interp(b, beats, where)
        out = np.where(b < beats[0], where[0] - (beats[0] - b) * period, out)
        return np.where(b > beats[-1], where[-1] + (b - beats[-1]) * period, out)


# ---------------------------------------------------------------------------------------------------------------
# parsing


class _Error(Exception):
    def __init__(self, pos: int, message: str):
        super().__init__(message)
        self.pos, self.message = pos, message


_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|<=|>=|==|!=|[-+*/%^(),<>]))"
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        m = _TOKEN.match(text, i)
        if not m or m.end() == i:
            raise _Error(i, f"unexpected character {text[i]!r}")
        kind = m.lastgroup
        start = m.start(kind)
        tokens.append((kind, m.group(kind), start))
        i = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


_COMPARE = ("<", "<=", ">", ">=", "==", "!=")


class _Parser:
    """Recursive descent over the tokens into a postfix program: a flat tuple of steps (``("num", 2.0)``,
    ``("var", "t")``, ``("op", "+")``, ``("neg",)``, ``("call", "sin", 1)``) that :func:`_run` evaluates on a
    stack. No Python object comes from the text, and evaluating never recurses, however long the expression.

    Chains of one precedence (``1+1+...+1``) are loops here. Every other construct nests: each parenthesis,
    function argument, sign and power is a level of Python calls while parsing, so more than :data:`_MAX_DEPTH`
    levels is an error at the token that opens the next level.
    """

    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.code: list[tuple] = []

    def peek(self):
        return self.toks[self.i]

    def take(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, value: str):
        tok = self.take()
        if tok[1] != value:
            raise _Error(tok[2], f"expected {value!r}, found {_what(tok)}")

    def enter(self, tok) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Error(tok[2], f"nested too deeply: more than {_MAX_DEPTH} levels of parentheses, function calls, "
                                 "signs or powers")

    def parse(self) -> tuple:
        self.compare()
        tok = self.peek()
        if tok[0] != "end":
            raise _Error(tok[2], f"unexpected {_what(tok)}")
        return tuple(self.code)

    def _chain(self, ops: tuple[str, ...], operand) -> None:
        """``operand (op operand)*``, left-associative, as a loop."""
        operand()
        while self.peek()[1] in ops:
            op = self.take()[1]
            operand()
            self.code.append(("op", op))

    def compare(self) -> None:
        self._chain(_COMPARE, self.sum)

    def sum(self) -> None:
        self._chain(("+", "-"), self.product)

    def product(self) -> None:
        self._chain(("*", "/", "%"), self.unary)

    def unary(self) -> None:
        tok = self.peek()
        if tok[1] not in ("-", "+"):
            self.power()
            return
        self.take()
        self.enter(tok)
        self.unary()
        self.depth -= 1
        if tok[1] == "-":
            self.code.append(("neg",))

    def power(self) -> None:
        self.atom()
        tok = self.peek()
        if tok[1] in ("^", "**"):  # right-associative; -2^2 = -(2^2)
            self.take()
            self.enter(tok)
            self.unary()
            self.depth -= 1
            self.code.append(("op", "^"))

    def atom(self) -> None:
        tok = self.take()
        kind, value, pos = tok
        if kind == "num":
            self.code.append(("num", float(value)))
        elif kind == "name" and self.peek()[1] == "(":
            if value not in FUNCTIONS:
                raise _Error(pos, f"unknown function '{value}'{suggest(value, FUNCTIONS)}; functions are "
                                  f"{', '.join(FUNCTIONS)}")
            opening = self.take()
            args = 0
            if self.peek()[1] != ")":
                self.nested(opening)
                args = 1
                while self.peek()[1] == ",":
                    self.take()
                    self.nested(opening)
                    args += 1
            self.expect(")")
            arity = FUNCTIONS[value][0]
            if args != arity:
                raise _Error(pos, f"{value}() takes {arity} argument{'s' if arity > 1 else ''}, got {args}")
            self.code.append(("call", value, args))
        elif kind == "name":
            if value in CONSTANTS:
                self.code.append(("num", CONSTANTS[value]))
            elif value in VARIABLES:
                self.code.append(("var", value))
            else:
                raise _Error(pos, f"unknown name '{value}'{suggest(value, (*VARIABLES, *CONSTANTS))}; names are "
                                  f"{', '.join(VARIABLES)}, {', '.join(CONSTANTS)}")
        elif value == "(":
            self.nested(tok)
            self.expect(")")
        else:
            raise _Error(pos, f"expected a number, a name or '(', found {_what(tok)}")

    def nested(self, opening) -> None:
        """A full expression one level down (in parentheses, or a function's argument)."""
        self.enter(opening)
        self.compare()
        self.depth -= 1


def _what(tok) -> str:
    return "the end" if tok[0] == "end" else repr(tok[1])


_OPS = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": np.mod, "^": np.power,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal,
    "!=": np.not_equal,
}  # fmt: skip


def _run(code: tuple, env: Mapping[str, np.ndarray]):
    """Evaluate a postfix program (see :class:`_Parser`) over the arrays of ``env``: a float or an array."""
    stack: list = []
    for step in code:
        kind = step[0]
        if kind == "num":
            stack.append(step[1])
        elif kind == "var":
            stack.append(env[step[1]])
        elif kind == "neg":
            stack.append(-stack.pop())
        elif kind == "op":
            b = stack.pop()
            out = _OPS[step[1]](stack.pop(), b)
            stack.append(out.astype(np.float64) if np.asarray(out).dtype == bool else out)
        else:  # call
            n = step[2]
            args = stack[-n:]
            del stack[-n:]
            stack.append(FUNCTIONS[step[1]][1](*args))
    return stack[0]


_TIME = re.compile(r"^\s*(?P<v>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>[sbf%]?)\s*$")


@dataclass(frozen=True)
class _Key:
    at: float
    unit: str  # "s", "b", "f" or "%"
    value: float
    smooth: bool
    hold: bool = False  # ``=``: the value before holds until this keyframe, then jumps to it


@dataclass(frozen=True, eq=False)
class Curve:
    """A parsed schedule. ``text`` is what was written; ``key`` names it in errors.

    Attributes
    ----------
    kind : "keyframes" or "expression"
    names : frozenset of the variables it reads (keyframes in beats read ``beat``)
    """

    key: str
    text: str
    kind: str
    names: frozenset
    _keys: tuple = ()
    _code: tuple = ()  # an expression's postfix program

    @property
    def values(self) -> tuple[float, ...]:
        """The keyframe values (empty for an expression)."""
        return tuple(k.value for k in self._keys)

    @property
    def uses_beats(self) -> bool:
        return "beat" in self.names

    def static(self) -> float:
        """A representative number: the first keyframe's value, or the expression at frame 0 of a silent song
        with beat 0. Config keeps it as the key's plain value (what a frame-less use of the config sees)."""
        if self.kind == "keyframes":
            return self._keys[0].value
        env = dict.fromkeys(VARIABLES, np.zeros(1))
        env["fps"] = np.full(1, 25.0)
        env["length"] = np.full(1, 60.0)
        with np.errstate(all="ignore"):
            v = float(np.broadcast_to(_run(self._code, env), (1,))[0])
        return v if math.isfinite(v) else 0.0

    def evaluate(self, timeline: Timeline) -> np.ndarray:
        """The value on every frame the timeline covers [shape=(timeline.size,), dtype=float64].

        Raises
        ------
        ConfigError
            Beats are used with neither a song's beats nor a tempo; keyframes are out of time order; the
            expression gives a non-finite value (division by zero, log of 0, ...) on some frame.
        """
        n, m = timeline.n, timeline.size
        if self.kind == "keyframes":
            return self._interpolate(timeline)
        env: dict[str, np.ndarray] = {"frame": timeline.frame, "t": timeline.t, "fps": np.full(m, timeline.fps),
                                      "progress": timeline.frame / max(n - 1, 1), "length": np.full(m, n / timeline.fps)}
        for name in FEATURES:
            env[name] = timeline.features.get(name, np.zeros(m))
        if "beat" in self.names:
            env["beat"] = timeline.beat_of_frame(timeline.frame, key=self.key)
        with np.errstate(all="ignore"):
            out = np.broadcast_to(np.asarray(_run(self._code, env), np.float64), (m,)).copy()
        bad = ~np.isfinite(out)
        if bad.any():
            k = timeline.start + int(np.argmax(bad))
            raise ConfigError(f"{self.key} = {_excerpt(self.text, 0)} is not a finite number at t = "
                              f"{k / timeline.fps:.3f} s (frame {k}); guard divisions and logs, e.g. max(x, 0.001)")
        return out

    @functools.cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        """The keyframes as arrays (built once: a recorded performance is evaluated over and over, a frame range at a
        time)."""
        keys = self._keys
        return {"at": np.array([k.at for k in keys], np.float64), "unit": np.array([k.unit for k in keys]),
                "value": np.array([k.value for k in keys], np.float64),
                "smooth": np.array([k.smooth for k in keys], bool), "hold": np.array([k.hold for k in keys], bool)}

    def _interpolate(self, timeline: Timeline) -> np.ndarray:
        keys, a = self._keys, self._arrays
        at, unit = a["at"], a["unit"]
        pos = at * timeline.fps  # seconds
        pos = np.where(unit == "f", at, pos)
        pos = np.where(unit == "%", at / 100.0 * max(timeline.n - 1, 1), pos)
        beats = unit == "b"
        if beats.any():
            pos[beats] = timeline.frame_of_beat(at[beats], key=self.key)
        if np.any(np.diff(pos) < -1e-9):
            i = int(np.argmax(np.diff(pos) < -1e-9)) + 1
            raise ConfigError(f"{self.key}: keyframe {i + 1} ({_fmt_time(keys[i])}) comes before the one ahead of "
                              f"it ({_fmt_time(keys[i - 1])}) in {_excerpt(self.text, 0)}; list keyframes in time "
                              "order")
        vals = a["value"]
        f = timeline.frame
        i = np.clip(np.searchsorted(pos, f, side="right") - 1, 0, len(keys) - 1)
        j = np.minimum(i + 1, len(keys) - 1)
        span = pos[j] - pos[i]
        u = np.where(span > 0, (f - pos[i]) / np.where(span > 0, span, 1.0), 0.0)
        u = np.clip(u, 0.0, 1.0)
        u = np.where(a["smooth"][j], u * u * (3.0 - 2.0 * u), u)
        u = np.where(a["hold"][j], 0.0, u)  # a hold keyframe: a step when it is reached
        out = vals[i] + (vals[j] - vals[i]) * u
        out = np.where(f < pos[0], vals[0], out)
        return np.where(f >= pos[-1], vals[-1], out)


def _fmt_time(k: _Key) -> str:
    return f"{k.at:g}{k.unit if k.unit != 's' else 's'}"


def parse(text: str, *, key: str) -> Curve:
    """Parse a schedule string (keyframes or an expression) for the config key ``key``.

    Raises
    ------
    ConfigError
        ``"<key>: <what is wrong> at position <p> of '<text>'"`` (positions count from 1).
    """
    if not isinstance(text, str):
        raise ConfigError(f"{key} must be a number or a schedule string, got {text!r:.80}")
    last = _LAST.get(key)
    if last is not None and last.text == text:
        return last
    curve = _parse(text, key)
    if len(_LAST) >= 256:
        _LAST.clear()
    _LAST[key] = curve
    return curve


#: Each key's last curve: a :class:`Curve` is immutable, and a live run builds the schedule of its last frames from
#: the same texts once a frame (a recorded performance's keyframe list is up to 400000 characters: 60 ms to parse).
_LAST: dict[str, Curve] = {}


def _parse(text: str, key: str) -> Curve:
    limit = _MAX_KEYFRAMES_LEN if ":" in text else _MAX_LEN
    if len(text) > limit:
        what = "keyframe list" if ":" in text else "expression"
        raise ConfigError(f"{key}: the {what} is {len(text)} characters long; keep it under {limit}")
    if not text.strip():
        raise ConfigError(f"{key} is an empty string: give a number, keyframes like '0:1, 8b:2' or an expression")
    try:
        if ":" in text:
            return _parse_keyframes(text, key)
        code = _Parser(text).parse()
    except _Error as e:
        raise ConfigError(f"{key}: at position {e.pos + 1} of {_excerpt(text, e.pos)}: {e.message} "
                          "(schedules: docs/presets.md)") from None
    names = frozenset(step[1] for step in code if step[0] == "var")
    return Curve(key=key, text=text, kind="expression", names=names, _code=code)


def _excerpt(text: str, pos: int, *, room: int = 40) -> str:
    """``text`` quoted for an error message; a long one as the ``room`` characters either side of ``pos``."""
    if len(text) <= 2 * room + 20:
        return repr(text)
    a, b = max(0, pos - room), min(len(text), pos + room)
    return f"{'...' if a else ''}{text[a:b]!r}{'...' if b < len(text) else ''}"


def _parse_keyframes(text: str, key: str) -> Curve:
    body, offset = text, 0
    stripped = text.lstrip()
    smooth_all = stripped.startswith("~")
    hold_all = stripped.startswith("=")
    if smooth_all or hold_all:
        offset = len(text) - len(stripped) + 1
        body = text[offset:]
    keys: list[_Key] = []
    pos = offset
    for part in body.split(","):
        start = pos
        pos += len(part) + 1
        if not part.strip():
            raise _Error(start, "empty keyframe (two commas in a row, or a trailing comma)")
        if part.count(":") != 1:
            raise _Error(start + (part.find(":", part.find(":") + 1) if part.count(":") > 1 else len(part)),
                         "a keyframe is TIME:VALUE, e.g. 8b:0.03" if part.count(":") == 0
                         else "one ':' per keyframe; separate keyframes with commas")
        t_text, v_text = part.split(":")
        m = _TIME.match(t_text)
        if not m:
            lead = len(t_text) - len(t_text.lstrip())
            raise _Error(start + lead, f"cannot read the time {t_text.strip()!r}: write seconds (12 or 12s), beats "
                                       "(8b), frames (30f) or a share of the film (50%)")
        at = float(m["v"])
        if at < 0:
            raise _Error(start, f"keyframe time {t_text.strip()!r} is negative")
        vpos = start + len(t_text) + 1
        v_str = v_text.strip()
        smooth, hold = smooth_all, hold_all
        if v_str.startswith("~"):
            smooth = True
            v_str = v_str[1:].strip()
        elif v_str.startswith("="):
            hold = True
            v_str = v_str[1:].strip()
        try:
            value = float(v_str)
            if not math.isfinite(value) or not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", v_str):
                raise ValueError
        except ValueError:
            lead = len(v_text) - len(v_text.lstrip())
            raise _Error(vpos + lead, f"keyframe value {v_text.strip()!r} is not a number") from None
        keys.append(_Key(at, m["unit"] or "s", value, smooth, hold))
    for i in range(1, len(keys)):
        a, b = keys[i - 1], keys[i]
        if a.unit == b.unit and b.at < a.at:
            raise ConfigError(f"{key}: keyframe {i + 1} ({_fmt_time(b)}) comes before keyframe {i} ({_fmt_time(a)}) "
                              f"in {_excerpt(text, 0)}; list keyframes in time order")
    names = frozenset({"beat"} if any(k.unit == "b" for k in keys) else ())
    return Curve(key=key, text=text, kind="keyframes", names=names, _keys=tuple(keys))
