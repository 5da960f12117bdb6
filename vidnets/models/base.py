"""What every vidnets classifier shares: input checks, the streaming contract, the head.

A model implements ``_run(clip, state) -> (logits, new_state)`` with ``state=None``
meaning "a whole clip from the start". Causal models also implement ``init_state``;
``stream_step`` is then a pure function of ``(frames, state)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import ClassifierHead, ConvBNAct, GlobalAvgPool, SpatioTemporalConv, State


class VideoClassifier(nn.Module):
    """Base class: ``forward(clip [B, 3, T, H, W]) -> logits [B, num_classes]``."""

    causal: bool = False
    #: fewest frames a whole clip may have (base models: the largest temporal kernel)
    min_frames: int = 1
    #: smallest height/width (one pixel left after every spatial downsampling)
    min_size: int = 32
    head: ClassifierHead

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final classifier (e.g. to fine-tune on another label set)."""
        self.head.reset(num_classes)

    def _run(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def init_state(self, batch_size: int, height: int, width: int, *,
                   dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> State:
        raise self._not_streamable()

    def check_clip(self, x: torch.Tensor, *, streaming: bool = False) -> None:
        """Raise a ``ValueError`` naming the expected shape if ``x`` is not a valid clip."""
        expected = "[B, 3, T, H, W] float"
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a tensor {expected}, got {type(x).__name__}")
        if x.dim() != 5:
            raise ValueError(f"expected a clip {expected}, got a {x.dim()}-D tensor of shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(
                f"expected 3 RGB channels in dim 1 of {expected}, got shape {tuple(x.shape)} "
                "(channels-last input? use x.permute(0, 4, 1, 2, 3))")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point clip {expected}, got dtype {x.dtype} "
                             "(convert uint8 frames with the model's transforms first)")
        min_frames = 1 if streaming else self.min_frames
        if x.shape[2] < min_frames:
            raise ValueError(f"{type(self).__name__} needs at least {min_frames} frames, got "
                             f"shape {tuple(x.shape)}")
        if min(x.shape[3:]) < self.min_size:
            raise ValueError(f"height and width must be >= {self.min_size}, got shape "
                             f"{tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole clip ``[B, 3, T, H, W]`` -> logits ``[B, num_classes]``."""
        self.check_clip(x)
        return self._run(x, None)[0]

    def stream_step(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Feed ``t >= 1`` frames ``[B, 3, t, H, W]``; returns logits of all frames so far."""
        if not self.causal:
            raise self._not_streamable()
        self.check_clip(frames, streaming=True)
        self._check_state(frames, state)
        return self._run(frames, state)

    def _check_state(self, frames: torch.Tensor, state: State) -> None:
        b, _, _, h, w = frames.shape
        expected = {k: tuple(v.shape) for k, v in
                    self.init_state(b, h, w, device="meta").items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if expected != got:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
            details = "; ".join(filter(None, [
                f"{len(missing)} missing, e.g. {missing[:3]}" if missing else "",
                f"{len(extra)} unexpected, e.g. {extra[:3]}" if extra else "",
                ", ".join(f"{k}: expected {expected[k]}, got {got[k]}" for k in wrong[:3]),
            ]))
            raise ValueError(
                f"state does not fit frames of shape {tuple(frames.shape)} ({details}); create it "
                f"with model.init_state(batch_size={b}, height={h}, width={w})")

    def _not_streamable(self) -> ValueError:
        from ..registry import list_models

        return ValueError(
            f"{type(self).__name__} was built non-causal and cannot stream; causal models that "
            f"stream: {', '.join(m for m in list_models() if m.endswith('_stream'))}")

    def _state_kwargs(self, dtype: torch.dtype | None,
                      device: torch.device | str | None) -> dict:
        """``dtype``/``device`` for new state tensors (default: the parameters')."""
        p = next(self.parameters())
        return {"dtype": dtype or p.dtype,
                "device": p.device if device is None else torch.device(device)}


class StagedClassifier(VideoClassifier):
    """The shape every family here shares: stem, stateful blocks, 1x1x1 projection,
    (streamable) global pooling, classifier head.

    Subclasses build ``stem``, ``project``, ``pool``, ``head`` and list their blocks in
    :meth:`stateful_blocks`; each block maps ``(x, state) -> (y, new state)`` and has
    ``init_state(batch, h, w, dtype=, device=)`` and ``output_size(h, w)``.
    """

    stem: SpatioTemporalConv
    project: ConvBNAct
    pool: GlobalAvgPool

    def stateful_blocks(self) -> Sequence[nn.Module]:
        raise NotImplementedError

    def init_state(self, batch_size: int, height: int, width: int, *,
                   dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> State:
        """Zero state for a video of ``height x width`` frames (causal models only)."""
        if not self.causal:
            raise self._not_streamable()
        kw = self._state_kwargs(dtype, device)
        state = self.stem.init_state(batch_size, height, width, **kw)
        h, w = self.stem.output_size(height, width)
        for block in self.stateful_blocks():
            state.update(block.init_state(batch_size, h, w, **kw))
            h, w = block.output_size(h, w)
        state.update(self.pool.init_state(batch_size, self.project.conv.out_channels, **kw))
        return state

    def forward_features(self, x: torch.Tensor, state: State | None = None
                         ) -> tuple[torch.Tensor, State]:
        """Clip ``[B, 3, T, H, W]`` -> pooled features ``[B, C, 1, 1, 1]`` and new state."""
        x, new_state = self.stem(x, state)
        for block in self.stateful_blocks():
            x, block_state = block(x, state)
            new_state = {**new_state, **block_state}
        x, pool_state = self.pool(self.project(x), state)
        return x, {**new_state, **pool_state}

    def _run(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        features, new_state = self.forward_features(x, state)
        return self.head(features), new_state


class Streamer:
    """Stateful convenience wrapper over ``stream_step`` (the seeds' stream buffers).

    ``streamer(frames)`` returns the logits so far; ``reset()`` starts a new video
    (what ``clean_activation_buffers()`` does in MoViNet-pytorch).
    """

    def __init__(self, model: VideoClassifier) -> None:
        if not model.causal:
            raise model._not_streamable()
        self.model = model
        self.state: State | None = None

    def reset(self) -> None:
        self.state = None

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            b, _, _, h, w = frames.shape
            self.state = self.model.init_state(b, h, w, dtype=frames.dtype, device=frames.device)
        logits, self.state = self.model.stream_step(frames, self.state)
        return logits
