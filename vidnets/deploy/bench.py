"""Latency, throughput and peak memory of a model on one runtime (``vidnets benchmark``)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..models.base import VideoClassifier
from .backends import create_streamer, resolve_backend
from .fold import deploy_model


@dataclass(frozen=True)
class BenchResult:
    """Per-call latency (ms) over ``calls`` timed calls of ``frames`` frames x ``batch``."""

    mode: str
    backend: str
    threads: int
    batch: int
    frames: int
    height: int
    width: int
    calls: int
    median_ms: float
    p90_ms: float
    peak_rss_mb: float

    @property
    def per_second(self) -> float:
        """Clips per second (clip mode) or frames per second (streaming)."""
        return self.batch * 1000.0 / self.median_ms

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_second": self.per_second}

    def describe(self) -> str:
        unit = "frames/s" if self.mode == "streaming" else "clips/s"
        return (f"{self.mode} {self.backend}, {self.threads} thread(s), batch {self.batch}, "
                f"{self.frames}x{self.height}x{self.width}: median {self.median_ms:.2f} ms, "
                f"p90 {self.p90_ms:.2f} ms, {self.per_second:.1f} {unit}, "
                f"peak RSS {self.peak_rss_mb:.0f} MB")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_calls(fn: Callable[[], object], calls: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``calls`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _result(mode: str, backend: str, threads: int, batch: int, frames: int, height: int,
            width: int, times: list[float]) -> BenchResult:
    ms = sorted(t * 1000 for t in times)
    return BenchResult(mode, backend, threads, batch, frames, height, width, len(ms),
                       statistics.median(ms), ms[min(len(ms) - 1, int(0.9 * len(ms)))],
                       peak_rss_mb())


def benchmark_stream(model: VideoClassifier, *, backend: str = "auto", threads: int = 1,
                     height: int, width: int, calls: int = 200, warmup: int = 10
                     ) -> BenchResult:
    """Per-frame latency of streaming one frame per call (state carried, batch 1)."""
    torch.set_num_threads(threads)
    backend = resolve_backend(backend)
    streamer = create_streamer(model, backend, height, width, threads=threads)
    frame = torch.rand(1, 3, 1, height, width)
    times = time_calls(lambda: streamer(frame), calls, warmup)
    return _result("streaming", backend, threads, 1, 1, height, width, times)


def benchmark_clip(model: VideoClassifier, *, threads: int = 1, batch: int = 1,
                   frames: int, height: int, width: int, calls: int = 10, warmup: int = 2
                   ) -> BenchResult:
    """Latency of whole-clip inference (the deployed model in eager PyTorch)."""
    torch.set_num_threads(threads)
    deployed = deploy_model(model)
    clip = torch.rand(batch, 3, frames, height, width)

    def run() -> None:
        with torch.inference_mode():
            deployed(clip)

    times = time_calls(run, calls, warmup)
    return _result("clip", "eager", threads, batch, frames, height, width, times)
