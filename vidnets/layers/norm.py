"""Batch normalisation: the official TF defaults, and sub-batch BN for Multigrid training."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# tf.keras BatchNormalization(momentum=0.99, epsilon=1e-3): the moving average keeps 99%
# of the old value, which is PyTorch momentum 0.01.
TF_BN_EPS = 1e-3
TF_BN_MOMENTUM = 0.01
# PyTorch's BatchNorm defaults, which the PySlowFast models (X3D, VoV3D) keep.
TORCH_BN_EPS = 1e-5
TORCH_BN_MOMENTUM = 0.1


def batch_norm(channels: int, dims: int, *, eps: float = TF_BN_EPS,
               momentum: float = TF_BN_MOMENTUM) -> nn.Module:
    """``BatchNorm2d`` (``dims=2``) or ``BatchNorm3d`` (``dims=3``)."""
    cls = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims]
    return cls(channels, eps=eps, momentum=momentum)


class SubBatchNorm3d(nn.BatchNorm3d):
    """``BatchNorm3d`` whose training statistics come from sub-batches (Multigrid training).

    Training (``[N, C, T, H, W]``): sample ``i`` goes to split ``i % num_splits``
    (PySlowFast's grouping: its ``[N, C] -> [N / s, s * C]`` reshape). Each split is
    normalised with its own mean and variance, then the one shared affine ``weight`` /
    ``bias`` is applied, and updates its own running statistics ``split_running_mean`` /
    ``split_running_var`` (``[num_splits, C]``) with ``momentum``.

    Any batch size works. When ``N`` is not a multiple of ``num_splits`` the splits are
    uneven (split ``k`` holds samples ``k, k + s, k + 2s, ...``: sizes differ by at most
    one); when ``N < num_splits`` each sample is its own split and splits ``N, N + 1, ...``
    receive nothing and keep their running statistics unchanged for that step.

    Inference is plain BatchNorm with ``running_mean`` / ``running_var``, which
    :meth:`aggregate_stats` sets from the splits: the mean of the split means, and the mean
    of the split variances plus the variance of the split means (the variance of the
    mixture of the splits). Call it before evaluating or exporting.

    State dict: the keys of a plain ``BatchNorm3d`` (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``: the inference layer) plus
    ``split_running_mean`` and ``split_running_var``. A plain ``BatchNorm3d`` state dict
    loads (every split starts from its running statistics); :meth:`to_batch_norm` returns
    the plain layer whose state dict loads into a ``BatchNorm3d``.
    """

    def __init__(self, num_features: int, num_splits: int, eps: float = TORCH_BN_EPS,
                 momentum: float = TORCH_BN_MOMENTUM, affine: bool = True,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        if momentum is None:
            raise ValueError("SubBatchNorm3d needs a float momentum (no cumulative averaging)")
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True,
                         device=device, dtype=dtype)
        _check_splits(num_splits)
        self.num_splits = num_splits
        kw = {"device": device, "dtype": dtype}
        self.register_buffer("split_running_mean", torch.zeros(num_splits, num_features, **kw))
        self.register_buffer("split_running_var", torch.ones(num_splits, num_features, **kw))

    @classmethod
    def from_batch_norm(cls, bn: nn.BatchNorm3d, num_splits: int) -> SubBatchNorm3d:
        """Sub-batch twin of ``bn``: the same parameter objects, splits from its statistics."""
        if not bn.track_running_stats or bn.momentum is None:
            raise ValueError(f"sub-batch BN needs running statistics and a float momentum: {bn}")
        sub = cls(bn.num_features, num_splits, bn.eps, bn.momentum, bn.affine,
                  device=bn.running_mean.device, dtype=bn.running_mean.dtype)
        sub.load_state_dict(bn.state_dict())
        if bn.affine:
            sub.weight, sub.bias = bn.weight, bn.bias
        return sub.train(bn.training)

    def to_batch_norm(self) -> nn.BatchNorm3d:
        """Plain ``BatchNorm3d`` with the aggregated statistics and the same parameters."""
        self.aggregate_stats()
        bn = nn.BatchNorm3d(self.num_features, self.eps, self.momentum, self.affine,
                            device=self.running_mean.device, dtype=self.running_mean.dtype)
        bn.load_state_dict(self._inference_state())
        if self.affine:
            bn.weight, bn.bias = self.weight, self.bias
        return bn.train(self.training)

    @torch.no_grad()
    def aggregate_stats(self) -> None:
        """Set the inference statistics from the per-split running statistics."""
        self.running_mean.copy_(self.split_running_mean.mean(0))
        self.running_var.copy_(self.split_running_var.mean(0)
                               + self.split_running_mean.var(0, correction=0))

    @torch.no_grad()
    def set_num_splits(self, num_splits: int) -> None:
        """Change the split count; aggregates first, then every split restarts from the
        aggregate (so the inference statistics are unchanged). A no-op for the same count."""
        _check_splits(num_splits)
        if num_splits == self.num_splits:
            return
        self.aggregate_stats()
        self.num_splits = num_splits
        self.split_running_mean = self.running_mean.repeat(num_splits, 1)
        self.split_running_var = self.running_var.repeat(num_splits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, T, H, W]`` -> same shape."""
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        self.num_batches_tracked.add_(1)
        n, c = x.shape[:2]
        s = self.num_splits
        if n % s == 0:  # one call: the splits side by side as channels
            y = F.batch_norm(x.reshape(n // s, s * c, *x.shape[2:]),
                             self.split_running_mean.view(-1), self.split_running_var.view(-1),
                             _tile(self.weight, s), _tile(self.bias, s), True, self.momentum,
                             self.eps)
            return y.reshape(x.shape)
        y = torch.empty_like(x)
        for k in range(min(n, s)):
            y[k::s] = F.batch_norm(x[k::s], self.split_running_mean[k], self.split_running_var[k],
                                   self.weight, self.bias, True, self.momentum, self.eps)
        return y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"

    def _inference_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("split_")}

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        split_keys = [prefix + "split_running_mean", prefix + "split_running_var"]
        plain = prefix + "running_mean" in state_dict and not any(
            k in state_dict for k in split_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if plain:  # a plain BatchNorm3d: every split starts from its statistics
            missing_keys[:] = [k for k in missing_keys if k not in split_keys]
            with torch.no_grad():
                self.split_running_mean.copy_(self.running_mean.expand_as(self.split_running_mean))
                self.split_running_var.copy_(self.running_var.expand_as(self.split_running_var))


def _check_splits(num_splits: int) -> None:
    if not isinstance(num_splits, int) or num_splits < 1:
        raise ValueError(f"num_splits must be a positive integer, got {num_splits!r}")


def _tile(p: torch.Tensor | None, times: int) -> torch.Tensor | None:
    return None if p is None else p.repeat(times)


def _sub_layers(model: nn.Module) -> list[SubBatchNorm3d]:
    return [m for m in model.modules() if isinstance(m, SubBatchNorm3d)]


def _swap_children(model: nn.Module, swap: Callable[[nn.Module], nn.Module | None]) -> None:
    """Replace every submodule ``m`` for which ``swap(m)`` is not ``None``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = swap(child)
            if new is not None:
                setattr(parent, name, new)


def convert_to_sub_batch_norm(model: nn.Module, num_splits: int) -> nn.Module:
    """In place: every ``BatchNorm3d`` of ``model`` becomes a :class:`SubBatchNorm3d`.

    The new layers share the old parameter objects (an optimizer built before keeps
    working) and start every split from the old running statistics. Layers that are
    already sub-batch get ``num_splits``. Other BatchNorms (``BatchNorm2d``: MoViNet's
    ``"2plus1d"`` inference layout folds frames into the batch) are refused: build the
    model with ``conv_type="3d_2plus1d"`` (the training layout) instead. Returns ``model``.
    """
    _check_splits(num_splits)
    others = [name for name, m in model.named_modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and not isinstance(m, nn.BatchNorm3d)]
    if others:
        raise ValueError(
            f"sub-batch BN replaces BatchNorm3d only; {len(others)} other BatchNorm layers, "
            f"e.g. {others[:3]} (a '2plus1d' MoViNet? build it with conv_type='3d_2plus1d')")
    for layer in _sub_layers(model):
        layer.set_num_splits(num_splits)
    _swap_children(model, lambda m: SubBatchNorm3d.from_batch_norm(m, num_splits)
                   if isinstance(m, nn.BatchNorm3d) and not isinstance(m, SubBatchNorm3d)
                   else None)
    return model


def convert_to_batch_norm(model: nn.Module) -> nn.Module:
    """In place: every :class:`SubBatchNorm3d` becomes a plain ``BatchNorm3d`` holding its
    aggregated statistics (for export: the state dict then has plain BN keys only)."""
    _swap_children(model, lambda m: m.to_batch_norm() if isinstance(m, SubBatchNorm3d) else None)
    return model


def set_num_splits(model: nn.Module, num_splits: int) -> int:
    """Give every :class:`SubBatchNorm3d` of ``model`` ``num_splits`` splits (Multigrid
    changes the batch size); returns how many layers (an error if none)."""
    layers = _sub_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no SubBatchNorm3d; call "
                         "convert_to_sub_batch_norm(model, num_splits) first")
    for layer in layers:
        layer.set_num_splits(num_splits)
    return len(layers)


def aggregate_sub_batch_stats(model: nn.Module) -> int:
    """:meth:`SubBatchNorm3d.aggregate_stats` on every layer (before evaluation); returns
    how many layers."""
    layers = _sub_layers(model)
    for layer in layers:
        layer.aggregate_stats()
    return len(layers)


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all processes.

    PyTorch's ``SyncBatchNorm`` runs on GPUs only; this one also runs on CPU (gloo). Each
    process computes the per-channel mean and mean of squares of its samples, one
    autograd-aware ``all_reduce`` averages them (every process must hold the same number
    of samples), and the layer normalises with the global statistics, so ``N`` processes
    with ``B / N`` samples each compute what one process computes with ``B``.
    Outside a process group, or in eval mode, it is plain BatchNorm. Any input rank
    ``[N, C, ...]``.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"DistributedBatchNorm expects [N, C, ...], got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(x)
        world = dist.get_world_size()
        dims = [0] + list(range(2, x.dim()))
        moments = torch.cat([x.mean(dims), (x * x).mean(dims)]) / world
        mean, mean_sq = all_reduce(moments).split(self.num_features)
        var = mean_sq - mean * mean
        count = world * x.numel() // self.num_features
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                unbiased = var * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_to_distributed_batch_norm(model: nn.Module) -> nn.Module:
    """In place: every plain BatchNorm (1d/2d/3d) becomes a :class:`DistributedBatchNorm`
    sharing its parameters and buffers (the state dict keeps the same keys). Returns
    ``model``."""

    def swap(m: nn.Module) -> nn.Module | None:
        if type(m) not in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            return None
        new = DistributedBatchNorm(m.num_features, m.eps, m.momentum, m.affine,
                                   m.track_running_stats)
        new.weight, new.bias = m.weight, m.bias
        new.running_mean, new.running_var = m.running_mean, m.running_var
        new.num_batches_tracked = m.num_batches_tracked
        new.train(m.training)
        return new

    _swap_children(model, swap)
    return model
