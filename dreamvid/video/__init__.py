"""Everything that touches video: decode (ffmpeg), optical flow and warping, encode + mux (ffmpeg).

Frames are uint8 RGB arrays of shape (H, W, 3) and are always streamed, one at a time. Each submodule's
``__all__`` is this package's interface.
"""

from . import decode, encode, flow, recorded
from .decode import *  # noqa: F403
from .encode import *  # noqa: F403
from .flow import *  # noqa: F403
from .recorded import *  # noqa: F403

__all__ = [*decode.__all__, *encode.__all__, *flow.__all__, *recorded.__all__]
