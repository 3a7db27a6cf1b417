"""``dreamvid live``: perform the dream in real time, record the performance, render it offline at full quality.

The render core with the source and the sink swapped: a camera, a looped clip or the infinite zoom in; the page
(and ``--out``, a virtual camera) out; each frame dreamed with ``pipeline.dream_frame`` and the schedule that
``pipeline.film_schedule`` builds from the preset plus the live controls' keyframes, so ``--record``'s preset,
rendered offline, gives the same schedule frame for frame (docs/live.md).

This package is the only importer of the live extra's packages (python-osc, mido, sounddevice, pyvirtualcam).
"""

from .clock import AudioClock, FrameClock, SongClock
from .control import Performance, default_controls
from .session import LiveFrame, LiveOptions, Pacer, Quality, Session

__all__ = ["LiveOptions", "LiveFrame", "Session", "Performance", "Pacer", "Quality", "SongClock", "FrameClock",
           "AudioClock", "default_controls"]
