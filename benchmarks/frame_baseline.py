"""Does the synthetic motion dataset need time? A frame-level baseline vs movinet_a0_stream.

Trains, with the demo recipe (configs/synthetic_demo.yaml) on the same data, the frame-level
baseline (the A0 backbone with every temporal kernel 1 and clip-level pooling: a function
of the set of frames, blind to their order) and ``movinet_a0_stream``, and prints both
validation accuracies next to chance.

    python benchmarks/frame_baseline.py [--skip-stream] [key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile

from vidnets.data.synthetic import CLASSES
from vidnets.engine.config import load_config
from vidnets.engine.demo import recipe_path
from vidnets.engine.trainer import Trainer

BASELINE = ["model.name=movinet_a0_base", "model.options={frame_level: true}"]


def train(overrides: list[str], out_dir: str, name: str) -> float:
    cfg = load_config(recipe_path(), [*overrides, f"run.out_dir={out_dir}", f"run.name={name}"])
    return Trainer(cfg, progress_bar=False).fit()["top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-stream", action="store_true",
                        help="train the baseline only (the demo reports the stream model)")
    parser.add_argument("overrides", nargs="*", help="overrides of configs/synthetic_demo.yaml")
    args = parser.parse_args()
    chance = 100 / len(CLASSES)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = train([*BASELINE, *args.overrides], tmp, "frame_level")
        stream = None if args.skip_stream else train(args.overrides, tmp, "stream")
    print(f"chance {chance:.1f}%  frame-level baseline {baseline:.1f}% "
          f"({baseline - chance:+.1f} points)"
          + ("" if stream is None else f"  movinet_a0_stream {stream:.1f}%"))


if __name__ == "__main__":
    main()
