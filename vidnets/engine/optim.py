"""Optimisers, learning-rate schedules and mixed precision.

The schedule is one pure function, :func:`lr_factor`, of the (fractional) epoch: a
per-iteration ``LambdaLR`` is built on it, and Multigrid training, whose steps per epoch
change, can set the rate from its own epoch progress with :func:`set_lr_factor`.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimSection

# Layers whose parameters are never weight-decayed (affine scale and shift of a norm).
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def param_groups(model: nn.Module, weight_decay: float, *,
                 no_decay_norm_bias: bool = True) -> list[dict[str, Any]]:
    """Parameter groups: ``"decay"`` with ``weight_decay``, ``"no_decay"`` with 0.

    With ``no_decay_norm_bias`` the parameters of normalisation layers (any BatchNorm,
    incl. ``SubBatchNorm3d``, GroupNorm, LayerNorm, InstanceNorm), every bias and every
    0-d / 1-d parameter (e.g. the ReZero ``scale``) go to ``"no_decay"``; conv and linear
    weights decay. Frozen parameters are left out; shared ones appear once. Empty groups
    are dropped.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module, name, param in _unique_parameters(model):
        exempt = isinstance(module, NORM_LAYERS) or name.endswith("bias") or param.ndim <= 1
        (no_decay if no_decay_norm_bias and exempt else decay).append(param)
    groups = [{"name": "decay", "params": decay, "weight_decay": weight_decay},
              {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _unique_parameters(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                yield module, name, param


def scaled_lr(section: OptimSection, global_batch: int) -> float:
    """Linear scaling rule: ``lr * global_batch / base_batch_size`` (``lr`` when no base)."""
    if global_batch < 1:
        raise ValueError(f"global batch size must be >= 1, got {global_batch}")
    if section.base_batch_size is None:
        return section.lr
    return section.lr * global_batch / section.base_batch_size


def build_optimizer(model: nn.Module, section: OptimSection, *,
                    global_batch: int) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW at :func:`scaled_lr`, with :func:`param_groups`.

    Every group records its peak rate as ``initial_lr`` (what schedules multiply).
    """
    lr = scaled_lr(section, global_batch)
    groups = param_groups(model, section.weight_decay,
                          no_decay_norm_bias=section.no_decay_norm_bias)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    if section.name == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=section.momentum,
            nesterov=section.nesterov and section.momentum > 0)
    elif section.name == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, betas=section.betas)
    else:
        raise ValueError(f"unknown optimiser {section.name!r}; expected 'sgd' or 'adamw'")
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", lr)
    return optimizer


def lr_factor(section: OptimSection, progress_epochs: float, total_epochs: float) -> float:
    """Multiplier of the peak rate after ``progress_epochs`` (fractional) of ``total_epochs``.

    ``cosine``: ``min + (1 - min) * (1 + cos(pi * e / total)) / 2`` over the whole run;
    ``constant``: 1; ``steps``: ``gamma ** (number of steps <= e)``. During the first
    ``warmup_epochs`` the factor rises linearly from ``warmup_start_factor`` to the
    schedule's value at the end of warm-up (PySlowFast's and the TF Model Garden's rule:
    for a cosine schedule that is slightly below 1, and the curve stays continuous).
    """
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}")
    warmup = section.warmup_epochs
    if progress_epochs < warmup:
        end = _schedule_factor(section, warmup, total_epochs)
        start = section.warmup_start_factor
        return start + (end - start) * progress_epochs / warmup
    return _schedule_factor(section, progress_epochs, total_epochs)


def _schedule_factor(section: OptimSection, epoch: float, total: float) -> float:
    if section.schedule == "constant":
        return 1.0
    if section.schedule == "steps":
        return section.gamma ** bisect.bisect_right(sorted(section.steps), epoch)
    if section.schedule == "cosine":
        floor = section.min_lr_factor
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(epoch, total) / total))
    raise ValueError(f"unknown lr schedule {section.schedule!r}; expected cosine, constant "
                     "or steps")


def build_scheduler(optimizer: torch.optim.Optimizer, section: OptimSection, *,
                    steps_per_epoch: int, epochs: int) -> LambdaLR:
    """Per-iteration schedule: after ``k`` calls of ``step()`` the rate of every group is
    ``initial_lr * lr_factor(section, k / steps_per_epoch, epochs)``.

    Its ``state_dict()`` holds plain numbers only, and loading it continues the sequence.
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")

    def factor(step: int) -> float:
        return lr_factor(section, step / steps_per_epoch, epochs)

    return LambdaLR(optimizer, factor)


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's rate to ``initial_lr * factor`` (Multigrid); returns the first
    group's new rate."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
    return optimizer.param_groups[0]["lr"]


def _device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def autocast_context(amp: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` = ``"bf16"`` (CPU or GPU) or ``"fp16"`` (GPU only);
    ``"none"``: a no-op context."""
    device = _device(device)
    if amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp {amp!r}: expected none, bf16 or fp16")
    if amp == "fp16" and device.type == "cpu":
        raise ValueError("amp 'fp16' needs a GPU (float16 autocast is not supported on "
                         "CPU); use amp=bf16 on CPU")
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def make_grad_scaler(amp: str, device: torch.device | str) -> torch.amp.GradScaler:
    """Loss scaler, enabled only for fp16 on CUDA (bf16 needs none); a disabled scaler's
    ``scale``/``step``/``update`` are pass-throughs, so the loop needs no branches."""
    device = _device(device)
    enabled = amp == "fp16" and device.type == "cuda"
    return torch.amp.GradScaler(device.type, enabled=enabled)
