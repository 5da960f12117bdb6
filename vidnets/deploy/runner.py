"""The streaming runner: decode a source frame by frame, sample the model's frames by
time, feed them to a streamer and yield per-frame probabilities. Nothing accumulates:
memory is the same after ten seconds or ten hours."""

from __future__ import annotations

import time as clock
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np
import torch

from ..data.transforms import ClipTransform
from ..data.video import VideoError
from .preprocess import Preprocessing
from .sampling import FrameSampler
from .sources import SourceDroppedError, SourceOpenError, display_name, open_source, redact


class StreamerLike(Protocol):
    """What the runner drives (``vidnets.models.Streamer`` or an exported backend)."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[1, 3, t, H, W]`` float -> logits ``[1, C]`` of everything so far."""
        ...

    def reset(self) -> None:
        """Forget the previous video."""
        ...


@dataclass(frozen=True)
class FramePrediction:
    """The model's output after its ``index``-th frame, at stream ``time`` seconds."""

    index: int
    time: float
    probabilities: torch.Tensor  # [C], softmax


@dataclass(frozen=True)
class StreamStep:
    """One decoded source ``frame`` shown from ``time``, with the model frames decided on
    its arrival; the last step of a stream has no frame (the final model frames)."""

    time: float | None
    frame: av.VideoFrame | None
    predictions: tuple[FramePrediction, ...]


class _Pacer:
    """Sleeps so source times are met in wall-clock time (resyncs after long gaps)."""

    def __init__(self, max_gap: float) -> None:
        self.max_gap = max_gap
        self._origin: float | None = None  # wall-clock time of source time 0

    def wait(self, time: float) -> None:
        delay = None if self._origin is None else self._origin + time - clock.monotonic()
        if delay is None or delay > self.max_gap:
            self._origin = clock.monotonic() - time
        elif delay > 0:
            clock.sleep(delay)


class _Model:
    """Model frames (uint8 ``[H, W, 3]`` arrays) -> :class:`FramePrediction`."""

    def __init__(self, streamer: StreamerLike, transform: ClipTransform) -> None:
        self.streamer = streamer
        self.transform = transform
        self.count = 0
        self._cache: tuple[av.VideoFrame | None, np.ndarray | None] = (None, None)

    def predict(self, time: float, frame: av.VideoFrame) -> FramePrediction:
        if frame is not self._cache[0]:  # a frame serving several times converts once
            self._cache = (frame, frame.to_ndarray(format="rgb24"))
        clip = self.transform(torch.from_numpy(self._cache[1])[None])[None]  # [1, 3, 1, S, S]
        with torch.inference_mode():
            logits = self.streamer(clip)
        self.count += 1
        return FramePrediction(self.count - 1, time, logits[0].float().softmax(-1))


def run_stream(source: str, streamer: StreamerLike, preprocessing: Preprocessing, *,
               realtime: bool = False, input_format: str | None = None,
               timeout: float = 10.0, max_gap: float = 10.0) -> Iterator[StreamStep]:
    """Stream ``source`` (file, ``/dev/video*`` device or URL) through ``streamer``.

    Yields a :class:`StreamStep` per decoded source frame, then a final one. Frames are
    resized and centre-cropped by ``preprocessing``'s eval transform and sampled at its
    ``fps`` (or ``stride``). ``realtime``: sleep to the source's frame times (for files).
    Raises :class:`SourceOpenError` when the source cannot be opened or gives no frame,
    :class:`SourceDroppedError` when it fails later, after yielding everything decoded
    before the failure.
    """
    sampler: FrameSampler[av.VideoFrame] = FrameSampler(preprocessing.fps,
                                                        preprocessing.stride, max_gap=max_gap)
    model = _Model(streamer, preprocessing.transform())
    pacer = _Pacer(max_gap) if realtime else None
    streamer.reset()
    decoded = 0
    with open_source(source, input_format=input_format, timeout=timeout) as reader:
        try:
            for time, frame in reader.frames():
                if pacer is not None:
                    pacer.wait(time)
                decoded += 1
                predictions = tuple(model.predict(t, f) for t, f in sampler.push(time, frame))
                yield StreamStep(time, frame, predictions)
        except VideoError as err:
            problem = redact(err.problem, source)
            if not decoded:
                raise SourceOpenError(display_name(source), problem) from err
            yield _final(model, sampler, reader.frame_duration)
            raise SourceDroppedError(display_name(source),
                                     f"stream dropped after {decoded} frames: {problem}") from err
        if not decoded:
            raise SourceOpenError(display_name(source), "no decodable video frame")
        yield _final(model, sampler, reader.frame_duration)


def _final(model: _Model, sampler: FrameSampler, frame_duration: float) -> StreamStep:
    """The model frames the last source frame serves until the stream's end."""
    predictions = tuple(model.predict(t, f) for t, f in sampler.finish(frame_duration))
    return StreamStep(None, None, predictions)
