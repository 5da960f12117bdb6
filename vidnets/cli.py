"""The ``vidnets`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

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
