"""Multigrid vs the plain schedule: wall-clock to the same validation accuracy.

Trains the same model on the same synthetic motion data twice in this process, once with
the plain schedule and once with Multigrid (long + short cycles, sub-batch BN; Wu et al.,
CVPR 2020), validating after every epoch. Prints both accuracy-vs-time curves and the
speed-up: the plain run's time to its best accuracy over the time Multigrid needs to
reach the same accuracy (minus ``--tolerance`` points).

    python benchmarks/multigrid_speedup.py [--epochs 8] [key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from vidnets.engine.config import load_config
from vidnets.engine.demo import recipe_path
from vidnets.engine.trainer import Trainer


def curve(overrides: list[str], out_dir: str, name: str) -> list[tuple[float, float]]:
    """``[(elapsed seconds, val top-1)]`` after every epoch."""
    cfg = load_config(recipe_path(), [*overrides, f"run.out_dir={out_dir}", f"run.name={name}"])
    trainer = Trainer(cfg, progress_bar=False)
    trainer.fit()
    return [(r["elapsed_s"], r["top1"]) for r in trainer.log.records() if r["kind"] == "val"]


def time_to(points: list[tuple[float, float]], accuracy: float) -> float | None:
    return next((t for t, acc in points if acc >= accuracy), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1.0)
    parser.add_argument("overrides", nargs="*", help="overrides of configs/synthetic_demo.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Sub-batch BN replaces BatchNorm3d: the stream model in its 3D training layout.
    common = ["model.options={conv_type: 3d_2plus1d}", "data.dataset=synthetic",
              "train.eval_every=1", *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        plain = curve(common, tmp, "plain")
        multigrid = curve([*common, "train.multigrid.enabled=true"], tmp, "multigrid")
    for name, points in (("plain", plain), ("multigrid", multigrid)):
        print(f"{name:>9}: " + "  ".join(f"{t:.0f}s {acc:.1f}%" for t, acc in points))
    best_time, best = min(((t, acc) for t, acc in plain if acc >= max(a for _, a in plain)),
                          key=lambda p: p[0])
    target = best - args.tolerance
    plain_time = time_to(plain, target)
    mg_time = time_to(multigrid, target)
    if mg_time is None:
        print(f"multigrid never reached {target:.1f}% (best "
              f"{max(a for _, a in multigrid):.1f}%); plain reached it in {plain_time:.0f} s")
        return
    print(f"time to {target:.1f}% val top-1: plain {plain_time:.0f} s, multigrid {mg_time:.0f} s"
          f" -> speed-up {plain_time / mg_time:.2f}x (plain best {best:.1f}% at "
          f"{best_time:.0f} s)")


if __name__ == "__main__":
    main()
