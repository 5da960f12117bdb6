"""Temporal ensembles: several models on one source clip, class probabilities averaged.

MoViNet-A6 is the official example: MoViNet-A4 and MoViNet-A5, each at its own frame
rate and resolution, probabilities averaged. The output is ``log(mean_i softmax(z_i))``
of the members' logits ``z_i``: log-probabilities, used as logits (softmax gives the
averaged probabilities back, argmax and top-k are those of the average); no member
has a softmax inside.

Every member sees the source clip resampled to its own input:

* time: the ensemble knows the source frame rate and each member's. Member frame ``j``
  is the first source frame at or after its time ``j / member_fps``: source frame
  ``ceil(j * source_fps / member_fps)`` (exact rational arithmetic). A member may not
  run faster than the source (no frame is repeated).
* space: the ensemble knows its reference source size and each member's size; frames
  are scaled by ``member_size / source_size`` (the aspect ratio kept, each side rounded
  half up), frame by frame, with ``F.interpolate(mode="bilinear", align_corners=False,
  antialias=False)``. No antialiasing: the official evaluation resizes with TF's default
  ``tf.image.resize`` (no antialias) and the scales are mild (A4 gets 290/320).

Streaming (all members causal): the state is one ``dict[str, Tensor]``: each member's
state under ``"{member}/{key}"``, ``"source_frame_count"`` ``[B]`` (source frames seen,
which decides the frames each member keeps from the next chunk) and
``"logits_{member}"`` ``[B, C]`` (a member's logits so far: a chunk may hold none of its
frames). The videos of a batch must be at the same source frame.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..layers import FrameCounter, State
from . import movinet
from .base import VideoClassifier


@dataclass(frozen=True)
class MemberInput:
    """Frame rate and frame side of a member's input (its registry ``fps`` / ``size``)."""

    fps: float
    size: int


