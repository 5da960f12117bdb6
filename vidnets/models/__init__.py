"""Model families built from the shared layers; one builder per family."""

from . import movinet
from .base import Streamer, VideoClassifier
from .movinet import BLOCK_SPECS, MoViNet, MoViNetOptions, create_movinet

__all__ = [
    "BLOCK_SPECS", "MoViNet", "MoViNetOptions", "Streamer", "VideoClassifier", "create_movinet",
    "movinet",
]
