"""Evaluation: multi-view clips (``TxS`` views, softmax-averaged per video) and streaming
(whole videos through ``stream_step``; per-frame scores for localisation)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..layers.norm import aggregate_sub_batch_stats
from ..models.base import VideoClassifier
from .config import Config, parse_views
from .data import build_eval_dataset
from .metrics import ClassificationMeter, ViewAggregator, frame_map, mean_average_precision


def evaluate(model: VideoClassifier, cfg: Config, *, views: str | None = None,
             streaming: bool | None = None, localisation: bool | None = None,
             out_dir: str | Path | None = None, chunk: int = 16,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on the validation split of ``cfg.data``.

    Arguments left ``None`` come from ``cfg.eval``. Returns top-1/top-5, mean class
    accuracy and per-class accuracy (or mAP for multi-label data; frame mAP for
    localisation), the number of videos and of skipped ones; writes ``confusion.png``
    into ``out_dir`` when given.
    """
    views = views or cfg.eval.views
    streaming = cfg.eval.streaming if streaming is None else streaming
    localisation = cfg.eval.localisation if localisation is None else localisation
    model.eval()
    aggregate_sub_batch_stats(model)
    start = time.perf_counter()
    if streaming or localisation:
        if not model.causal:
            raise ValueError(f"streaming evaluation needs a causal model; "
                             f"{cfg.model.name} is not (use a *_stream model)")
        dataset, names = build_eval_dataset(cfg, mode="stream", seed=cfg.train.seed)
        result = _evaluate_stream(model, dataset, len(names), cfg.data.multi_label,
                                  localisation, chunk, progress)
        result["mode"] = "streaming"
    else:
        clips, crops = parse_views(views)
        dataset, names = build_eval_dataset(cfg, num_clips=clips, num_crops=crops,
                                            seed=cfg.train.seed)
        result = _evaluate_views(model, dataset, len(names), clips * crops,
                                 cfg.data.multi_label, cfg.eval.batch_size,
                                 cfg.data.num_workers, progress)
        result["mode"] = f"{clips}x{crops} views"
    result["seconds"] = time.perf_counter() - start
    if out_dir is not None and "confusion" in result:
        from .plots import plot_confusion

        plot_confusion(result["confusion"], names, Path(out_dir) / "confusion.png")
    result["class_names"] = list(names)
    return result


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not enabled, leave=False)


@torch.no_grad()
def _evaluate_views(model: VideoClassifier, dataset, num_classes: int, num_views: int,
                    multi_label: bool, batch_size: int, num_workers: int,
                    progress: bool) -> dict[str, Any]:
    from ..data.datasets import collate_clips

    num_videos = len(dataset) // num_views
    aggregator = ViewAggregator(num_videos, num_classes, num_views, multi_label=multi_label)
    skipped: dict[str, str] = {}
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_clips)
    with _bar(len(dataset), f"eval {num_views} views", progress) as bar:
        for batch in loader:
            skipped.update(dict(batch["failures"]))
            n = batch["video"].shape[0] if "video" in batch else 0
            if n:
                logits = model(batch["video"]).float()
                aggregator.add(batch["index"], batch["view"], logits)
            bar.update(n + len(batch["failures"]))
    done = aggregator.complete()
    scores = aggregator.video_scores()[done]
    labels = _video_labels(dataset, num_views, multi_label)[done]
    result = _score(scores, labels, num_classes, multi_label)
    result.update(videos=int(done.sum()), skipped=len(skipped), skipped_files=skipped,
                  views=num_views)
    return result


def _video_labels(dataset, num_views: int, multi_label: bool) -> torch.Tensor:
    """Label of every video ``[V]`` (multi-hot ``[V, C]`` for multi-label data)."""
    if not hasattr(dataset, "records"):  # the in-memory synthetic dataset
        return torch.tensor(dataset.labels)
    return torch.stack([dataset.video_label(i) for i in range(len(dataset.records))])


def _score(scores: torch.Tensor, labels: torch.Tensor, num_classes: int, multi_label: bool
           ) -> dict[str, Any]:
    if not len(scores):
        raise ValueError("no video could be evaluated (every one was skipped)")
    if multi_label:
        return {"mAP": mean_average_precision(scores, labels)}
    meter = ClassificationMeter(num_classes)
    meter.update(scores, labels)
    return meter.compute()


@torch.no_grad()
def stream_video(model: VideoClassifier, video: torch.Tensor, *, chunk: int = 16,
                 per_frame: bool = False) -> torch.Tensor:
    """Stream one clip ``[3, T, H, W]`` through the model ``chunk`` frames per call
    (memory stays constant in T). Returns the final logits ``[C]``, or ``[T, C]`` logits
    after every frame when ``per_frame`` (one frame per call)."""
    _, t, h, w = video.shape
    state = model.init_state(1, h, w)
    step = 1 if per_frame else chunk
    outputs = []
    logits = None
    for i in range(0, t, step):
        logits, state = model.stream_step(video[None, :, i:i + step], state)
        outputs.append(logits[0])
    return torch.stack(outputs) if per_frame else logits[0]


def _evaluate_stream(model: VideoClassifier, dataset, num_classes: int, multi_label: bool,
                     localisation: bool, chunk: int, progress: bool) -> dict[str, Any]:
    scores, labels, frame_scores, frame_targets = [], [], [], []
    skipped: dict[str, str] = {}
    with _bar(len(dataset), "eval streaming", progress) as bar:
        for i in range(len(dataset)):
            item = dataset[i]
            bar.update()
            if not isinstance(item, dict):
                skipped[item.path] = item.reason
                continue
            if localisation:
                per_frame = stream_video(model, item["video"], per_frame=True).float()
                frame_scores.append(torch.sigmoid(per_frame))
                frame_targets.append(item["frame_labels"])
                logits = per_frame[-1]
            else:
                logits = stream_video(model, item["video"], chunk=chunk).float()
            scores.append(torch.sigmoid(logits) if multi_label else logits.softmax(-1))
            labels.append(item["label"])
    stacked = torch.stack(labels) if multi_label else torch.tensor([int(x) for x in labels])
    result = _score(torch.stack(scores) if scores else torch.empty(0), stacked, num_classes,
                    multi_label)
    if localisation:
        result["frame_mAP"] = frame_map(frame_scores, frame_targets) if frame_scores else 0.0
    result.update(videos=len(scores), skipped=len(skipped), skipped_files=skipped)
    return result