def selected_frames(start: int, stop: int, ratio: Fraction) -> list[int]:
    """Source frames in ``[start, stop)`` a member keeps; ``ratio`` = member / source fps.

    Member frame ``j`` is source frame ``ceil(j / ratio)``, so whether a source frame is
    kept depends on its index alone: a clip cut into chunks keeps the same frames.
    """
    first = math.floor((start - 1) * ratio) + 1
    last = math.floor((stop - 1) * ratio)
    return [-(-j * ratio.denominator // ratio.numerator) for j in range(first, last + 1)]


def _round(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def resize_frames(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of every frame, no antialias: ``[B, C, T, H, W]`` -> ``[B, C, T, h, w]``."""
    b, c, t, h, w = x.shape
    if (h, w) == size:
        return x
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False,
                           antialias=False)
    return frames.reshape(b, t, c, *size).transpose(1, 2)


class Ensemble(VideoClassifier):
    """Probability-averaging ensemble of ``members`` fed from one source clip.

    ``inputs[name]``: that member's frame rate and size; ``source_fps``: the frame rate of
    the clips given to the ensemble; ``source_size``: the source frame side at which each
    member gets exactly its ``size`` (other source sizes scale proportionally).
    ``forward``: clip ``[B, 3, T, H, W]`` -> ``log(mean_i softmax(z_i))`` ``[B, C]``.
    Causal when every member is; then it streams (see the module docstring).
    """

    def __init__(self, members: Mapping[str, VideoClassifier], inputs: Mapping[str, MemberInput],
                 *, source_fps: float, source_size: int) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if set(inputs) != set(members):
            raise ValueError(f"inputs {sorted(inputs)} do not name the members {sorted(members)}")
        bad = [n for n in members if not n.isidentifier()]
        if bad:
            raise ValueError(f"member names must be identifiers (they prefix state keys), got "
                             f"{bad}")
        classes = {name: m.num_classes for name, m in members.items()}
        if len(set(classes.values())) > 1:
            raise ValueError(f"ensemble members must predict the same classes, got {classes}")
        self.members = nn.ModuleDict(members)
        self.inputs = dict(inputs)
        self.source_fps = source_fps
        self.source_size = source_size
        self.causal = all(m.causal for m in members.values())
        self._ratio: dict[str, Fraction] = {}
        self._scale: dict[str, Fraction] = {}
        min_frames, min_size = 1, 1
        for name, member in members.items():
            ratio = Fraction(inputs[name].fps) / Fraction(source_fps)
            if not 0 < ratio <= 1:
                raise ValueError(f"member {name!r} runs at {inputs[name].fps} fps, the source at "
                                 f"{source_fps}: members can only subsample the source")
            scale = Fraction(inputs[name].size, source_size)
            self._ratio[name], self._scale[name] = ratio, scale
            # enough source frames / pixels that the member gets its own minimum
            min_frames = max(min_frames, 1 + math.ceil((member.min_frames - 1) / ratio))
            min_size = max(min_size, math.ceil((member.min_size - Fraction(1, 2)) / scale))
        self.min_frames, self.min_size = min_frames, min_size
        self._counter = FrameCounter("source_frame_count")

    @property
    def num_classes(self) -> int:
        return next(iter(self.members.values())).num_classes

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every member's classifier."""
        for member in self.members.values():
            member.reset_classifier(num_classes)

    def member_size(self, name: str, height: int, width: int) -> tuple[int, int]:
        """Frame size member ``name`` gets from ``height x width`` source frames."""
        scale = self._scale[name]
        return _round(height * scale), _round(width * scale)

    def init_state(self, batch_size: int, height: int, width: int, *,
                   dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None) -> State:
        """Zero state for ``height x width`` source frames (all members causal)."""
        if not self.causal:
            raise self._not_streamable()
        kw = self._state_kwargs(dtype, device)
        state = self._counter.init_state(batch_size, kw["device"])
        for name, member in self.members.items():
            h, w = self.member_size(name, height, width)
            member_state = member.init_state(batch_size, h, w, **kw)
            state.update({f"{name}/{k}": v for k, v in member_state.items()})
            state[f"logits_{name}"] = torch.zeros(batch_size, member.num_classes, **kw)
        return state

    def member_inputs(self, x: torch.Tensor, start: int = 0) -> dict[str, torch.Tensor | None]:
        """Each member's frames ``[B, 3, t_i, h_i, w_i]`` of source frames ``x``
        ``[B, 3, t, H, W]`` numbered from ``start`` (``None``: it keeps none of them)."""
        t, h, w = x.shape[2:]
        out: dict[str, torch.Tensor | None] = {}
        for name in self.members:
            keep = [i - start for i in selected_frames(start, start + t, self._ratio[name])]
            frames = x if len(keep) == t else x[:, :, keep]
            out[name] = resize_frames(frames, self.member_size(name, h, w)) if keep else None
        return out

    def _run(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        if state is None:
            inputs = self.member_inputs(x)
            return self._average([self.members[n](inputs[n]) for n in self.members]), {}
        count = state[self._counter.key]
        if not bool((count == count[0]).all()):
            raise ValueError(f"the videos of a batch must be at the same source frame, got "
                             f"{count.tolist()}; stream them in separate batches")
        inputs = self.member_inputs(x, int(count[0].item()))
        new_state: State = {self._counter.key: count + x.shape[2]}
        logits = []
        for name, member in self.members.items():
            prefix = f"{name}/"
            member_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if inputs[name] is None:
                z = state[f"logits_{name}"]
            else:
                z, member_state = member.stream_step(inputs[name], member_state)
            new_state.update({prefix + k: v for k, v in member_state.items()})
            new_state[f"logits_{name}"] = z
            logits.append(z)
        return self._average(logits), new_state

    @staticmethod
    def _average(logits: list[torch.Tensor]) -> torch.Tensor:
        """``log(mean_i softmax(z_i))``, computed stably: ``[B, C]`` each -> ``[B, C]``."""
        log_probs = torch.stack([F.log_softmax(z, dim=1) for z in logits])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))


def create_ensemble(members: Mapping[str, str], *, source_fps: float, source_size: int,
                    num_classes: int = 600,
                    member_weights: Mapping[str, str | os.PathLike] | None = None,
                    **kwargs: Any) -> Ensemble:
    """Ensemble of registered models: ``members`` maps a member name to a registered name.

    Each member is fed at its registry ``fps`` and ``size``; all must share the input
    normalisation. ``member_weights``: optional weights per member name (anything
    :func:`vidnets.create_model` loads, e.g. the official checkpoints); ``kwargs`` go to
    every member's builder.
    """
    from ..registry import create_model, model_config

    configs = {name: model_config(registered) for name, registered in members.items()}
    norms = {name: (c.mean, c.std, c.input_range) for name, c in configs.items()}
    if len(set(norms.values())) > 1:
        raise ValueError(f"ensemble members must share the input normalisation, got {norms}")
    member_weights = member_weights or {}
    unknown = set(member_weights) - set(members)
    if unknown:
        raise ValueError(f"member_weights for unknown members {sorted(unknown)}")
    models = {name: create_model(registered, num_classes, member_weights.get(name), **kwargs)
              for name, registered in members.items()}
    inputs = {name: MemberInput(c.fps, c.size) for name, c in configs.items()}
    return Ensemble(models, inputs, source_fps=source_fps, source_size=source_size)


def _ensemble_config(name: str, members: Mapping[str, ModelConfig], *, frames: int, fps: float,
                     size: int, top1: float | None = None) -> ModelConfig:
    """Registry entry: params and GFLOPs are the members' sums (each at its own input)."""
    first = next(iter(members.values()))
    return ModelConfig(
        name=name, family="ensemble",
        build=partial(create_ensemble, {k: c.name for k, c in members.items()}, source_fps=fps,
                      source_size=size),
        frames=frames, size=size, fps=fps, mean=first.mean, std=first.std,
        num_classes=first.num_classes, label_set=first.label_set,
        causal=all(c.causal for c in members.values()),
        params=sum(c.params for c in members.values()),
        gflops=sum(c.gflops for c in members.values()), top1=top1, dataset=first.dataset,
        input_range=first.input_range,
    )


_MOVINETS = {c.name: c for c in movinet.CONFIGS}
# MoViNet-A6 (seed README: "an ensemble of MoViNet-A4 and MoViNet-A5", 84.8% top-1 on
# Kinetics-600; single-clip evaluation of the base models). The source is A5's input,
# 120 frames of 320x320 at 12 fps: A5 gets it unchanged, A4 every frame at or after
# its 8 fps ticks (80 frames) at 290x290. The streaming twin has no official accuracy.
CONFIGS: tuple[ModelConfig, ...] = tuple(
    _ensemble_config(f"movinet_a6{suffix}",
                     {m: _MOVINETS[f"movinet_{m}_{kind}"] for m in ("a4", "a5")},
                     frames=120, fps=12, size=320, top1=top1)
    for suffix, kind, top1 in (("", "base", 84.8), ("_stream", "stream", None)))
