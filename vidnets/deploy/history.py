"""Class probabilities over time in bounded memory, however long the stream."""

from __future__ import annotations

import torch


class ProbabilityHistory:
    """Per-frame probabilities ``[C]`` kept as at most ``capacity`` points.

    Each point is the mean of ``frames_per_point`` consecutive frames (time and
    probabilities); when the buffer fills, neighbouring points merge pairwise and
    ``frames_per_point`` doubles, so the history always spans the whole stream at a
    resolution that halves as it grows. ``peak [C]`` is each class's highest probability
    in any single frame (which classes to show). Memory: ``capacity x C`` floats.
    """

    def __init__(self, num_classes: int, capacity: int = 1024) -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even number >= 2, got {capacity}")
        self.capacity = capacity
        self.frames_per_point = 1
        self.frames = 0
        self.peak = torch.zeros(num_classes)
        self._times = torch.zeros(capacity, dtype=torch.float64)
        self._probabilities = torch.zeros(capacity, num_classes)
        self._points = 0
        # running sums of the point being filled
        self._time_sum = 0.0
        self._sum = torch.zeros(num_classes)
        self._pending = 0

    def add(self, time: float, probabilities: torch.Tensor) -> None:
        """Record one frame: stream ``time`` (seconds) and ``probabilities [C]``."""
        probabilities = probabilities.detach().float().cpu()
        torch.maximum(self.peak, probabilities, out=self.peak)
        self.frames += 1
        self._time_sum += time
        self._sum += probabilities
        self._pending += 1
        if self._pending < self.frames_per_point:
            return
        self._times[self._points] = self._time_sum / self._pending
        self._probabilities[self._points] = self._sum / self._pending
        self._points += 1
        self._time_sum, self._pending = 0.0, 0
        self._sum.zero_()
        if self._points == self.capacity:
            half = self.capacity // 2
            self._times[:half] = self._times.view(half, 2).mean(1)
            self._probabilities[:half] = self._probabilities.view(half, 2, -1).mean(1)
            self._points = half
            self.frames_per_point *= 2

    def series(self, classes: list[int] | torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(times [N], probabilities [N, K])`` of the classes ``classes`` (default all),
        the partly filled last point included."""
        times, probabilities = self._times[:self._points], self._probabilities[:self._points]
        if self._pending:
            times = torch.cat([times, times.new_tensor([self._time_sum / self._pending])])
            probabilities = torch.cat([probabilities, (self._sum / self._pending)[None]])
        if classes is not None:
            probabilities = probabilities[:, classes]
        return times, probabilities

    def top_classes(self, k: int) -> list[int]:
        """The ``k`` classes with the highest peak probability, highest first."""
        return self.peak.topk(min(k, self.peak.numel())).indices.tolist()
