"""Video data: decoding (PyAV), transforms, annotation readers, datasets, synthetic motion."""

from .annotations import VideoRecord, check_files
from .datasets import RECORD_KINDS, Failure, VideoDataset, build_records, collate_clips
from .labels import LABEL_SETS, load_labels
from .synthetic import CLASSES as SYNTHETIC_CLASSES
from .synthetic import SyntheticMotionDataset, render_clip, write_dataset
from .transforms import ClipTransform
from .video import (
    VideoError,
    VideoInfo,
    clip_starts,
    iter_frames,
    open_video,
    probe_video,
    read_clip,
    read_frame_folder,
    read_video,
)

__all__ = [
    "LABEL_SETS", "RECORD_KINDS", "SYNTHETIC_CLASSES", "ClipTransform", "Failure",
    "SyntheticMotionDataset", "VideoDataset", "VideoError", "VideoInfo", "VideoRecord",
    "build_records", "check_files", "clip_starts", "collate_clips", "iter_frames",
    "load_labels", "open_video", "probe_video", "read_clip", "read_frame_folder", "read_video",
    "render_clip", "write_dataset",
]
