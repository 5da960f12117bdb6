"""int8 post-training quantisation with stateful calibration: accuracy and speed.

Streams the validation videos of the synthetic motion dataset through the float and the
int8 one-frame ONNX graphs of a trained streaming model (``vidnets demo`` writes both the
data and the weights) and prints top-1 of each, the drop, and the per-frame latency ratio
(1 thread, ONNX Runtime) at the trained size and at the model's native size.

    vidnets demo --out runs/demo
    python benchmarks/int8_accuracy.py --weights runs/demo/run/model.safetensors \
        --data runs/demo/data
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vidnets import create_model, model_config
from vidnets.data.video import iter_frames
from vidnets.deploy.backends import OnnxStreamer, exported_frame_graph
from vidnets.deploy.bench import time_calls
from vidnets.deploy.fold import deploy_model
from vidnets.deploy.loading import load_inference_model
from vidnets.deploy.predict import predict_streaming
from vidnets.deploy.quantize import quantize_onnx_frame_graph
from vidnets.weights.safetensors_io import read_metadata


def read_split(data: Path, split: str) -> list[tuple[Path, str]]:
    with open(data / f"{split}.csv") as f:
        return [(data / row["path"], row["label"]) for row in csv.DictReader(f)]


def load_video(path: Path, prep) -> torch.Tensor:  # noqa: ANN001
    frames = [f for _, f in iter_frames(path, fps=prep.fps, stride=prep.stride)]
    return prep.transform()(torch.from_numpy(np.stack(frames)))


def accuracy(streamer, rows, prep, names) -> float:  # noqa: ANN001
    index = {n: i for i, n in enumerate(names)}
    correct = sum(int(predict_streaming(streamer, path, prep).argmax()) == index[label]
                  for path, label in rows)
    return 100.0 * correct / len(rows)


def frame_latency(streamer, size: int, calls: int) -> float:  # noqa: ANN001
    frame = torch.rand(1, 3, 1, size, size)
    return statistics.median(time_calls(lambda: streamer(frame), calls, warmup=10)) * 1000


def native_models(name: str, folder: Path, calibration: int) -> tuple[Path, Path, int]:
    """Float and int8 frame graphs of ``name`` at its native size (random weights,
    calibrated on random-noise videos: for speed only)."""
    size = model_config(name).size
    model = create_model(name)
    float_path = exported_frame_graph(deploy_model(model), "onnx", size, size, folder)
    videos = [torch.rand(3, 4, size, size) for _ in range(calibration)]
    int8_path = quantize_onnx_frame_graph(model, videos, folder / f"{name}-int8.onnx",
                                          height=size, width=size)
    return float_path, int8_path, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--calibration", type=int, default=64, help="training videos")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--method", default="percentile",
                        choices=("minmax", "percentile", "entropy"))
    parser.add_argument("--all-int8", action="store_true",
                        help="quantise the squeeze-excitation, head and temporal convs too")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    name = read_metadata(args.weights)["model"]
    inference = load_inference_model(name, args.weights)
    model, prep, names = inference.model, inference.preprocessing, inference.class_names
    val, train = read_split(args.data, "val"), read_split(args.data, "train")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        calib = (load_video(path, prep) for path, _ in train[:args.calibration])
        int8_path = quantize_onnx_frame_graph(model, calib, folder / "int8.onnx",
                                              height=prep.size, width=prep.size,
                                              calibration=args.method,
                                              keep_float=not args.all_int8)
        print(f"quantised ({args.method}, pooled and temporal convs "
              f"{'int8' if args.all_int8 else 'float'}) with {args.calibration} "
              "calibration videos in "
              f"{time.perf_counter() - start:.1f} s")
        float_streamer = OnnxStreamer(
            exported_frame_graph(deploy_model(model), "onnx", prep.size, prep.size, folder), 1)
        int8_streamer = OnnxStreamer(int8_path, 1)
        top1_float = accuracy(float_streamer, val, prep, names)
        top1_int8 = accuracy(int8_streamer, val, prep, names)
        print(f"{name} {prep.size}x{prep.size}, {len(val)} val videos streamed: float32 top-1 "
              f"{top1_float:.1f}%, int8 {top1_int8:.1f}%, drop {top1_float - top1_int8:.1f} "
              "points")
        if args.skip_speed:
            return
        rows = [(f"{prep.size}x{prep.size} (trained)", float_streamer, int8_streamer,
                 prep.size)]
        native_float, native_int8, size = native_models(name, folder, 4)
        rows.append((f"{size}x{size} (native)", OnnxStreamer(native_float, 1),
                     OnnxStreamer(native_int8, 1), size))
        for label, f32, i8, s in rows:
            t_float, t_int8 = frame_latency(f32, s, args.calls), frame_latency(i8, s, args.calls)
            print(f"ONNX Runtime, 1 thread, {label}: float32 {t_float:.2f} ms/frame, int8 "
                  f"{t_int8:.2f} ms/frame, speed-up {t_float / t_int8:.2f}x")


if __name__ == "__main__":
    main()
