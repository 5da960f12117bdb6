"""The main job on the embedded default: synthetic motion videos -> movinet_a0_stream.

Generates the dataset as real mp4 files, trains on them, evaluates whole clips and
streams, and prints the per-frame predictions of one held-out video.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

RECIPE = "synthetic_demo.yaml"


def recipe_path(name: str = RECIPE) -> Path:
    """A recipe of the source checkout's ``configs/`` directory."""
    path = Path(__file__).resolve().parents[2] / "configs" / name
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found (the demo runs from a source checkout "
                                f"of vidnets, where configs/ holds the recipes)")
    return path


def per_frame_table(model, video: torch.Tensor, class_names: tuple[str, ...], *,
                    fps: float, every: int = 1) -> list[str]:
    """Lines ``frame  time  top-1 (prob)  top-2 (prob)`` from streaming ``video``
    ``[3, T, H, W]`` one frame per step."""
    from .evaluate import stream_video

    probs = stream_video(model, video, per_frame=True).float().softmax(-1)
    lines = []
    for t in range(0, probs.shape[0], every):
        top = probs[t].topk(min(2, probs.shape[1]))
        cells = "  ".join(f"{class_names[i]:<18} {p:5.1%}"
                          for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True))
        lines.append(f"  frame {t + 1:3d}  {t / fps:5.2f} s  {cells}")
    return lines


def run_demo(out: str | Path, *, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the whole main job into ``out`` (``out/data``, ``out/run``); returns the figures."""
    from ..data.synthetic import write_dataset
    from ..registry import create_model
    from .config import load_config
    from .evaluate import evaluate
    from .trainer import Trainer

    start = time.perf_counter()
    out = Path(out)
    data_dir = out / "data"
    recipe = load_config(recipe_path(), overrides or [])
    print(f"[1/4] writing the synthetic motion dataset to {data_dir}", flush=True)
    write_dataset(data_dir, num_train=recipe.data.synthetic_train,
                  num_val=recipe.data.synthetic_val, frames=recipe.data.frames,
                  size=recipe.data.size, fps=round(recipe.data.fps), seed=recipe.train.seed)
    cfg = load_config(recipe_path(), [
        "data.dataset=csv", f"data.root={data_dir}", f"data.train={data_dir / 'train.csv'}",
        f"data.val={data_dir / 'val.csv'}", f"data.labels={data_dir / 'classes.txt'}",
        f"run.out_dir={out}", "run.name=run", *(overrides or [])])
    generated = time.perf_counter() - start
    print(f"      {recipe.data.synthetic_train} train + {recipe.data.synthetic_val} val videos "
          f"in {generated:.0f} s", flush=True)
    print(f"[2/4] training {cfg.model.name} for {cfg.train.epochs} epochs", flush=True)
    trainer = Trainer(cfg)
    clip = trainer.fit()
    weights = trainer.run_dir / "model.safetensors"
    model = create_model(cfg.model.name, weights=weights, **cfg.model.options)
    print("[3/4] evaluating: whole clips and streaming", flush=True)
    stream = evaluate(model, cfg, streaming=True, progress=False)
    print(f"      clip top-1 {clip['top1']:.1f}%  streaming top-1 {stream['top1']:.1f}% "
          f"({stream['videos']} held-out videos)", flush=True)
    print("[4/4] per-frame predictions, streaming one held-out video", flush=True)
    from .data import build_eval_dataset

    dataset, names = build_eval_dataset(cfg, mode="stream")
    item = dataset[0]
    truth = names[int(item["label"])]
    print(f"      {dataset.records[0].path} (true class: {truth})")
    for line in per_frame_table(model, item["video"], names, fps=cfg.data.fps or 1.0):
        print(line)
    wall = time.perf_counter() - start
    figures = {"clip_top1": clip["top1"], "stream_top1": stream["top1"],
               "val_videos": stream["videos"], "wall_seconds": wall,
               "weights": str(weights)}
    print(f"\nsynthetic motion ({len(names)} classes, chance {100 / len(names):.0f}%): "
          f"{cfg.model.name} val top-1 {clip['top1']:.1f}% (clips), {stream['top1']:.1f}% "
          f"(streaming); wall time {wall / 60:.1f} min; weights {weights}", flush=True)
    return figures
