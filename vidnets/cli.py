"""The ``vidnets`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .deploy.loading import InferenceModel


def _fmt_acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cmd_models(args: argparse.Namespace) -> int:
    from .registry import list_models, model_config

    names = list_models(args.filter)
    if args.json:
        print(json.dumps([model_config(n).as_dict() for n in names], indent=2))
        return 0
    header = f"{'model':<22}{'params':>12}{'GFLOPs':>9}  {'input (T x H x W @ fps)':<24}" \
             f"{'top-1':>7}{'top-5':>7}  dataset"
    print(header)
    print("-" * len(header))
    for name in names:
        c = model_config(name)
        shape = f"{c.frames} x {c.size} x {c.size} @ {c.fps:g}"
        print(f"{name:<22}{c.params:>12,}{c.gflops:>9.1f}  {shape:<24}{_fmt_acc(c.top1):>7}"
              f"{_fmt_acc(c.top5):>7}  {c.dataset}")
    print("\nGFLOPs: multiply-adds per clip as the papers report them "
          "(`vidnets flops MODEL` measures them).")
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from .flops import count_bn_statistics, count_macs, count_params
    from .registry import model_config

    cfg = model_config(args.model)
    frames = args.frames or cfg.frames
    size = args.size or cfg.size
    with torch.device("meta"):
        model = cfg.build(num_classes=args.num_classes or cfg.num_classes)
    macs = count_macs(model, (1, 3, frames, size, size))
    result = {
        "model": args.model, "input": [1, 3, frames, size, size],
        "params": count_params(model), "bn_statistics": count_bn_statistics(model),
        "gflops": round(macs / 1e9, 3), "paper_gflops": cfg.gflops,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model}: input 1 x 3 x {frames} x {size} x {size}")
    print(f"  params          {result['params']:,} trainable + "
          f"{result['bn_statistics']:,} BatchNorm statistics")
    print(f"  GFLOPs          {result['gflops']:.3f} (multiply-adds of convolutions and matmuls)")
    if (frames, size) == (cfg.frames, cfg.size):
        print(f"  paper GFLOPs    {cfg.gflops:g}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import time

    from .weights import save_weights
    from .weights.checkpoint import convert_official
    from .weights.download import sha256_of

    start = time.perf_counter()
    state, metadata = convert_official(args.src, args.model)
    out = save_weights(state, args.out, metadata)
    print(f"converted {args.src} -> {out}")
    print(f"  model           {args.model} ({metadata['num_classes']} classes, "
          f"labels {metadata['label_set']})")
    print(f"  tensors mapped  {metadata['checkpoint_variables']} checkpoint variables (all) -> "
          f"{metadata['tensors']} state-dict entries (all)")
    print(f"  source sha256   {metadata['source_sha256']}")
    print(f"  output sha256   {sha256_of(out)}")
    print(f"  time            {time.perf_counter() - start:.2f} s")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    import time

    from .data.synthetic import CLASSES, write_dataset

    start = time.perf_counter()
    write_dataset(args.out, num_train=args.train, num_val=args.val, frames=args.frames,
                  size=args.size, fps=args.fps, seed=args.seed, workers=args.workers)
    print(f"wrote {args.train} train + {args.val} val videos ({len(CLASSES)} classes, "
          f"{args.frames} frames of {args.size}x{args.size} at {args.fps} fps) to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.config import load_config
    from .engine.trainer import Trainer

    if args.resume:
        run_dir = Path(args.resume)
        config = run_dir / "config.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"{run_dir} is not a vidnets run (no config.yaml)")
        cfg = load_config(config, args.overrides)
        trainer = Trainer(cfg, run_dir=run_dir, resume=True, progress_bar=not args.quiet)
    else:
        if not args.config:
            raise ValueError("vidnets train needs --config CFG.yaml (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.overrides)
        trainer = Trainer(cfg, progress_bar=not args.quiet)
    metrics = trainer.fit()
    if trainer.env.is_main:
        summary = ", ".join(f"{k} {metrics[k]:.2f}" for k in ("top1", "top5", "mAP")
                            if k in metrics)
        print(f"done: {trainer.run_dir / 'model.safetensors'}" + (f" (val {summary})"
                                                                   if summary else ""))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .engine.config import load_config
    from .engine.evaluate import evaluate
    from .registry import create_model

    cfg = load_config(args.config, args.overrides)
    model = create_model(cfg.model.name, weights=args.weights, **cfg.model.options)
    result = evaluate(model, cfg, views=args.views, streaming=args.streaming or None,
                      localisation=args.localisation or None, out_dir=args.out,
                      progress=not args.json)
    if args.json:
        shown = {k: v for k, v in result.items() if k != "confusion"}
        print(json.dumps(shown, indent=1, default=lambda v: v.tolist()))
        return 0
    print(f"{cfg.model.name} on {cfg.data.dataset} ({result['mode']}): "
          f"{result['videos']} videos, {result['skipped']} skipped, {result['seconds']:.1f} s")
    for key in ("top1", "top5", "mean_class_accuracy", "mAP", "frame_mAP"):
        if key in result:
            print(f"  {key:<20} {result[key]:.2f}")
    if "per_class" in result:
        worst = sorted(zip(result["per_class"], result["class_names"], strict=True))[:5]
        print("  lowest classes       " + ", ".join(f"{n} {a:.1f}" for a, n in worst))
    for path, reason in result["skipped_files"].items():
        print(f"  skipped {path}: {reason}")
    if args.out:
        print(f"  confusion matrix     {Path(args.out) / 'confusion.png'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .engine.demo import run_demo

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; pass another --out")
    run_demo(out, overrides=args.overrides)
    return 0


def _format_prediction(video: str, best: list[dict]) -> str:
    lines = [video] + [f"  {b['probability'] * 100:6.2f}%  {b['label']}" for b in best]
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .deploy.loading import load_inference_model
    from .deploy.predict import predict_videos, top_k
    from .engine.config import parse_views

    if args.streaming and args.views:
        raise ValueError("give --views or --streaming, not both")
    if args.top_k < 1:
        raise ValueError("--top-k must be >= 1")
    clips, crops = parse_views(args.views or "1x1")
    inference = load_inference_model(args.model, args.weights, labels=args.labels)
    mode = "streaming" if args.streaming else f"{clips}x{crops} views"
    if not args.json:
        print(f"{args.model}: {inference.preprocessing.describe()}, {mode}, "
              f"{len(inference.class_names)} classes")
    predictions = predict_videos(inference.model, args.videos, inference.preprocessing,
                                 clips=clips, crops=crops, streaming=args.streaming)
    results, failed = [], 0
    with tqdm(predictions, total=len(args.videos), desc="predict", unit="video",
              file=sys.stderr, leave=False,
              disable=True if len(args.videos) < 2 else None) as bar:
        for prediction in bar:
            if prediction.error is not None:
                failed += 1
                results.append({"video": prediction.video, "top_k": [],
                                "error": prediction.error})
                bar.write(f"vidnets predict: skipped {prediction.video}: {prediction.error}",
                          file=sys.stderr)
                continue
            best = top_k(prediction.probabilities, inference.class_names, args.top_k)
            results.append({"video": prediction.video, "top_k": best, "error": None})
            if not args.json:
                bar.write(_format_prediction(prediction.video, best), file=sys.stdout)
    if args.json:
        print(json.dumps(results, indent=1))
    if failed:
        print(f"vidnets predict: {failed} of {len(args.videos)} videos could not be read",
              file=sys.stderr)
        return 1
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from .deploy.loading import load_inference_model
    from .deploy.session import StreamOptions, stream_session
    from .deploy.sources import display_name

    if args.every < 1 or args.top_k < 1 or args.plot_classes < 1:
        raise ValueError("--every, --top-k and --plot-classes must be >= 1")
    inference = load_inference_model(args.model, args.weights, labels=args.labels)
    prep = inference.preprocessing
    from .deploy.backends import create_streamer, resolve_backend

    backend = resolve_backend(args.backend)
    streamer = create_streamer(inference.model, backend, prep.size, prep.size,
                               threads=args.threads)
    options = StreamOptions(
        top_k=args.top_k, every=args.every, json=args.json,
        plot=Path(args.plot) if args.plot else None, plot_classes=args.plot_classes,
        overlay=Path(args.overlay) if args.overlay else None, realtime=args.realtime,
        input_format=args.input_format, timeout=args.timeout)
    if not args.json:
        print(f"{display_name(args.source)} -> {args.model} ({backend}): "
              f"{prep.describe()}, {len(inference.class_names)} classes", flush=True)
    return stream_session(args.source, streamer, inference, options)


def cmd_export(args: argparse.Namespace) -> int:
    from .deploy.export import SUFFIXES, export_model
    from .deploy.loading import load_inference_model

    inference = load_inference_model(args.model, args.weights, labels=args.labels)
    model, prep = inference.model, inference.preprocessing
    graph = "frame" if args.four_d or args.int8 else "stream" if args.streaming else "clip"
    if graph == "clip" and args.format == "executorch" and model.causal and not args.clip:
        graph = "frame"
    size = args.size or prep.size
    frames = args.frames or (prep.frames if graph == "clip" else 1)
    if args.format == "tflite" and graph != "frame":
        if not model.causal:
            raise ValueError(f"--format tflite exports the one-frame graph of a stream model; "
                             f"{args.model} is not causal (use --format onnx)")
        graph = "frame"
    suffix = SUFFIXES[args.format]
    out = Path(args.out or f"{args.model}-{graph}{suffix}")
    metadata = {**inference.metadata, "model": args.model, "labels": list(inference.class_names),
                "num_classes": len(inference.class_names), "size": prep.size,
                "frames": prep.frames, "fps": prep.fps, "stride": prep.stride,
                "mean": list(prep.mean), "std": list(prep.std), "test_scale": prep.test_scale}
    if args.int8:
        return _export_int8(args, inference, out, size, metadata)
    path = export_model(model, out, args.format, graph=graph, height=size, width=size,
                        frames=frames, batch=args.batch, dynamic_frames=args.dynamic_frames,
                        metadata=metadata)
    print(f"wrote {path} ({graph} graph, {args.format}) and {path.name}.json")
    return 0


def _export_int8(args: argparse.Namespace, inference: InferenceModel, out: Path, size: int,
                 metadata: dict) -> int:
    """`vidnets export --int8`: the one-frame graph, calibrated on --calibrate videos."""
    import numpy as np

    from .data.video import VideoError, iter_frames
    from .deploy.quantize import quantize_onnx_frame_graph

    if args.format != "onnx" or not inference.model.causal:
        raise ValueError("--int8 quantises the one-frame graph of a stream model to ONNX "
                         "(--format onnx, a *_stream model)")
    if not args.calibrate:
        raise ValueError("--int8 needs calibration videos: --calibrate VIDEO [VIDEO ...]")
    prep = inference.preprocessing
    transform = prep.transform()

    def videos():  # noqa: ANN202 - decoded lazily, one video in memory at a time
        for path in args.calibrate:
            try:
                frames = [f for _, f in zip(range(args.calibration_frames),
                                            iter_frames(path, fps=prep.fps, stride=prep.stride),
                                            strict=False)]
            except VideoError as exc:
                print(f"vidnets export: skipped calibration video {exc}", file=sys.stderr)
                continue
            if frames:
                yield transform(torch.from_numpy(np.stack([f for _, f in frames])))

    path = quantize_onnx_frame_graph(inference.model, videos(), out, height=size, width=size,
                                     metadata=metadata)
    print(f"wrote {path} (int8 frame graph, onnx) and {path.name}.json")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .deploy.bench import benchmark_clip, benchmark_stream
    from .registry import create_model, model_config

    cfg = model_config(args.model)
    model = create_model(args.model)
    size = args.size or cfg.size
    results = []
    for threads in args.threads:
        if args.streaming:
            result = benchmark_stream(model, backend=args.backend, threads=threads,
                                      height=size, width=size, calls=args.calls or 200)
        else:
            result = benchmark_clip(model, threads=threads, batch=args.batch,
                                    frames=args.frames or cfg.frames, height=size, width=size,
                                    calls=args.calls or 10)
        results.append(result)
        if not args.json:
            print(f"{args.model} {result.describe()}", flush=True)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .deploy.backends import BACKENDS
    from .deploy.export import FORMATS

    parser = argparse.ArgumentParser(prog="vidnets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="table of models: params, GFLOPs, input, accuracy")
    p.add_argument("filter", nargs="?", default="", help="only names containing this")
    p.add_argument("--json", action="store_true", help="print the configs as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("flops", help="params and GFLOPs for a given input")
    p.add_argument("model")
    p.add_argument("--frames", type=int, help="clip length (default: the model's)")
    p.add_argument("--size", type=int, help="height = width (default: the model's)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: the model's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("convert", help="official checkpoint -> vidnets .safetensors")
    p.add_argument("src", help="release .tar.gz, checkpoint directory, or checkpoint prefix")
    p.add_argument("--model", required=True, help="registered model name, e.g. movinet_a0_base")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("predict", help="top-k classes of video files",
                       description="Top-k classes of each video; preprocessing and class names "
                       "come from the weights' metadata. Unreadable videos are reported and "
                       "skipped (exit code 1).")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--weights", required=True, help="vidnets .safetensors or official checkpoint")
    p.add_argument("--labels", help="label set (e.g. kinetics600) or class file, used when the "
                   "weights carry no class names")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--views", help="CLIPSxCROPS, e.g. 10x3: softmax averaged (default 1x1)")
    p.add_argument("--streaming", action="store_true",
                   help="stream each whole video through a causal (*_stream) model")
    p.add_argument("--json", action="store_true", help="print a JSON list to stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("stream", help="per-frame predictions of a file, camera or URL",
                       description="Per-frame top-k of a causal model over a video file, a "
                       "camera or a URL, in constant memory. Exit codes: 0 done, 2 source "
                       "cannot be opened, 3 source dropped mid-stream, 130 stopped with "
                       "Ctrl-C; the plot, overlay and summary keep what was seen.")
    p.add_argument("source", help="video file, device (/dev/video0) or URL (rtsp://, http://)")
    p.add_argument("--model", required=True, help="registered causal model, e.g. "
                   "movinet_a0_stream")
    p.add_argument("--weights", required=True, help="vidnets .safetensors or official checkpoint")
    p.add_argument("--labels", help="label set or class file, used when the weights carry "
                   "no class names")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--every", type=int, default=1, help="print every N-th model frame")
    p.add_argument("--plot", help="PNG of the top classes' probabilities over time")
    p.add_argument("--plot-classes", type=int, default=5, help="classes in the plot")
    p.add_argument("--overlay", help="video file with the predictions drawn on every frame")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its frame times (as if live)")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="streaming runtime (default: the fastest installed)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads")
    p.add_argument("--input-format", help="FFmpeg input format, e.g. v4l2, avfoundation")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds a network source may stay silent")
    p.add_argument("--json", action="store_true", help="JSON lines: one per printed frame, "
                   "then a summary")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("data", help="datasets: `vidnets data synth --out DIR`")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("synth", help="write the synthetic motion dataset (mp4 + CSV)")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument("--train", type=int, default=1000, help="training videos")
    p.add_argument("--val", type=int, default=200, help="validation videos")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="frame height = width")
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="encoding processes")
    p.set_defaults(func=cmd_data_synth)

    p = sub.add_parser("train", help="train from a YAML config (key=value overrides)")
    p.add_argument("--config", help="recipe, e.g. configs/synthetic_demo.yaml")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", help="e.g. train.epochs=5 train.optim.lr=0.01")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate weights on a config's validation split")
    p.add_argument("--config", required=True)
    p.add_argument("--weights", required=True, help="vidnets .safetensors or official checkpoint")
    p.add_argument("--views", help="CLIPSxCROPS, e.g. 10x3 (default: the config's eval.views)")
    p.add_argument("--streaming", action="store_true", help="stream whole videos (causal models)")
    p.add_argument("--localisation", action="store_true",
                   help="per-frame predictions scored with frame mAP (Charades)")
    p.add_argument("--out", help="directory for confusion.png")
    p.add_argument("--json", action="store_true")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="the main job: synthetic data -> train -> evaluate")
    p.add_argument("--out", default="runs/demo", help="output directory (new or empty)")
    p.add_argument("overrides", nargs="*", help="overrides of configs/synthetic_demo.yaml")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export to ONNX / torch.export / ExecuTorch / TFLite")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="tflite: the one-frame graph, channels-last state (litert-torch)")
    p.add_argument("--streaming", action="store_true",
                   help="stream graph: frames [B, 3, t, H, W] and the state in, logits and "
                        "the new state out")
    p.add_argument("--four-d", action="store_true",
                   help="one-frame graph with 4-D tensors only (frame [B, 3, H, W], 4-D states)")
    p.add_argument("--clip", action="store_true",
                   help="whole-clip graph even for a causal model (the default otherwise)")
    p.add_argument("--frames", type=int, default=None,
                   help="clip length (clip graph) or frames per call (stream graph; default 1)")
    p.add_argument("--dynamic-frames", action="store_true",
                   help="ONNX stream graph taking any number of frames per call")
    p.add_argument("--size", type=int, default=None, help="input height/width (default: "
                   "the weights' size)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--labels", default=None)
    p.add_argument("--int8", action="store_true",
                   help="int8 one-frame ONNX graph, calibrated on --calibrate videos streamed "
                        "with their state")
    p.add_argument("--calibrate", nargs="+", default=None, metavar="VIDEO")
    p.add_argument("--calibration-frames", type=int, default=64,
                   help="frames used from each calibration video")
    p.add_argument("--out", default=None, help="output file (default MODEL-GRAPH.EXT)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="latency, throughput and peak memory of a model")
    p.add_argument("model")
    p.add_argument("--streaming", action="store_true", help="one frame per call, state carried")
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                   help="streaming runtime (default: the fastest installed)")
    p.add_argument("--batch", type=int, default=1, help="clips per call (clip mode)")
    p.add_argument("--frames", type=int, default=None, help="clip length (default: the "
                   "model's evaluation clip)")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--calls", type=int, default=None, help="timed calls")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_benchmark)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"vidnets {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
