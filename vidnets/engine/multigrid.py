"""Multigrid training (Wu et al., "A Multigrid Method for Efficiently Training Video
Models", CVPR 2020), following the rules of PySlowFast's ``slowfast/utils/multigrid.py``
and ``slowfast/datasets/multigrid_helper.py``.

* Long cycle: inside every stage of the base LR schedule the run visits the long-cycle
  shapes ``(batch, frames, size)`` in order, from coarse (few frames, small crops, a large
  batch) to the base shape, keeping ``batch * frames * size**2`` about constant. Every
  shape gets the same number of iterations, hence the same wall-clock. A fine-tuning phase
  at the base shape ends the run, and all epochs are rescaled so the whole run covers
  ``epoch_factor`` times the base number of epochs (with far fewer iterations).
* Short cycle: iteration ``i`` uses spatial size ``short_cycle_factors[i % 3] * base
  size`` (then the long-cycle size) with the batch grown to keep ``batch * size**2``.
* Sub-batch BN: the number of BatchNorm splits follows the batch so every split holds
  about ``bn_base_size`` clips.

Shapes here are global (all processes); :func:`per_rank` gives one process's share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

from torch import nn
from torch.utils.data import Sampler

from vidnets.layers.norm import set_num_splits

DEFAULT_LONG_CYCLE_FACTORS: tuple[tuple[float, float], ...] = (
    (0.25, 0.5 ** 0.5), (0.5, 0.5 ** 0.5), (0.5, 1.0), (1.0, 1.0))  # (time, space)
DEFAULT_SHORT_CYCLE_FACTORS: tuple[float, float] = (0.5, 0.5 ** 0.5)  # space
# Long-cycle boundaries for a cosine LR schedule, as fractions of the base epochs: three
# long cycles, then the base-shape fine-tuning phase (the step schedule of the
# x3d-multigrid seed: steps at 0.4, 0.65, 0.85 of training).
COSINE_CYCLE_FRACTIONS: tuple[float, ...] = (0.4, 0.65, 0.85)
MIN_SIZE = 8  # smallest crop a long or short cycle produces


@dataclass(frozen=True)
class MultigridShape:
    """A mini-batch shape: ``batch_size`` clips of ``frames`` x ``size`` x ``size``."""

    batch_size: int
    frames: int
    size: int

    def __post_init__(self) -> None:
        for name in ("batch_size", "frames", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MultigridShape.{name} must be a positive integer, "
                                 f"got {value!r}")

    @property
    def volume(self) -> int:
        """``batch_size * frames * size**2``: the cost of one iteration."""
        return self.batch_size * self.frames * self.size ** 2


@dataclass(frozen=True)
class MultigridStage:
    """Epochs ``[start_epoch, end_epoch)`` trained at one long-cycle ``shape`` (global).

    ``long_cycle_index`` indexes the long-cycle factors (``None`` in the fine-tuning phase);
    ``lr_stage`` is the step of the base LR schedule. ``lr_factor`` multiplies the base LR:
    ``gamma ** lr_stage * batch multiplier`` for a step schedule, the batch multiplier
    alone for a cosine schedule (:meth:`MultigridSchedule.lr_factor` adds the cosine).
    ``short_cycle`` tells whether the per-iteration short cycle runs. A stage may be empty
    (``start_epoch == end_epoch``) when a run has fewer epochs than stages.
    """

    start_epoch: int
    end_epoch: int
    shape: MultigridShape
    long_cycle_index: int | None
    lr_stage: int
    lr_factor: float
    short_cycle: bool

    @property
    def finetune(self) -> bool:
        return self.long_cycle_index is None

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.start_epoch


@dataclass(frozen=True)
class MultigridOptions:
    """Multigrid settings: the config's ``MultigridSection`` fields plus three of ours.

    ``gamma``: LR decay per step (PySlowFast ``SOLVER.GAMMA``). ``scale_lr_with_batch``:
    multiply the LR by the long-cycle batch multiplier (the linear scaling rule; PySlowFast
    does it for step schedules). ``short_cycle_in_finetune``: keep the short cycle in the
    final base-shape phase (PySlowFast and the x3d-multigrid seed do; off trains the
    fine-tuning phase at the base shape only, with its epochs recomputed for the same
    iteration budget).
    """

    long_cycle: bool = True
    short_cycle: bool = True
    long_cycle_factors: tuple[tuple[float, float], ...] = DEFAULT_LONG_CYCLE_FACTORS
    short_cycle_factors: tuple[float, ...] = DEFAULT_SHORT_CYCLE_FACTORS
    bn_base_size: int = 8
    epoch_factor: float = 1.5
    gamma: float = 0.1
    scale_lr_with_batch: bool = True
    short_cycle_in_finetune: bool = True

    def __post_init__(self) -> None:
        long = tuple(tuple(float(v) for v in pair) for pair in self.long_cycle_factors)
        if not long or any(len(p) != 2 or min(p) <= 0 for p in long):
            raise ValueError("multigrid long_cycle_factors must be a non-empty list of "
                             f"positive (time, space) pairs, got {self.long_cycle_factors!r}")
        short = tuple(float(v) for v in self.short_cycle_factors)
        if not short or min(short) <= 0:
            raise ValueError("multigrid short_cycle_factors must be positive space factors, "
                             f"got {self.short_cycle_factors!r}")
        if not isinstance(self.bn_base_size, int) or self.bn_base_size < 1:
            raise ValueError(f"multigrid bn_base_size must be a positive integer, "
                             f"got {self.bn_base_size!r}")
        if not self.epoch_factor > 0:
            raise ValueError(f"multigrid epoch_factor must be > 0, got {self.epoch_factor!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"multigrid gamma must be in (0, 1], got {self.gamma!r}")
        object.__setattr__(self, "long_cycle_factors", long)
        object.__setattr__(self, "short_cycle_factors", short)

    @classmethod
    def from_section(cls, section: object) -> MultigridOptions:
        """Options from any object with (some of) these attribute names, e.g. the config's
        ``MultigridSection``; missing attributes keep their defaults."""
        if isinstance(section, cls):
            return section
        present = {f.name: getattr(section, f.name) for f in fields(cls)
                   if hasattr(section, f.name)}
        return replace(cls(), **present)


def per_rank(shape: MultigridShape, world_size: int) -> MultigridShape:
    """One process's share of a global ``shape`` under data parallelism: the batch divided
    by ``world_size`` (floored, as PySlowFast's ``TRAIN.BATCH_SIZE / NUM_GPUS``)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if shape.batch_size < world_size:
        raise ValueError(f"a global batch of {shape.batch_size} cannot be split across "
                         f"{world_size} processes (at least one clip each)")
    return replace(shape, batch_size=shape.batch_size // world_size)


def short_cycle_shapes(shape: MultigridShape, factors: Sequence[float],
                       base_size: int | None = None) -> list[MultigridShape]:
    """The shapes of one short cycle around the long-cycle ``shape``: iteration ``i`` uses
    ``result[i % len(result)]``.

    Entry ``k < len(factors)`` has size ``round(factors[k] * base_size)`` (``base_size``:
    the run's base crop, default ``shape.size``; capped at ``shape.size``, at least
    :data:`MIN_SIZE`) and batch ``shape.batch_size * round((shape.size / (factors[k] *
    base_size))**2)`` (PySlowFast's ``ShortCycleBatchSampler``), so ``batch * size**2``
    stays about constant; the last entry is ``shape`` itself. With the default factors
    (0.5, 0.707) at the base shape: sizes ``S/2, 0.707 S, S`` with batches ``4B, 2B, B``.
    """
    reference = shape.size if base_size is None else base_size
    result = []
    for factor in factors:
        target = factor * reference
        size = min(shape.size, max(MIN_SIZE, round(target)))
        if size != round(target):  # capped or clamped: keep the cost of the real crop
            target = size
        multiplier = max(1, round((shape.size / target) ** 2))
        result.append(MultigridShape(shape.batch_size * multiplier, shape.frames, size))
    return [*result, shape]


def bn_splits(batch_size: int, bn_base_size: int) -> int:
    """Sub-batch BN split count for a per-process ``batch_size``: PySlowFast's
    ``int(batch_size / bn_base_size)`` (at least 1; below 1 PySlowFast syncs BN across
    devices instead), lowered to the largest divisor of ``batch_size`` so that every split
    holds the same number of clips."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(bn_base_size, int) or bn_base_size < 1:
        raise ValueError(f"bn_base_size must be a positive integer, got {bn_base_size!r}")
    target = max(1, batch_size // bn_base_size)
    return next(n for n in range(target, 0, -1) if batch_size % n == 0)


def apply_bn_splits(model: nn.Module, shape_or_batch: MultigridShape | int,
                    bn_base_size: int = 8) -> int:
    """Give every ``SubBatchNorm3d`` of ``model`` :func:`bn_splits` splits for a per-process
    batch; returns the split count. PySlowFast does this when the long-cycle shape changes,
    from the long-cycle batch: the short-cycle batches are whole multiples of it, so the
    count divides them too."""
    batch = shape_or_batch.batch_size if isinstance(shape_or_batch, MultigridShape) \
        else shape_or_batch
    splits = bn_splits(batch, bn_base_size)
    set_num_splits(model, splits)
    return splits


class MultigridSchedule:
    """The Multigrid plan of a run: stages of epochs, their shapes and LR multipliers.

    Built from the base run: ``base_batch_size`` (global), ``base_frames``, ``base_size``
    (train crop), ``base_epochs`` and ``lr_steps``, the epochs where the base step schedule
    decays the LR by ``gamma`` (PySlowFast ``SOLVER.STEPS``, a leading 0 optional), or
    ``"cosine"``. For a cosine schedule the long cycles restart at ``cycle_steps`` (default
    :data:`COSINE_CYCLE_FRACTIONS` of ``base_epochs``). ``options``: a
    :class:`MultigridOptions` or any object with its attribute names (the config section).

    Long cycle (PySlowFast ``get_long_cycle_schedule``): shape ``(t, s)`` has ``frames =
    round(t * T)``, ``size = round(s * S)``, batch multiplier ``m = round(T S^2 / (frames
    size^2))`` and, with its short cycle, a mean multiplier ``a`` per iteration. LR stage
    ``i`` of ``E_i`` epochs gives shape ``j`` ``E_i * a_j / sum(a)`` epochs (equal
    iterations). The fine-tuning phase gets the base's last ``base_epochs - steps[-1]``
    epochs divided by the iteration saving (base iterations / multigrid iterations) times
    its own ``a``. All epochs are then scaled to sum to ``epoch_factor * base_epochs`` and
    the stage ends are the rounded running sums. A step schedule splits the fine-tuning
    phase in halves at the previous LR and the decayed one.
    """

    def __init__(self, base_batch_size: int, base_frames: int, base_size: int,
                 base_epochs: int, lr_steps: Sequence[float] | Literal["cosine"],
                 options: object | None = None, *,
                 cycle_steps: Sequence[float] | None = None) -> None:
        self.options = MultigridOptions() if options is None \
            else MultigridOptions.from_section(options)
        self.base = MultigridShape(base_batch_size, base_frames, base_size)
        if not isinstance(base_epochs, int) or base_epochs < 1:
            raise ValueError(f"base_epochs must be a positive integer, got {base_epochs!r}")
        self.base_epochs = base_epochs
        self.cosine = isinstance(lr_steps, str)
        if self.cosine and lr_steps != "cosine":
            raise ValueError(f"lr_steps must be step epochs or 'cosine', got {lr_steps!r}")
        if self.cosine:
            steps = [f * base_epochs for f in COSINE_CYCLE_FRACTIONS] if cycle_steps is None \
                else cycle_steps
        elif cycle_steps is not None:
            raise ValueError("cycle_steps is for a cosine schedule; a step schedule's long "
                             "cycles follow lr_steps")
        else:
            steps = lr_steps
        self._steps = _check_steps(steps, base_epochs, "cycle_steps" if self.cosine
                                   else "lr_steps")
        self.stages: list[MultigridStage] = (
            self._long_cycle_stages() if self.options.long_cycle else self._base_stages())
        self.total_epochs: int = self.stages[-1].end_epoch
        if self.total_epochs < 1:
            raise ValueError(f"multigrid schedule of {base_epochs} base epochs x epoch_factor "
                             f"{self.options.epoch_factor} has no epoch")

    # ---- building -------------------------------------------------------------------

    def _long_cycle_shape(self, time_factor: float, space_factor: float) -> MultigridShape:
        frames = max(1, round(self.base.frames * time_factor))
        size = max(MIN_SIZE, round(self.base.size * space_factor))
        multiplier = max(1, round(self.base.frames * self.base.size ** 2 / (frames * size ** 2)))
        return MultigridShape(self.base.batch_size * multiplier, frames, size)

    def _cycle(self, shape: MultigridShape, short: bool) -> list[MultigridShape]:
        if not short:
            return [shape]
        return short_cycle_shapes(shape, self.options.short_cycle_factors, self.base.size)

    def _mean_multiplier(self, shape: MultigridShape, short: bool) -> float:
        cycle = self._cycle(shape, short)
        return sum(s.batch_size for s in cycle) / (len(cycle) * self.base.batch_size)

    def _lr_factor(self, lr_stage: int, shape: MultigridShape) -> float:
        multiplier = shape.batch_size / self.base.batch_size \
            if self.options.scale_lr_with_batch else 1.0
        return multiplier if self.cosine else self.options.gamma ** lr_stage * multiplier

    def _long_cycle_stages(self) -> list[MultigridStage]:
        opt, steps = self.options, self._steps
        short = opt.short_cycle
        shapes = [self._long_cycle_shape(t, s) for t, s in opt.long_cycle_factors]
        means = [self._mean_multiplier(s, short) for s in shapes]
        plan = []  # (long-cycle index or None, lr stage, shape, epochs before scaling)
        iterations = 0.0
        for lr_stage in range(len(steps) - 1):
            stage_epochs = steps[lr_stage + 1] - steps[lr_stage]
            for index, (shape, mean) in enumerate(zip(shapes, means, strict=True)):
                epochs = stage_epochs * mean / sum(means)
                iterations += epochs / mean
                plan.append((index, lr_stage, shape, epochs))
        saving = steps[-1] / iterations if iterations else 1.0
        ft_short = short and opt.short_cycle_in_finetune
        ft_epochs = ((self.base_epochs - steps[-1]) / saving
                     * self._mean_multiplier(shapes[-1], ft_short))
        plan.append((None, len(steps) - 1, shapes[-1], ft_epochs))
        scale = self.base_epochs * opt.epoch_factor / sum(p[3] for p in plan)

        stages, running, start = [], 0.0, 0
        for index, lr_stage, shape, epochs in plan:
            running += epochs * scale
            end = round(running)
            if index is None and not self.cosine:  # halves: previous LR, then decayed
                middle = (start + end) // 2
                stages.append(MultigridStage(start, middle, shape, None, lr_stage - 1,
                                             self._lr_factor(lr_stage - 1, shape), ft_short))
                start = middle
            stages.append(MultigridStage(start, end, shape, index, lr_stage,
                                         self._lr_factor(lr_stage, shape),
                                         ft_short if index is None else short))
            start = end
        return stages

    def _base_stages(self) -> list[MultigridStage]:
        """No long cycle: the base shape throughout; with the short cycle the epochs are
        scaled by ``epoch_factor`` (PySlowFast: ``int(step * EPOCH_FACTOR)``)."""
        factor = self.options.epoch_factor if self.options.short_cycle else 1.0
        bounds = [int(s * factor) for s in self._steps] if not self.cosine else [0]
        bounds.append(int(self.base_epochs * factor))
        return [MultigridStage(start, end, self.base, 0, i, self._lr_factor(i, self.base),
                               self.options.short_cycle)
                for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]

    # ---- queries --------------------------------------------------------------------

    def stage_at(self, epoch: float) -> MultigridStage:
        """The stage training ``epoch`` (epochs past the end: the last stage)."""
        return next((s for s in self.stages if epoch < s.end_epoch), self.stages[-1])

    def shape_at(self, epoch: int) -> MultigridShape:
        """The global long-cycle shape of ``epoch``."""
        return self.stage_at(epoch).shape

    def iteration_shapes(self, epoch: int, world_size: int = 1) -> list[MultigridShape]:
        """Per-process shapes of ``epoch``'s iterations: iteration ``i`` uses
        ``result[i % len(result)]`` (one shape when the short cycle is off)."""
        stage = self.stage_at(epoch)
        return self._cycle(per_rank(stage.shape, world_size), stage.short_cycle)

    def bn_splits_at(self, epoch: int, world_size: int = 1) -> int:
        """Sub-batch BN splits for ``epoch``'s per-process long-cycle batch."""
        batch = per_rank(self.shape_at(epoch), world_size).batch_size
        return bn_splits(batch, self.options.bn_base_size)

    def lr_factor(self, epoch_progress: float) -> float:
        """Multiplier of the base LR at ``epoch_progress`` (epochs, fractional): the stage's
        factor (PySlowFast ``SOLVER.LRS``), times ``(1 + cos(pi p / total)) / 2`` for a
        cosine schedule. Warm-up is the trainer's."""
        stage = self.stage_at(epoch_progress)
        if not self.cosine:
            return stage.lr_factor
        progress = min(max(epoch_progress, 0.0), self.total_epochs) / self.total_epochs
        return stage.lr_factor * 0.5 * (1.0 + math.cos(math.pi * progress))

    def describe(self) -> str:
        """A table of the stages, one line each, to log at the start of a run."""
        base = self.base
        lines = [f"Multigrid: base batch {base.batch_size} x {base.frames} frames x "
                 f"{base.size}px, {self.base_epochs} base epochs -> {self.total_epochs} "
                 f"epochs, LR {'cosine' if self.cosine else 'steps'}",
                 f"{'stage':>5} {'epochs':>11} {'cycle':>8} {'lr x':>8} {'bn':>3}  "
                 "iterations (batch x frames x size)"]
        for i, stage in enumerate(self.stages):
            cycle = "finetune" if stage.finetune else f"long {stage.long_cycle_index}"
            shapes = self._cycle(stage.shape, stage.short_cycle)
            text = ", ".join(f"{s.batch_size}x{s.frames}x{s.size}" for s in shapes)
            splits = bn_splits(stage.shape.batch_size, self.options.bn_base_size)
            lines.append(f"{i:>5} {stage.start_epoch:>5}-{stage.end_epoch:<5} {cycle:>8} "
                         f"{stage.lr_factor:>8.4g} {splits:>3}  {text}")
        return "\n".join(lines)


def _check_steps(steps: Sequence[float], base_epochs: int, name: str) -> list[float]:
    values = [float(s) for s in steps]
    if not values or values[0] != 0:
        values.insert(0, 0.0)
    if any(b <= a for a, b in zip(values, values[1:], strict=False)) or values[-1] > base_epochs:
        raise ValueError(f"multigrid {name} must increase from 0 to at most base_epochs "
                         f"{base_epochs}, got {list(steps)!r}")
    return values


class MultigridBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Batches of ``(index, frames, size)`` with the per-iteration shapes of Multigrid.

    Wraps an index ``sampler`` (``RandomSampler``, ``DistributedSampler``, ...): its indices
    are cut into batches whose sizes follow the short cycle of the current epoch
    (:meth:`MultigridSchedule.iteration_shapes` for this process, ``world_size``
    processes), and every index comes as ``(index, frames, size)`` for the dataset. A
    fixed sequence of per-process shapes may replace the schedule. ``drop_last`` drops a
    last, incomplete batch.

    Exact resume: a resumed run calls :meth:`set_epoch` then :meth:`skip` (or
    :meth:`load_state_dict`) and gets the same remaining batches, provided the wrapped
    sampler's order depends on the epoch only (``DistributedSampler`` with ``set_epoch``,
    ``SequentialSampler``; not an unseeded ``RandomSampler``). ``len()`` is the number of
    batches the next iteration yields (after the skip); :attr:`epoch_length` counts all.
    """

    def __init__(self, sampler: Iterable[int], schedule: MultigridSchedule
                 | Sequence[MultigridShape], *, drop_last: bool = False,
                 world_size: int = 1) -> None:
        if not hasattr(sampler, "__len__"):
            raise TypeError(f"MultigridBatchSampler needs a sampler with a length, got "
                            f"{type(sampler).__name__}")
        if not isinstance(schedule, MultigridSchedule) and (
                not schedule or not all(isinstance(s, MultigridShape) for s in schedule)):
            raise TypeError("schedule must be a MultigridSchedule or a non-empty sequence of "
                            f"MultigridShape, got {schedule!r}")
        self.sampler = sampler
        self.schedule = schedule
        self.drop_last = drop_last
        self.world_size = world_size
        self.epoch = 0
        self._skip = 0
        self._position = 0
        self.shapes = self._shapes_for(0)

    def _shapes_for(self, epoch: int) -> list[MultigridShape]:
        if isinstance(self.schedule, MultigridSchedule):
            return self.schedule.iteration_shapes(epoch, self.world_size)
        return list(self.schedule)

    def set_epoch(self, epoch: int) -> None:
        """Select ``epoch``'s shapes, reset the skip and forward to the wrapped sampler."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        self.epoch = epoch
        self.shapes = self._shapes_for(epoch)
        self._skip = 0
        self._position = 0

    def skip(self, n_batches: int) -> None:
        """Start this epoch's iterations after its first ``n_batches`` batches."""
        if not isinstance(n_batches, int) or not 0 <= n_batches <= self.epoch_length:
            raise ValueError(f"cannot skip {n_batches!r} batches of an epoch of "
                             f"{self.epoch_length}")
        self._skip = n_batches

    def state_dict(self, batches_done: int | None = None) -> dict[str, int]:
        """Position to resume from: the epoch and the batches done in it. By default the
        batches yielded so far, which with ``DataLoader`` workers runs ahead of those
        trained on: a trainer with workers passes its own count."""
        done = self._position if batches_done is None else batches_done
        return {"epoch": self.epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(state["epoch"])
        self.skip(state["batches_done"])

    @property
    def epoch_length(self) -> int:
        cycle = sum(s.batch_size for s in self.shapes)
        full_cycles = max(0, len(self.sampler) // cycle - 1)  # walk the tail only
        return full_cycles * len(self.shapes) + sum(1 for _ in self._tail(full_cycles * cycle))

    def _tail(self, consumed: int) -> Iterator[int]:
        left, i = len(self.sampler) - consumed, 0
        while left > 0:
            size = self.shapes[i % len(self.shapes)].batch_size
            if size > left and self.drop_last:
                return
            yield min(size, left)
            left -= size
            i += 1

    def __len__(self) -> int:
        return self.epoch_length - self._skip

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        shapes, skip = self.shapes, self._skip
        self._position = skip
        count, batch = 0, []
        shape = shapes[0]
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == shape.batch_size:
                count += 1
                if count > skip:
                    self._position = count
                    yield [(i, shape.frames, shape.size) for i in batch]
                batch = []
                shape = shapes[count % len(shapes)]
        if batch and not self.drop_last and count >= skip:
            self._position = count + 1
            yield [(i, shape.frames, shape.size) for i in batch]
