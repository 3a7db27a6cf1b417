"""dreamvid: DeepDream music videos with InceptionV3, optical-flow coherence and music-driven dreams."""

__version__ = "0.1.0"
