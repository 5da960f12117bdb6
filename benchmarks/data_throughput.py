"""Data loader clips/s vs training step clips/s on the synthetic mp4 dataset.

Writes the demo's synthetic dataset (real H.264 files), then measures, in one process:
the DataLoader (PyAV decode + transforms, ``--workers`` processes) alone, and the training
step (forward + backward + optimizer) alone on batches already in memory. The loader keeps
the step busy when its clips/s is above the step's.

    python benchmarks/data_throughput.py [--videos 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vidnets.data.synthetic import write_dataset
from vidnets.engine.config import load_config
from vidnets.engine.demo import recipe_path
from vidnets.engine.trainer import Trainer


def loader_clips_per_s(trainer: Trainer, workers: int, batches: int) -> float:
    trainer.cfg.data.num_workers = workers
    loader = trainer._loader(trainer._batch_sampler(0, 0))
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, clips = time.perf_counter(), 0
    for _ in range(batches):
        clips += next(it)["video"].shape[0]
    return clips / (time.perf_counter() - start)


def step_clips_per_s(trainer: Trainer, steps: int) -> float:
    batch = next(iter(trainer._loader(trainer._batch_sampler(0, 0))))
    trainer._step(batch["video"], batch["label"])  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        trainer._step(batch["video"], batch["label"])
    return steps * batch["video"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = load_config(recipe_path())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_dataset(data, num_train=args.videos, num_val=16, frames=recipe.data.frames,
                      size=recipe.data.size, fps=round(recipe.data.fps), seed=0)
        cfg = load_config(recipe_path(), [
            "data.dataset=csv", f"data.root={data}", f"data.train={data / 'train.csv'}",
            f"data.val={data / 'val.csv'}", f"data.labels={data / 'classes.txt'}",
            f"run.out_dir={tmp}", "run.name=bench"])
        trainer = Trainer(cfg, progress_bar=False)
        step = step_clips_per_s(trainer, args.batches)
        print(f"training step ({cfg.model.name}, batch {cfg.train.batch_size}, "
              f"{cfg.data.frames}x{cfg.data.size}², {args.threads} threads): {step:.1f} clips/s")
        for workers in (0, 1, 2):
            rate = loader_clips_per_s(trainer, workers, args.batches)
            print(f"data loader, {workers} workers: {rate:.1f} clips/s = {rate / step:.2f}x "
                  f"the training step")


if __name__ == "__main__":
    main()
