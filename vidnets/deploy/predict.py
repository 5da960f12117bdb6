"""Whole-video predictions: one or several clips (softmax averaged over ``TxS`` views, as
evaluation does), or the whole video streamed through a causal model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from ..data.video import VideoError, clip_starts, iter_frames, open_video
from ..models.base import Streamer, VideoClassifier
from .preprocess import Preprocessing
from .runner import StreamerLike

# What makes one video fail without stopping the others.
VIDEO_ERRORS = (VideoError, av.error.FFmpegError, OSError)


@dataclass(frozen=True)
class VideoPrediction:
    """Class probabilities ``[C]`` of one video, or the reason it could not be read."""

    video: str
    probabilities: torch.Tensor | None
    error: str | None = None


@torch.inference_mode()
def predict_views(model: VideoClassifier, path: str | Path, prep: Preprocessing, *,
                  clips: int = 1, crops: int = 1) -> torch.Tensor:
    """Softmax ``[C]`` averaged over ``clips`` uniformly spaced clips x ``crops`` (1:
    centre, 3: PySlowFast's 3 crops); one clip x one crop is the centred clip."""
    transform = prep.transform()
    total = None
    with open_video(path) as video:
        span = prep.clip_seconds(video.info.fps)
        for start in clip_starts(video.info.duration, span, mode="uniform", num_clips=clips):
            frames = video.clip(start=start, num_frames=prep.frames, fps=prep.fps,
                                stride=prep.stride)
            views = [transform(frames, crop=None if crops == 1 else crop)
                     for crop in range(crops)]
            probabilities = model(torch.stack(views)).float().softmax(-1).sum(0)
            total = probabilities if total is None else total + probabilities
    return total / (clips * crops)


@torch.inference_mode()
def predict_streaming(streamer: StreamerLike, path: str | Path, prep: Preprocessing, *,
                      chunk: int = 16) -> torch.Tensor:
    """Softmax ``[C]`` after the whole video (every frame at ``prep.fps`` / ``stride``)
    went through ``streamer`` ``chunk`` frames at a time; memory stays constant."""
    transform = prep.transform()
    streamer.reset()
    logits = None
    pending: list[np.ndarray] = []
    for _, frame in iter_frames(path, fps=prep.fps, stride=prep.stride):
        pending.append(frame)
        if len(pending) == chunk:
            logits = streamer(transform(torch.from_numpy(np.stack(pending)))[None])
            pending = []
    if pending:
        logits = streamer(transform(torch.from_numpy(np.stack(pending)))[None])
    if logits is None:
        raise VideoError(path, "no decodable video frame")
    return logits[0].float().softmax(-1)


def predict_videos(model: VideoClassifier, paths: Iterable[str | Path], prep: Preprocessing,
                   *, clips: int = 1, crops: int = 1,
                   streaming: bool = False) -> Iterator[VideoPrediction]:
    """A :class:`VideoPrediction` per path, in order; an unreadable video yields its error
    and the others go on."""
    streamer = Streamer(model) if streaming else None
    for path in paths:
        try:
            if streamer is not None:
                probabilities = predict_streaming(streamer, path, prep)
            else:
                probabilities = predict_views(model, path, prep, clips=clips, crops=crops)
        except VIDEO_ERRORS as err:
            reason = err.problem if isinstance(err, VideoError) else f"{type(err).__name__}: {err}"
            yield VideoPrediction(str(path), None, reason)
            continue
        yield VideoPrediction(str(path), probabilities)


def top_k(probabilities: torch.Tensor, class_names: Sequence[str], k: int
          ) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of ``probabilities [C]``, most probable first:
    ``[{"label", "index", "probability"}]``."""
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    return [{"label": class_names[i], "index": i, "probability": v}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)]
