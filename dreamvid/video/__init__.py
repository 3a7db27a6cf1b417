"""Everything that touches video: decode (OpenCV), optical flow and warping, encode + mux (ffmpeg).

Frames are uint8 RGB arrays of shape (H, W, 3) and are always streamed, one at a time.
"""

from .decode import VideoInfo, frame_range, has_audio, iter_frames, output_size, probe
from .encode import FrameWriter, check_container, check_song, concat, count_frames, mux, stream_durations
from .flow import (
    FLOW_METHODS,
    WARP_MODES,
    MotionTracker,
    coherent_init,
    compose,
    consistency_mask,
    estimate_flow,
    flow_pair,
    motion_flow,
    motion_matrix,
    scene_cut_score,
    warp,
    warp_motion,
)

__all__ = [
    "VideoInfo",
    "probe",
    "output_size",
    "frame_range",
    "iter_frames",
    "has_audio",
    "FrameWriter",
    "concat",
    "mux",
    "check_container",
    "check_song",
    "count_frames",
    "stream_durations",
    "FLOW_METHODS",
    "WARP_MODES",
    "MotionTracker",
    "estimate_flow",
    "flow_pair",
    "warp",
    "consistency_mask",
    "scene_cut_score",
    "coherent_init",
    "motion_matrix",
    "compose",
    "motion_flow",
    "warp_motion",
]
