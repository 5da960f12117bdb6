"""Evaluation metrics: top-k accuracy, confusion matrix, multi-view aggregation, mAP.

Average precision follows ``sklearn.metrics.average_precision_score`` (what PySlowFast's
Charades evaluation calls): ``sum_n (R_n - R_{n-1}) * P_n`` over the distinct score
thresholds, so tied scores form one threshold and the result does not depend on the
order of the samples. Without ties it is the precision averaged at the rank of every
positive (the official Charades / THUMOS rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _check_scores(scores: torch.Tensor, labels: torch.Tensor, num_classes: int | None,
                  what: str) -> None:
    if scores.ndim != 2:
        raise ValueError(f"{what}: scores must be [N, C], got shape {tuple(scores.shape)}")
    if num_classes is not None and scores.shape[1] != num_classes:
        raise ValueError(f"{what}: scores have {scores.shape[1]} classes, expected "
                         f"{num_classes}")
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"{what}: labels must be [N] with N = {scores.shape[0]}, got shape "
                         f"{tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"{what}: labels must lie in [0, {scores.shape[1] - 1}], got "
                         f"{labels.min().item()}..{labels.max().item()}")


def topk_correct(logits: torch.Tensor, labels: torch.Tensor,
                 ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """How many of the ``N`` rows have their label among the top ``k`` scores, per ``k``.

    ``logits`` [N, C], ``labels`` [N] (int); ``k`` larger than ``C`` counts as ``C``.
    """
    _check_scores(logits, labels, None, "topk_correct")
    num_classes = logits.shape[1]
    top = logits.topk(min(max(ks), num_classes), dim=1).indices  # [N, K]
    hits = top == labels.view(-1, 1).to(top.device)
    return {k: int(hits[:, :min(k, num_classes)].any(dim=1).sum()) for k in ks}


class ClassificationMeter:
    """Single-label accuracy over a whole evaluation: top-1, top-5 (top-``min(5, C)``),
    per-class accuracy and the confusion matrix (rows: true class, columns: prediction)."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.top5_k = min(5, num_classes)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.count = 0
        self._top5 = 0

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Add ``scores`` [N, C] (logits or probabilities) with their ``labels`` [N]."""
        scores, labels = scores.detach().float().cpu(), labels.detach().long().cpu()
        _check_scores(scores, labels, self.num_classes, "ClassificationMeter.update")
        c = self.num_classes
        pred = scores.argmax(dim=1)
        self.confusion += torch.bincount(labels * c + pred, minlength=c * c).view(c, c)
        self._top5 += topk_correct(scores, labels, (self.top5_k,))[self.top5_k]
        self.count += labels.numel()

    def compute(self) -> dict[str, Any]:
        """``top1``, ``top5``, ``mean_class_accuracy`` (percent), ``per_class`` (percent,
        ``None`` for a class without samples), ``confusion`` (int64 [C, C]), ``count``."""
        if self.count == 0:
            raise ValueError("ClassificationMeter.compute: no samples were added")
        correct = self.confusion.diag().double()
        support = self.confusion.sum(dim=1).double()
        present = support > 0
        per_class = [100.0 * float(correct[i] / support[i]) if present[i] else None
                     for i in range(self.num_classes)]
        return {
            "top1": 100.0 * float(correct.sum()) / self.count,
            "top5": 100.0 * self._top5 / self.count,
            "mean_class_accuracy": 100.0 * float((correct[present] / support[present]).mean()),
            "per_class": per_class,
            "confusion": self.confusion.clone(),
            "count": self.count,
        }


class ViewAggregator:
    """Video-level scores from several views per video (PySlowFast multi-view testing):
    the average of the softmax probabilities (``multi_label``: sigmoid) of the views each
    video received.

    ``num_views`` = temporal clips x spatial crops; ``None`` takes the highest view index
    seen + 1. A ``(video, view)`` pair added twice (the padding of a distributed sampler)
    counts once; views that never arrive (skipped failures) show in :meth:`view_counts`
    and :meth:`complete`.
    """

    def __init__(self, num_videos: int, num_classes: int, num_views: int | None = None, *,
                 multi_label: bool = False) -> None:
        if num_videos < 0 or num_classes < 1 or (num_views is not None and num_views < 1):
            raise ValueError(f"ViewAggregator needs num_videos >= 0, num_classes >= 1, "
                             f"num_views >= 1; got {num_videos}, {num_classes}, {num_views}")
        self.num_videos, self.num_classes, self.num_views = num_videos, num_classes, num_views
        self.multi_label = multi_label
        self.prob_sum = torch.zeros(num_videos, num_classes, dtype=torch.float64)
        self.seen = torch.zeros(num_videos, num_views or 1, dtype=torch.bool)

    def add(self, video_index: torch.Tensor, view: torch.Tensor, logits: torch.Tensor) -> None:
        """Add ``logits`` [N, C] of views ``view`` [N] of videos ``video_index`` [N]."""
        video_index = torch.as_tensor(video_index).long().cpu().view(-1)
        view = torch.as_tensor(view).long().cpu().view(-1)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"ViewAggregator.add: logits must be [N, {self.num_classes}], got "
                             f"shape {tuple(logits.shape)}")
        if not video_index.numel() == view.numel() == logits.shape[0]:
            raise ValueError(f"ViewAggregator.add: {video_index.numel()} video indices, "
                             f"{view.numel()} views and {logits.shape[0]} rows of logits")
        if video_index.numel() == 0:
            return
        if video_index.min() < 0 or video_index.max() >= self.num_videos:
            raise ValueError(f"ViewAggregator.add: video index out of [0, {self.num_videos})")
        limit = self.num_views or float("inf")
        if view.min() < 0 or view.max() >= limit:
            raise ValueError(f"ViewAggregator.add: view {view.max().item()} out of "
                             f"[0, {self.num_views}) (views = clips x crops)")
        if view.max() >= self.seen.shape[1]:  # num_views None: grow with the views seen
            grown = torch.zeros(self.num_videos, int(view.max()) + 1, dtype=torch.bool)
            grown[:, :self.seen.shape[1]] = self.seen
            self.seen = grown
        logits = logits.detach().double().cpu()
        probs = logits.sigmoid() if self.multi_label else logits.softmax(dim=1)
        for row, (v, k) in enumerate(zip(video_index.tolist(), view.tolist(), strict=True)):
            if not self.seen[v, k]:
                self.seen[v, k] = True
                self.prob_sum[v] += probs[row]

    def view_counts(self) -> torch.Tensor:
        """[V] int64: how many distinct views each video received."""
        return self.seen.sum(dim=1)

    def complete(self) -> torch.Tensor:
        """[V] bool: videos that received all ``num_views`` views."""
        return self.view_counts() == (self.num_views or self.seen.shape[1])

    def video_scores(self) -> torch.Tensor:
        """[V, C] float32: mean probabilities over each video's views (zeros for a video
        with none)."""
        counts = self.view_counts().clamp(min=1).unsqueeze(1)
        return (self.prob_sum / counts).float()


def per_class_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[C] float64 AP (fraction in [0, 1]) of each class; NaN for a class with no positive.

    ``scores`` [N, C] (any monotonic score), ``targets`` [N, C] multi-hot (0 / 1).
    """
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"average precision: scores and targets must both be [N, C], got "
                         f"{tuple(scores.shape)} and {tuple(targets.shape)}")
    scores = scores.detach().double().cpu()
    targets = (targets.detach().cpu() > 0.5).double()
    num_classes = scores.shape[1]
    ap = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        ap[c] = _average_precision(scores[:, c], targets[:, c])
    return ap


