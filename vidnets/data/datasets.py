"""Map-style video datasets (train clips, multi-view test, whole-video streaming) and the
collate function that keeps failed videos out of the batch.

An item is ``{"video": float32 [3, T, S, S], "label", "index", "view"}`` (plus
``"frame_labels"`` [T, num_classes] when streaming a dataset with action segments), or a
:class:`Failure` when the video cannot be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import (
    VideoRecord,
    charades_classes,
    check_files,
    folder_classes,
    read_charades,
    read_class_file,
    read_csv,
    read_folder,
    read_hmdb51,
    read_kinetics,
    read_ssv1,
    read_ssv2,
    read_ucf101,
    ssv2_classes,
)
from .labels import LABEL_SETS, load_labels
from .transforms import ClipTransform
from .video import (
    VideoError,
    clip_starts,
    iter_frames,
    list_frame_files,
    open_video,
    read_frame_folder,
)

Mode = Literal["train", "test", "stream"]
RECORD_KINDS = ("csv", "folder", "kinetics", "ssv2", "ssv1", "charades", "hmdb51", "ucf101")
# Errors that mean "this video cannot be used" (anything else is a bug and propagates).
DECODE_ERRORS = (VideoError, av.error.FFmpegError, OSError, RuntimeError)
# Streaming transforms this many frames at a time (bounds memory on long videos).
_STREAM_CHUNK = 32
# Training tries this many videos before giving up on an item.
RESAMPLE_ATTEMPTS = 10


@dataclass(frozen=True)
class Failure:
    """A dataset item whose video could not be used."""

    index: int
    path: str
    reason: str


def collate_clips(items: Sequence[dict[str, Any] | Failure]) -> dict[str, Any]:
    """Stack the good items; failures go to ``batch["failures"]`` as ``[(path, reason)]``.

    Items that replaced a failed video (training resamples) bring their ``"failures"``
    along. A batch whose items all failed holds only ``"failures"``.
    """
    good = [item for item in items if not isinstance(item, Failure)]
    batch: dict[str, Any] = {
        "failures": [(item.path, item.reason) for item in items if isinstance(item, Failure)]
    }
    for item in good:
        batch["failures"].extend(item.get("failures", ()))
    if not good:
        return batch
    for key in good[0]:
        if key == "failures":
            continue
        values = [item[key] for item in good]
        if isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot batch {key!r} of different shapes {sorted(shapes)}; "
                                 "use batch_size=1 for whole-video streaming")
            batch[key] = torch.stack(values)
        else:
            batch[key] = torch.tensor(values, dtype=torch.int64)
    return batch


class VideoDataset(Dataset):
    """Clips of the videos in ``records``.

    ``mode="train"``: one random clip per video (``len`` = videos). ``"test"``:
    ``num_clips`` uniformly spaced clips x ``num_crops`` (1: centre, 3: PySlowFast's 3
    crops) per video; item ``i`` is video ``i // views``, view ``i % views`` = clip *
    num_crops + crop. ``"stream"``: the whole video, every frame (at ``fps`` or every
    ``stride``-th). Frames are sampled at ``fps`` (by time) or, with ``fps=None``, every
    ``stride``-th decoded frame. Randomness is seeded per item from (seed, epoch, index).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        num_frames: int,
        transform: ClipTransform,
        num_classes: int,
        fps: float | None = None,
        stride: int = 1,
        mode: Mode = "train",
        num_clips: int = 1,
        num_crops: int = 1,
        multi_label: bool = False,
        seed: int = 0,
        strict: bool = False,
    ) -> None:
        if mode not in ("train", "test", "stream"):
            raise ValueError(f"unknown mode {mode!r}; expected 'train', 'test' or 'stream'")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre) or 3 (PySlowFast 3-crop), got "
                             f"{num_crops}")
        if num_clips < 1 or num_frames < 1:
            raise ValueError(f"num_clips and num_frames must be >= 1, got {num_clips}, "
                             f"{num_frames}")
        if fps is not None and stride != 1:
            raise ValueError(f"give either fps ({fps}) or stride ({stride}), not both")
        if mode != "train" and transform.train:
            raise ValueError(f"mode={mode!r} needs an eval transform (train=False)")
        self.records = check_files(records, strict=strict)
        for record in self.records:
            _check_label(record, num_classes, multi_label)
            if record.frames_dir and fps is not None:
                raise ValueError(f"{record.path}: frame folders are sampled by stride; "
                                 "set fps=None")
        self.num_frames = num_frames
        self.transform = transform
        self.num_classes = num_classes
        self.fps = fps
        self.stride = stride
        self.mode = mode
        self.num_clips = num_clips if mode == "test" else 1
        self.num_crops = num_crops if mode == "test" else 1
        self.multi_label = multi_label
        self.seed = seed
        self.epoch = 0
        self.has_segments = any(record.segments for record in self.records)
        self._folder_lengths: dict[str, int] = {}

    @property
    def views(self) -> int:
        """Test views per video (clips x crops); 1 outside test mode."""
        return self.num_clips * self.num_crops

    def __len__(self) -> int:
        return len(self.records) * self.views

    def set_epoch(self, epoch: int) -> None:
        """Reseed the per-item randomness for ``epoch``."""
        self.epoch = epoch

    def generator(self, index: int) -> torch.Generator:
        """The random generator of item ``index`` in the current epoch."""
        return torch.Generator().manual_seed(
            self.seed * 1_000_003 + self.epoch * 100_003 + index
        )

    def __getitem__(self, item: int | tuple[int, int, int]) -> dict[str, Any] | Failure:
        """Item ``index``, or ``(index, num_frames, size)`` overriding clip length and crop
        size (Multigrid; frames still sampled at the configured fps/stride)."""
        index, num_frames, size = item if isinstance(item, tuple) else (item, None, None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        video_index, view = divmod(index, self.views)
        failures: list[tuple[str, str]] = []
        for attempt in range(RESAMPLE_ATTEMPTS if self.mode == "train" else 1):
            # Training replaces an unusable video by another one (deterministically), so
            # batches keep their size; the failure still travels with the item.
            if attempt:
                video_index = (video_index + attempt * 7919) % len(self.records)
            record = self.records[video_index]
            try:
                sample = self._load(record, index, view, num_frames or self.num_frames, size)
                break
            except DECODE_ERRORS as err:
                reason = (err.problem if isinstance(err, VideoError)
                          else f"{type(err).__name__}: {err}")
                failures.append((record.path, reason))
        else:
            return Failure(video_index, *failures[0])
        sample["label"] = self._label(record)
        sample["index"] = video_index
        sample["view"] = view
        if failures:
            sample["failures"] = failures
        return sample

    def _load(
        self, record: VideoRecord, index: int, view: int, num_frames: int, size: int | None
    ) -> dict[str, Any]:
        if self.mode == "stream":
            return self._stream(record, size)
        if self.mode == "train":
            generator = self.generator(index)
            frames = self._read(record, num_frames, "random", 0, generator)
            return {"video": self.transform(frames, size=size, generator=generator)}
        clip, crop = divmod(view, self.num_crops)
        frames = self._read(record, num_frames, "uniform", clip, None)
        crop_index = crop if self.num_crops == 3 else None
        return {"video": self.transform(frames, size=size, crop=crop_index)}

    def _read(
        self,
        record: VideoRecord,
        num_frames: int,
        mode: Literal["random", "uniform"],
        clip: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """uint8 [T, H, W, 3]: clip ``clip`` of ``num_clips`` (uniform) or a random one."""
        if record.frames_dir:
            span = (num_frames - 1) * self.stride + 1
            starts = clip_starts(self._folder_length(record), span, mode=mode,
                                 num_clips=self.num_clips, generator=generator)
            start = starts[clip] if mode == "uniform" else starts[0]
            return read_frame_folder(record.path, start_index=round(start),
                                     num_frames=num_frames, stride=self.stride)
        with open_video(record.path) as video:
            info = video.info
            duration = num_frames / self.fps if self.fps else num_frames * self.stride / info.fps
            starts = clip_starts(info.duration, duration, mode=mode, num_clips=self.num_clips,
                                 generator=generator)
            start = starts[clip] if mode == "uniform" else starts[0]
            return video.clip(start=start, num_frames=num_frames, fps=self.fps,
                              stride=self.stride)

    def _folder_length(self, record: VideoRecord) -> int:
        if record.num_frames is not None:
            return record.num_frames
        if record.path not in self._folder_lengths:
            self._folder_lengths[record.path] = len(list_frame_files(record.path))
        return self._folder_lengths[record.path]

    def _stream(self, record: VideoRecord, size: int | None) -> dict[str, Any]:
        """The whole video, transformed in chunks of frames, with per-frame labels."""
        if record.frames_dir:
            length = self._folder_length(record)
            frames = read_frame_folder(record.path, start_index=0,
                                       num_frames=-(-length // self.stride), stride=self.stride)
            return {"video": self.transform(frames, size=size)}
        chunks, times, pending = [], [], []
        for time, frame in iter_frames(record.path, fps=self.fps, stride=self.stride):
            times.append(time)
            pending.append(frame)
            if len(pending) == _STREAM_CHUNK:
                chunks.append(self.transform(torch.from_numpy(np.stack(pending)), size=size))
                pending = []
        if pending:
            chunks.append(self.transform(torch.from_numpy(np.stack(pending)), size=size))
        if not chunks:
            raise VideoError(record.path, "no decodable video frame")
        sample: dict[str, Any] = {"video": torch.cat(chunks, dim=1)}
        if self.has_segments:
            sample["frame_labels"] = frame_labels(record.segments, times, self.num_classes)
        return sample

    def video_label(self, video_index: int) -> torch.Tensor:
        """Label of video ``video_index``: int64 scalar, or multi-hot ``[C]``."""
        return self._label(self.records[video_index])

    def _label(self, record: VideoRecord) -> torch.Tensor:
        if not self.multi_label:
            return torch.tensor(record.label, dtype=torch.int64)
        target = torch.zeros(self.num_classes)
        labels = record.label if isinstance(record.label, tuple) else (record.label,)
        target[list(labels)] = 1.0
        return target


def frame_labels(
    segments: Sequence[tuple[int, float, float]], times: Sequence[float], num_classes: int
) -> torch.Tensor:
    """float32 [T, num_classes]: frame ``t`` is active for class ``c`` when a segment of
    ``c`` covers ``times[t]`` (ends included)."""
    labels = torch.zeros(len(times), num_classes)
    time = torch.tensor(times, dtype=torch.float64)
    for label, start, end in segments:
        labels[(time >= start) & (time <= end), label] = 1.0
    return labels


def _check_label(record: VideoRecord, num_classes: int, multi_label: bool) -> None:
    if isinstance(record.label, tuple) and not multi_label:
        raise ValueError(f"{record.path}: label {record.label} has several classes; "
                         "set multi_label=True")
    labels = record.label if isinstance(record.label, tuple) else (record.label,)
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        raise ValueError(f"{record.path}: label {bad} outside [0, {num_classes})")


def resolve_labels(labels: str | Path | Sequence[str] | None) -> tuple[str, ...] | None:
    """A class list from a shipped label-set name, a file (one class per line, or
    ``index name``), or a list of names."""
    if labels is None:
        return None
    if isinstance(labels, str) and labels in LABEL_SETS:
        return load_labels(labels)
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: label file not found (or use one of the label "
                                    f"sets {LABEL_SETS})")
        return ssv2_classes(path) if path.suffix == ".json" else read_class_file(path)
    return tuple(labels)


def build_records(
    kind: str,
    *,
    root: str | Path,
    annotation: str | Path | None = None,
    labels: str | Path | Sequence[str] | None = None,
    split: int = 1,
    train: bool = True,
) -> tuple[list[VideoRecord], tuple[str, ...]]:
    """Records and class names of a dataset.

    ``annotation``: the annotation file (csv, kinetics, ssv2, ssv1, charades) or the
    folder of split files (hmdb51, ucf101); ``labels``: a label-set name, a class file or
    a list (defaults: kinetics400, something_something_v2, hmdb51, UCF's classInd.txt
    or ucf101, Charades codes, folder names). ``split``/``train`` pick the HMDB/UCF split.
    """
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {RECORD_KINDS}")
    root = Path(root)
    if kind == "charades" and isinstance(labels, (str, Path)):
        classes = charades_classes(labels)
    else:
        classes = resolve_labels(labels)
    if kind == "folder":
        classes = classes or folder_classes(root)
        return read_folder(root, classes=classes), classes
    if annotation is None:
        what = "split-file folder" if kind in ("hmdb51", "ucf101") else "annotation file"
        raise ValueError(f"dataset kind {kind!r} needs annotation= (the {what})")
    annotation = Path(annotation)
    if not annotation.exists():
        raise FileNotFoundError(f"{annotation}: annotation not found")
    if kind == "csv":
        records = read_csv(annotation, root=root, classes=classes)
        if classes is None:
            classes = tuple(str(i) for i in range(max((r.label for r in records), default=-1) + 1))
        return records, classes
    if kind == "kinetics":
        classes = classes or load_labels("kinetics400")
        return read_kinetics(annotation, root=root, classes=classes), classes
    if kind == "ssv2":
        classes = classes or load_labels("something_something_v2")
        return read_ssv2(annotation, root=root, classes=classes), classes
    if kind == "ssv1":
        if classes is None:
            raise ValueError("dataset kind 'ssv1' needs labels= (something-something-v1-"
                             "labels.csv, one class per line)")
        return read_ssv1(annotation, root=root, classes=classes), classes
    if kind == "charades":
        classes = classes or charades_classes()
        return read_charades(annotation, root=root), classes
    if kind == "hmdb51":
        classes = classes or load_labels("hmdb51")
        return read_hmdb51(annotation, root=root, classes=classes, split=split,
                           train=train), classes
    class_ind = annotation / "classInd.txt"
    classes = classes or (read_class_file(class_ind) if class_ind.is_file()
                          else load_labels("ucf101"))
    return read_ucf101(annotation, root=root, classes=classes, split=split,
                       train=train), classes
