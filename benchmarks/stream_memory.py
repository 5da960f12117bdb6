"""Streaming memory: peak RSS after 10 s and after 10 min of streamed video.

Writes a 10-minute video (H.264, moving pattern), streams it through a stream model with
the probability history that `vidnets stream --plot` keeps, and prints the peak resident
memory of the process when the stream reaches 10 s and at its end, and their ratio
(target: within 5%).

    python benchmarks/stream_memory.py [--model movinet_a0_stream] [--backend auto]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from vidnets import create_model, model_config
from vidnets.deploy.backends import create_streamer, resolve_backend
from vidnets.deploy.bench import peak_rss_mb
from vidnets.deploy.history import ProbabilityHistory
from vidnets.deploy.preprocess import Preprocessing
from vidnets.deploy.runner import run_stream


def current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def write_long_video(path: Path, seconds: int, fps: int, size: int) -> Path:
    """A ``seconds``-long video of a drifting pattern (every frame different)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for i in range(seconds * fps):
            phase = i / fps
            img = 127 + 120 * np.sin(xs / 9 + phase) * np.cos(ys / 13 - 0.7 * phase)
            frame = np.repeat(img[..., None], 3, axis=2).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="movinet_a0_stream")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--source-fps", type=int, default=10)
    parser.add_argument("--source-size", type=int, default=192)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = model_config(args.model)
    prep = Preprocessing.from_metadata({}, cfg)
    backend = resolve_backend(args.backend)
    streamer = create_streamer(create_model(args.model), backend, prep.size, prep.size,
                               threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        video = write_long_video(Path(tmp) / "long.mp4", int(args.minutes * 60),
                                 args.source_fps, args.source_size)
        print(f"wrote {args.minutes:g} min at {args.source_fps} fps, {args.source_size}^2 in "
              f"{time.perf_counter() - start:.0f} s")
        history = ProbabilityHistory(cfg.num_classes)
        marks: dict[str, tuple[float, float, int]] = {}
        frames = 0
        start = time.perf_counter()
        for step in run_stream(str(video), streamer, prep):
            for prediction in step.predictions:
                history.add(prediction.time, prediction.probabilities)
                frames += 1
            if step.time is not None and step.time >= 10.0 and "10 s" not in marks:
                marks["10 s"] = (peak_rss_mb(), current_rss_mb(), frames)
        marks[f"{args.minutes:g} min"] = (peak_rss_mb(), current_rss_mb(), frames)
        seconds = time.perf_counter() - start
    print(f"{args.model} ({backend}, {prep.size}^2 at {prep.fps:g} fps): {frames} model frames "
          f"in {seconds:.0f} s")
    for label, (peak, current, count) in marks.items():
        print(f"after {label:>7} of video ({count:5d} frames): peak RSS {peak:7.1f} MB, "
              f"current RSS {current:7.1f} MB")
    (early, _, _), (late, _, _) = marks.values()
    print(f"peak RSS ratio (end / 10 s): {late / early:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
