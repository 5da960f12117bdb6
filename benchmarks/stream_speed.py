"""Per-frame streaming latency: vidnets runtimes vs the official TFLite float32 models.

For each MoViNet stream model (default A0, A1, A2 at their native size), one process runs
side by side, one frame per call with the state carried (batch 1): the official TFLite
float32 model in the LiteRT interpreter (XNNPACK; ``benchmarks/peers/tflite_movinet.py``
exports it from ``tf-models-official``), and vidnets on every installed backend, all with
the same weights (vidnets loads the official TF checkpoint). Rounds alternate between the
runtimes so background load affects them alike. Prints median / p90 ms per frame and the
ratio to TFLite (target <= 1.0, goal <= 0.6).

With ``--isolate`` every runtime runs in a process of its own (one per round, the
runtimes' processes alternating): with 2 threads, runtimes sharing a process compete
through their idle thread pools, and which one loses varies from run to run.

    python benchmarks/stream_speed.py [--models a0 a1 a2] [--threads 1 2] [--calls 200]
                                      [--backends litert ...] [--isolate]
"""

from __future__ import annotations

import argparse
import json
import subprocess
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


def runtime_step(model_id: str, runtime: str, threads: int) -> Callable[[], object]:
    """One streaming call of ``runtime`` (``tflite`` = the official file, else a vidnets
    backend) on ``model_id`` at its native size."""
    size = NATIVE_SIZE[model_id]
    official = export(model_id, size=size)
    torch.set_num_threads(threads)
    if runtime == "tflite":
        return tflite_step(official.tflite, threads, size)
    model = create_model(official.vidnets_name, weights=str(official.checkpoint))
    streamer = create_streamer(model, runtime, size, size, threads=threads)
    frame = torch.rand(1, 3, 1, size, size)
    return lambda: streamer(frame)


def child(model_id: str, runtime: str, threads: int, calls: int) -> None:
    """``--child``: time one runtime in this process, print the ms per call as JSON."""
    step = runtime_step(model_id, runtime, threads)
    print(json.dumps([t * 1000 for t in time_calls(step, calls, warmup=20)]))


def measure_isolated(model_id: str, runtimes: list[str], threads: int, calls: int,
                     rounds: int = 3) -> dict[str, tuple[float, float]]:
    """Median and p90 ms per call, each runtime in fresh processes, alternating."""
    times: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    for _ in range(rounds):
        for runtime in runtimes:
            out = subprocess.run([sys.executable, __file__, "--child", model_id, runtime,
                                  str(threads), str(calls // rounds)],
                                 check=True, capture_output=True, text=True).stdout
            times[runtime] += json.loads(out.strip().splitlines()[-1])
    return {runtime: percentiles(ms) for runtime, ms in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["a0", "a1", "a2"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=None,
                        help="vidnets backends (default: every installed one)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--isolate", action="store_true",
                        help="each runtime in processes of its own")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "RUNTIME", "THREADS", "CALLS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model_id, runtime, threads, calls = args.child
        return child(model_id, runtime, int(threads), int(calls))
    runtimes = ["tflite", *(args.backends or available_backends())]
    print("model threads runtime            median ms  p90 ms  vs TFLite")
    for model_id in args.models:
        export(model_id, size=NATIVE_SIZE[model_id])  # build (or read) the official file
        for threads in args.threads:
            if args.isolate:
                results = measure_isolated(model_id, runtimes, threads, args.calls)
            else:
                results = measure({r: runtime_step(model_id, r, threads) for r in runtimes},
                                  args.calls)
            reference = results["tflite"][0]
            for runtime, (median, p90) in results.items():
                name = "tflite (official)" if runtime == "tflite" else f"vidnets {runtime}"
                print(f"{model_id:5} {threads:7} {name:18} {median:9.2f} {p90:7.2f} "
                      f"{median / reference:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