def _average_precision(score: torch.Tensor, target: torch.Tensor) -> float:
    positives = float(target.sum())
    if positives == 0:
        return float("nan")
    order = torch.argsort(score, descending=True, stable=True)
    score, target = score[order], target[order]
    tp = target.cumsum(0)
    fp = (1 - target).cumsum(0)
    # the last row of each run of equal scores: one threshold per distinct score
    last = torch.ones_like(score, dtype=torch.bool)
    last[:-1] = score[1:] != score[:-1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall_gain = torch.diff(tp, prepend=tp.new_zeros(1)) / positives
    return float((recall_gain * precision).sum())


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP in percent over the classes that have at least one positive."""
    ap = per_class_average_precision(scores, targets)
    valid = ~ap.isnan()
    if not valid.any():
        raise ValueError("mean average precision: no class has a positive target")
    return 100.0 * float(ap[valid].mean())


def frame_map(frame_scores: Sequence[torch.Tensor], frame_targets: Sequence[torch.Tensor], *,
              frames_per_video: int | None = None) -> float:
    """Charades localisation: frame-level mAP (percent) over all frames of all videos.

    ``frame_scores[i]`` / ``frame_targets[i]``: [T_i, C] per-frame scores and multi-hot
    labels of video ``i``, frames evenly spread over the video. ``frames_per_video=25``
    keeps, as the official ``Charades_v1_localize`` evaluation, the frames at times
    ``j / 25`` of each video (``j = 0..24``): frame ``floor(j * T_i / 25)``.
    """
    if len(frame_scores) != len(frame_targets) or not frame_scores:
        raise ValueError(f"frame_map: {len(frame_scores)} score and {len(frame_targets)} "
                         "target sequences (expected the same number, at least one)")
    scores, targets = [], []
    for i, (s, t) in enumerate(zip(frame_scores, frame_targets, strict=True)):
        if s.ndim != 2 or s.shape != t.shape or s.shape[0] == 0:
            raise ValueError(f"frame_map: video {i}: scores {tuple(s.shape)} and targets "
                             f"{tuple(t.shape)} must both be [T, C] with T >= 1")
        if frames_per_video is not None:
            idx = torch.arange(frames_per_video) * s.shape[0] // frames_per_video
            s, t = s[idx], t[idx]
        scores.append(s.detach().cpu())
        targets.append(t.detach().cpu())
    return mean_average_precision(torch.cat(scores), torch.cat(targets))
