"""Per-frame streaming latency: vidnets runtimes vs the official TFLite float32 models.

For each MoViNet stream model (default A0, A1, A2 at their native size), one process runs
side by side, one frame per call with the state carried (batch 1): the official TFLite
float32 model in the LiteRT interpreter (XNNPACK; ``benchmarks/peers/tflite_movinet.py``
exports it from ``tf-models-official``), and vidnets on every installed backend, all with
the same weights (vidnets loads the official TF checkpoint). Rounds alternate between the
runtimes so background load affects them alike. Prints median / p90 ms per frame and the
ratio to TFLite (target <= 1.0, goal <= 0.6).

    python benchmarks/stream_speed.py [--models a0 a1 a2] [--threads 1 2] [--calls 200]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.tflite_movinet import NATIVE_SIZE, TFLiteStream, export, percentiles  # noqa: E402

from vidnets import create_model  # noqa: E402
from vidnets.deploy.backends import available_backends, create_streamer  # noqa: E402
from vidnets.deploy.bench import time_calls  # noqa: E402


def tflite_step(path: Path, threads: int, size: int) -> Callable[[], object]:
    stream = TFLiteStream(path, num_threads=threads)
    image = np.random.default_rng(0).uniform(0, 1, (1, 1, size, size, 3)).astype(np.float32)
    states = stream.init_states()

    def step() -> None:
        nonlocal states
        _, states = stream.step(image, states)

    return step


def measure(steps: dict[str, Callable[[], object]], calls: int, rounds: int = 5
            ) -> dict[str, tuple[float, float]]:
    """Median and p90 ms per call; ``calls`` split over alternating rounds."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name] += [t * 1000 for t in time_calls(step, calls // rounds, warmup=5)]
    return {name: percentiles(ms) for name, ms in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["a0", "a1", "a2"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=None,
                        help="vidnets backends (default: every installed one)")
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    backends = args.backends or available_backends()
    print("model threads runtime            median ms  p90 ms  vs TFLite")
    for model_id in args.models:
        size = NATIVE_SIZE[model_id]
        official = export(model_id, size=size)
        model = create_model(official.vidnets_name, weights=str(official.checkpoint))
        for threads in args.threads:
            torch.set_num_threads(threads)
            steps = {"tflite (official)": tflite_step(official.tflite, threads, size)}
            frame = torch.rand(1, 3, 1, size, size)
            for backend in backends:
                streamer = create_streamer(model, backend, size, size, threads=threads)
                steps[f"vidnets {backend}"] = lambda s=streamer, x=frame: s(x)
            results = measure(steps, args.calls)
            reference = results["tflite (official)"][0]
            for name, (median, p90) in results.items():
                print(f"{model_id:5} {threads:7} {name:18} {median:9.2f} {p90:7.2f} "
                      f"{median / reference:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
