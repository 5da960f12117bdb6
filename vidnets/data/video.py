"""Video decoding with PyAV: probe, seek-and-decode clips, sample by time or by stride.

Every function returns RGB uint8 frames, ``[T, H, W, 3]`` tensors (or ``[H, W, 3]`` arrays
when streaming). Times are seconds from the start of the video stream.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch
from PIL import Image

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Frames held back to put timestamps in order: AVI files with packed B-frames give the
# decoded frames (which come out in display order) swapped timestamps, e.g. 1, 2, 4, 3.
_REORDER_WINDOW = 3
# Two times closer than this (seconds) are the same instant.
_TIME_EPS = 1e-6


class VideoError(ValueError):
    """A video that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


@dataclass(frozen=True)
class VideoInfo:
    """Metadata of a video's first video stream."""

    path: str
    fps: float
    duration: float
    num_frames: int
    width: int
    height: int
    has_audio: bool


def _stream_info(path: Path, container: av.container.InputContainer, stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    elif stream.frames and fps:
        duration = stream.frames / fps
    num_frames = stream.frames or round(duration * fps)
    if fps <= 0:
        fps = num_frames / duration if duration > 0 else 0.0
    if fps <= 0:
        raise VideoError(path, "video stream has no frame rate and no duration")
    return VideoInfo(
        path=str(path),
        fps=fps,
        duration=duration,
        num_frames=int(num_frames),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        has_audio=bool(container.streams.audio),
    )


class VideoReader:
    """An open video: metadata plus clip reading. Made by :func:`open_video`."""

    def __init__(self, path: Path, container: av.container.InputContainer, stream) -> None:
        self.path = path
        self._container = container
        self._stream = stream
        self.info = _stream_info(path, container, stream)
        self._origin = stream.start_time or 0
        self.frame_duration = 1.0 / self.info.fps
        self._frame_ticks = max(1, round(self.frame_duration / stream.time_base))

    def frames(self, start: float = 0.0) -> Iterator[tuple[float, av.VideoFrame]]:
        """``(time, frame)`` in display order, from the keyframe at or before ``start``."""
        if start > 0:
            offset = self._origin + int(start / self._stream.time_base)
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
            timed = self._timed()
            first = next(timed, None)
            if first is not None and first[0] <= start + _TIME_EPS:
                yield first
                yield from timed
                return
            timed.close()
            # The demuxer landed past `start` (imprecise index): decode from the beginning.
            self._container.seek(self._origin, stream=self._stream, backward=True)
        yield from self._timed()

    def _timed(self) -> Iterator[tuple[float, av.VideoFrame]]:
        """Decode with timestamps sorted over a small window (frames are in display order)."""
        held: list[av.VideoFrame] = []
        stamps: list[int] = []
        previous = None
        try:
            for frame in self._container.decode(self._stream):
                stamp = frame.pts if frame.pts is not None else frame.dts
                if stamp is None:  # no timestamp at all: one frame after the previous
                    stamp = self._origin if previous is None else previous + self._frame_ticks
                previous = stamp
                heapq.heappush(stamps, stamp)
                held.append(frame)
                if len(held) > _REORDER_WINDOW:
                    yield self._seconds(heapq.heappop(stamps)), held.pop(0)
        except (av.error.FFmpegError, OSError) as err:
            raise VideoError(self.path, f"decoding failed: {err}") from err
        while held:
            yield self._seconds(heapq.heappop(stamps)), held.pop(0)

    def _seconds(self, stamp: int) -> float:
        return float((stamp - self._origin) * self._stream.time_base)

    def clip(
        self, *, start: float, num_frames: int, fps: float | None = None, stride: int = 1
    ) -> torch.Tensor:
        """``num_frames`` frames from ``start`` s as uint8 ``[T, H, W, 3]`` (see read_clip)."""
        _check_sampling(num_frames, fps, stride)
        start = max(0.0, start)
        last: list[av.VideoFrame] = []
        frames = _remember_last(self.frames(start), last)
        if fps is None:
            picked = _every_nth(frames, start, stride, num_frames)
        else:
            picked = _sample_by_time(frames, start, fps, num_frames, self.frame_duration)
        chosen = [frame for _, frame in picked]
        arrays = _to_arrays(chosen)
        where = f" from {start:.2f} s of a {self.info.duration:.2f} s video"
        if len(arrays) < num_frames and chosen and last[0] is not chosen[-1]:
            pad = last[0].to_ndarray(format="rgb24")
            return _pad_or_fail(arrays, num_frames, self.path, pad, where=where)
        return _pad_or_fail(arrays, num_frames, self.path, where=where)


@contextmanager
def open_video(path: str | Path) -> Iterator[VideoReader]:
    """Open a video file for reading; raises :class:`VideoError` when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "file not found")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(path, f"cannot open as a video: {err}") from err
    with container:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise VideoError(path, f"no video stream (streams: {kinds})")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield VideoReader(path, container, stream)


def probe_video(path: str | Path) -> VideoInfo:
    """Metadata of a video; decodes its first frame to prove it is decodable."""
    with open_video(path) as video:
        if next(video.frames(), None) is None:
            raise VideoError(path, "no decodable video frame")
        return video.info


def read_clip(
    path: str | Path,
    *,
    start: float,
    num_frames: int,
    fps: float | None = None,
    stride: int = 1,
) -> torch.Tensor:
    """Decode a clip as uint8 ``[T, H, W, 3]`` RGB, seeking near ``start`` (seconds).

    With ``fps``, frame ``k`` is the latest frame shown at time ``start + k / fps`` (right
    for variable frame rate); without, every ``stride``-th frame from the first frame at
    or after ``start``. Decoding stops as soon as the clip is complete. A video that ends
    early repeats its last frame if at least half of the clip was decoded, else raises
    :class:`VideoError`.
    """
    with open_video(path) as video:
        return video.clip(start=start, num_frames=num_frames, fps=fps, stride=stride)


def clip_starts(
    duration: float,
    clip_duration: float,
    *,
    mode: Literal["random", "uniform"],
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Clip start times: random in ``[0, duration - clip_duration]``, or ``num_clips``
    evenly spaced (PySlowFast: clip ``i`` starts at ``i * span / (num_clips - 1)``; a
    single clip is centred)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    span = max(0.0, duration - clip_duration)
    if mode == "random":
        return [span * float(u) for u in torch.rand(num_clips, generator=generator)]
    if mode == "uniform":
        if num_clips == 1:
            return [span / 2]
        return [span * i / (num_clips - 1) for i in range(num_clips)]
    raise ValueError(f"unknown clip mode {mode!r}; expected 'random' or 'uniform'")


def iter_frames(
    path: str | Path, *, fps: float | None = None, stride: int = 1
) -> Iterator[tuple[float, np.ndarray]]:
    """Stream a whole video as ``(time, [H, W, 3] uint8)``: every ``stride``-th frame, or
    resampled to ``fps`` (the latest frame shown at each time ``k / fps``)."""
    _check_sampling(1, fps, stride)
    with open_video(path) as video:
        frames = video.frames()
        if fps is None:
            picked = _every_nth(frames, 0.0, stride, None)
        else:
            picked = _sample_by_time(frames, 0.0, fps, None, video.frame_duration)
        cache: tuple[av.VideoFrame | None, np.ndarray | None] = (None, None)
        for time, frame in picked:
            if frame is not cache[0]:
                cache = (frame, frame.to_ndarray(format="rgb24"))
            yield time, cache[1]


def read_video(
    path: str | Path, *, fps: float | None = None, max_frames: int | None = None
) -> torch.Tensor:
    """The whole video (or its first ``max_frames``) as uint8 ``[T, H, W, 3]``."""
    arrays = []
    for _, array in iter_frames(path, fps=fps):
        if max_frames is not None and len(arrays) >= max_frames:
            break
        arrays.append(array)
    if not arrays:
        raise VideoError(path, "no decodable video frame")
    return torch.from_numpy(np.stack(arrays))


def list_frame_files(directory: str | Path) -> list[Path]:
    """Sorted image files of a frame folder (``00001.jpg``, ``00002.jpg``, ...)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise VideoError(directory, "frame folder not found")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
    if not files:
        raise VideoError(directory, f"frame folder holds no {'/'.join(FRAME_EXTENSIONS)} files")
    return files


def read_frame_folder(
    directory: str | Path, *, start_index: int, num_frames: int, stride: int = 1
) -> torch.Tensor:
    """Frames ``start_index, start_index + stride, ...`` (0-based, in name order) of a JPEG
    frame folder (Something-Something V1) as uint8 ``[T, H, W, 3]``; same too-short rule
    as :func:`read_clip`."""
    _check_sampling(num_frames, None, stride)
    files = list_frame_files(directory)
    picked = files[max(0, start_index) :: stride][:num_frames]
    arrays = [_read_image(file) for file in picked]
    if len(arrays) < num_frames and picked and picked[-1] != files[-1]:
        return _pad_or_fail(arrays, num_frames, directory, _read_image(files[-1]))
    return _pad_or_fail(arrays, num_frames, directory)


def _read_image(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as err:
        raise VideoError(file, f"cannot decode frame image: {err}") from err


def _check_sampling(num_frames: int, fps: float | None, stride: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if fps is not None and (fps <= 0 or not math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if fps is not None and stride != 1:
        raise ValueError(f"give either fps ({fps}) or stride ({stride}), not both")


def _every_nth(
    frames: Iterator[tuple[float, av.VideoFrame]], start: float, stride: int, count: int | None
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Every ``stride``-th frame from the first one at or after ``start``."""
    taken = seen = 0
    for time, frame in frames:
        if time < start - _TIME_EPS:
            continue
        if seen % stride == 0:
            yield time, frame
            taken += 1
            if taken == count:
                return
        seen += 1


def _sample_by_time(
    frames: Iterator[tuple[float, av.VideoFrame]],
    start: float,
    fps: float,
    count: int | None,
    frame_duration: float,
) -> Iterator[tuple[float, av.VideoFrame]]:
    """For targets ``start + k / fps``: the latest frame with time <= target (the first
    frame for targets before it). Stops at ``count`` targets or when a target falls
    past the last frame's display interval."""
    k = 0
    previous: tuple[float, av.VideoFrame] | None = None
    for time, frame in frames:
        while count is None or k < count:
            target = start + k / fps
            if time <= target + _TIME_EPS:
                break  # this frame or a later one serves the target
            yield target, (previous or (time, frame))[1]
            k += 1
        if count is not None and k >= count:
            return
        previous = (time, frame)
    if previous is None:
        return
    end = previous[0] + frame_duration
    while count is None or k < count:
        target = start + k / fps
        if target >= end - _TIME_EPS:
            return
        yield target, previous[1]
        k += 1


def _remember_last(
    frames: Iterator[tuple[float, av.VideoFrame]], last: list[av.VideoFrame]
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Pass frames through, keeping the latest one in ``last[0]`` (the end-of-video pad)."""
    for item in frames:
        last[:] = [item[1]]
        yield item


def _to_arrays(frames: list[av.VideoFrame]) -> list[np.ndarray]:
    """RGB arrays, converting a frame repeated by time sampling only once."""
    arrays: list[np.ndarray] = []
    last = None
    for frame in frames:
        if frame is not last:
            arrays.append(frame.to_ndarray(format="rgb24"))
            last = frame
        else:
            arrays.append(arrays[-1])
    return arrays


def _pad_or_fail(
    arrays: list[np.ndarray],
    num_frames: int,
    path: str | Path,
    pad: np.ndarray | None = None,
    *,
    where: str = "",
) -> torch.Tensor:
    """Fill up to ``num_frames`` with ``pad`` (default: the last array) if at least half
    were read, else fail (``where`` says which part of the video was read)."""
    if 2 * len(arrays) < num_frames:
        raise VideoError(
            path, f"too short: {len(arrays)} frames{where}, clip needs {num_frames}"
        )
    arrays = arrays + [arrays[-1] if pad is None else pad] * (num_frames - len(arrays))
    try:
        return torch.from_numpy(np.stack(arrays))
    except ValueError as err:
        shapes = sorted({a.shape for a in arrays})
        raise VideoError(path, f"frames change size within the clip: {shapes}") from err


__all__ = [
    "FRAME_EXTENSIONS",
    "VideoError",
    "VideoInfo",
    "VideoReader",
    "clip_starts",
    "iter_frames",
    "list_frame_files",
    "open_video",
    "probe_video",
    "read_clip",
    "read_frame_folder",
    "read_video",
]
