"""Frame-rate conversion for streams, one frame at a time (no look-ahead buffer)."""

from __future__ import annotations

from typing import Generic, TypeVar

Frame = TypeVar("Frame")
# Two times closer than this (seconds) are the same instant (as in vidnets.data.video).
_TIME_EPS = 1e-6


class FrameSampler(Generic[Frame]):
    """Picks the model's frames from a source's frames as they arrive.

    With ``fps``: model frame ``k`` is at stream time ``k / fps`` and takes the latest
    source frame shown at or before it, the rule of ``read_clip`` / ``iter_frames``, so a
    source frame is known to serve a time only once the next one arrives (one source
    frame of latency). A jump of more than ``max_gap`` seconds between source times (a
    live stream joined late, a camera's clock reset) restarts the clock instead of
    emitting a frame for every missed time. With ``fps=None``: every ``stride``-th
    source frame, at its own time.
    """

    def __init__(self, fps: float | None, stride: int = 1, *, max_gap: float = 10.0) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.fps = fps
        self.stride = stride
        self.max_gap = max_gap
        self._start = 0.0  # source time of model frame 0
        self._count = 0  # model frames emitted (fps) or source frames seen (stride)
        self._previous: tuple[float, Frame] | None = None

    def push(self, time: float, frame: Frame) -> list[tuple[float, Frame]]:
        """Source ``frame`` shown from ``time`` (seconds); returns the model frames now
        decided, as ``(stream time, frame)``."""
        if self.fps is None:
            self._count += 1
            return [(time, frame)] if (self._count - 1) % self.stride == 0 else []
        last_time = self._start if self._previous is None else self._previous[0]
        if abs(time - last_time) > self.max_gap:
            self._start = time - self._count / self.fps
        decided = []
        while time > self._target() + _TIME_EPS:
            decided.append((self._count / self.fps, (self._previous or (time, frame))[1]))
            self._count += 1
        self._previous = (time, frame)
        return decided

    def finish(self, frame_duration: float) -> list[tuple[float, Frame]]:
        """At the end of the stream: the model frames the last source frame serves until
        it stops being shown (``frame_duration`` seconds after its time)."""
        if self.fps is None or self._previous is None:
            return []
        end, frame = self._previous[0] + frame_duration, self._previous[1]
        decided = []
        while self._target() < end - _TIME_EPS:
            decided.append((self._count / self.fps, frame))
            self._count += 1
        return decided

    def _target(self) -> float:
        return self._start + self._count / self.fps
