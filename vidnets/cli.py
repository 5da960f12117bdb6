"""The ``vidnets`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch


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


def build_parser() -> argparse.ArgumentParser:
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
