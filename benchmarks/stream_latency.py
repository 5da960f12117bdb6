"""Per-frame streaming latency of vidnets MoViNet stream models (eager PyTorch).

One frame per ``stream_step`` call, batch 1, native resolution, state carried between
calls; median and p90 over the timed frames, for 1 and 2 threads.

    python benchmarks/stream_latency.py [--models a0 a1 a2] [--frames 60] [--threads 1 2]

The official TFLite float32 models (seed README, x86 Xeon, 1 core) take 16 / 33 / 66 ms
for A0 / A1 / A2; the ratios printed are vidnets / that figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vidnets

SEED_TFLITE_MS = {"a0": 16.0, "a1": 33.0, "a2": 66.0}


def measure(name: str, frames: int, warmup: int) -> tuple[float, float]:
    cfg = vidnets.model_config(name)
    model = vidnets.create_model(name)
    state = model.init_state(1, cfg.size, cfg.size)
    video = torch.rand(1, 3, frames + warmup, cfg.size, cfg.size)
    times = []
    with torch.inference_mode():
        for t in range(frames + warmup):
            start = time.perf_counter()
            _, state = model.stream_step(video[:, :, t:t + 1], state)
            if t >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["a0", "a1", "a2"])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, eager, batch 1, one frame per call")
    print(f"{'model':<20}{'threads':>8}{'median ms':>11}{'p90 ms':>9}"
          f"{'vs seed TFLite':>16}")
    for model_id in args.models:
        name = f"movinet_{model_id}_stream"
        for threads in args.threads:
            torch.set_num_threads(threads)
            median, p90 = measure(name, args.frames, args.warmup)
            ratio = median / SEED_TFLITE_MS.get(model_id, float("nan"))
            print(f"{name:<20}{threads:>8}{median:>11.2f}{p90:>9.2f}{ratio:>15.2f}x")


if __name__ == "__main__":
    main()
