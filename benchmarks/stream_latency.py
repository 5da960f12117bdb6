"""Per-frame streaming latency of vidnets stream models (eager PyTorch), and the cost
of the matching clip model on a whole clip.

One frame per ``stream_step`` call, batch 1, native resolution, state carried between
calls; median and p90 over the timed frames, for 1 and 2 threads. ``--clip`` also
times the non-causal model on its canonical clip and prints its cost per frame.

    python benchmarks/stream_latency.py [--models movinet_a0_stream ...] [--threads 1 2]
    python benchmarks/stream_latency.py --models x3d_m_stream vov3d_m_stream --clip

The official TFLite float32 MoViNets (seed README, x86 Xeon, 1 core) take 16 / 33 / 66 ms
per frame for A0 / A1 / A2; the last column is vidnets / that figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vidnets

SEED_TFLITE_MS = {"movinet_a0_stream": 16.0, "movinet_a1_stream": 33.0,
                  "movinet_a2_stream": 66.0}


def clip_model_name(stream_name: str) -> str:
    """``x3d_m_stream`` -> ``x3d_m``; ``movinet_a0_stream`` -> ``movinet_a0_base``."""
    base = stream_name.removesuffix("_stream")
    return f"{base}_base" if base.startswith("movinet") else base


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def stream_latency(name: str, frames: int, warmup: int) -> tuple[float, float]:
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
    return percentiles(times)


def clip_latency(name: str, repeats: int) -> tuple[float, int]:
    """Median ms for one canonical clip, and its frame count."""
    cfg = vidnets.model_config(name)
    model = vidnets.create_model(name)
    clip = torch.rand(1, *cfg.input_shape)
    times = []
    with torch.inference_mode():
        model(clip)
        for _ in range(repeats):
            start = time.perf_counter()
            model(clip)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), cfg.frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SEED_TFLITE_MS))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--clip", action="store_true", help="also time the clip model")
    parser.add_argument("--clip-repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, eager, batch 1, one frame per stream_step call")
    header = f"{'model':<20}{'threads':>8}{'median ms':>11}{'p90 ms':>9}{'vs seed TFLite':>16}"
    if args.clip:
        header += f"  {'clip model':<16}{'ms/clip':>10}{'ms/frame':>10}{'stream/clip':>13}"
    print(header)
    for name in args.models:
        for threads in args.threads:
            torch.set_num_threads(threads)
            median, p90 = stream_latency(name, args.frames, args.warmup)
            seed = SEED_TFLITE_MS.get(name)
            ratio = f"{median / seed:.2f}x" if seed else "-"
            line = f"{name:<20}{threads:>8}{median:>11.2f}{p90:>9.2f}{ratio:>16}"
            if args.clip:
                base = clip_model_name(name)
                clip_ms, frames = clip_latency(base, args.clip_repeats)
                per_frame = clip_ms / frames
                line += (f"  {base:<16}{clip_ms:>10.1f}{per_frame:>10.2f}"
                         f"{median / per_frame:>12.2f}x")
            print(line)


if __name__ == "__main__":
    main()
