"""Multigrid schedule, short cycle, batch sampler and sub-batch BN splits."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, SequentialSampler

import vidnets
from vidnets.engine.multigrid import (
    MultigridBatchSampler,
    MultigridOptions,
    MultigridSchedule,
    MultigridShape,
    apply_bn_splits,
    bn_splits,
    per_rank,
    short_cycle_shapes,
)
from vidnets.layers.norm import SubBatchNorm3d, convert_to_sub_batch_norm

# PySlowFast configs/Kinetics/SLOWFAST_8x8_R50_stepwise_multigrid.yaml: batch 64,
# 32 frames, crop 224, SOLVER.STEPS [0, 94, 154, 196], MAX_EPOCH 239, defaults otherwise.
SLOWFAST = dict(base_batch_size=64, base_frames=32, base_size=224, base_epochs=239,
                lr_steps=[0, 94, 154, 196])


def slowfast_schedule(**options) -> MultigridSchedule:
    return MultigridSchedule(**SLOWFAST, options=MultigridOptions(**options))


def test_slowfast_schedule_equals_pyslowfast_by_hand():
    # Long-cycle shapes (t, s) = (8, 158), (16, 158), (16, 224), (32, 224): batch
    # multipliers round(32*224^2 / (t s^2)) = 8, 4, 2, 1; with the short cycle
    # (112 px, 158 px, own size) the batches are 16/8/8, 8/4/4, 8/4/2, 4/2/1 (x 64), mean
    # 32/3, 16/3, 14/3, 7/3 (sum 23). Each LR stage (94, 60, 42 epochs) splits 32:16:14:7;
    # iteration saving = 23/4, so the fine-tuning phase gets 43 / (23/4) * 7/3 epochs;
    # everything is scaled to 1.5 * 239 = 358.5 epochs and the running sums rounded.
    schedule = slowfast_schedule()
    ends = [s.end_epoch for s in schedule.stages]
    assert ends == [73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 343, 358]
    assert schedule.total_epochs == 358
    long_shapes = [(512, 8, 158), (256, 16, 158), (128, 16, 224), (64, 32, 224)]
    shapes = [(s.shape.batch_size, s.shape.frames, s.shape.size) for s in schedule.stages]
    assert shapes == long_shapes * 3 + [(64, 32, 224)] * 2
    # PySlowFast SOLVER.LRS: GAMMA ** stage * batch multiplier; the fine-tuning phase is
    # halved at (329 + 358) // 2 = 343: previous LR, then one more decay.
    expected_lr = [g * m for g in (1, 0.1, 0.01) for m in (8, 4, 2, 1)] + [0.01, 0.001]
    assert [s.lr_factor for s in schedule.stages] == pytest.approx(expected_lr)
    assert schedule.lr_factor(342.9) == pytest.approx(0.01)
    assert schedule.lr_factor(343.0) == pytest.approx(0.001)
    assert [s.long_cycle_index for s in schedule.stages] == [0, 1, 2, 3] * 3 + [None] * 2


@pytest.mark.parametrize("base", [(64, 32, 224), (16, 16, 224), (16, 16, 64), (8, 4, 182)])
def test_long_and_short_cycle_shapes_keep_the_iteration_cost(base):
    schedule = MultigridSchedule(*base, 20, [0, 8, 14, 17])
    volume = MultigridShape(*base).volume
    for epoch in range(schedule.total_epochs):
        for shape in schedule.iteration_shapes(epoch):
            assert shape.volume == pytest.approx(volume, rel=0.07), (epoch, shape)


def test_final_phase_trains_the_base_shape():
    schedule = MultigridSchedule(16, 16, 64, 30, "cosine")
    base = MultigridShape(16, 16, 64)
    last = schedule.stages[-1]
    assert last.finetune and last.epochs > 0 and last.shape == base
    assert schedule.shape_at(schedule.total_epochs - 1) == base
    assert schedule.shape_at(schedule.total_epochs + 5) == base
    assert schedule.shape_at(0) == MultigridShape(128, 4, 45)  # coarse first


def test_short_cycle_shapes_follow_pyslowfast():
    shapes = short_cycle_shapes(MultigridShape(16, 16, 224), (0.5, 0.5 ** 0.5))
    assert shapes == [MultigridShape(64, 16, 112), MultigridShape(32, 16, 158),
                      MultigridShape(16, 16, 224)]
    # In a coarse long cycle the sizes stay relative to the base crop: 158 px already is
    # 0.707 x 224, so the second short-cycle shape keeps the batch.
    coarse = short_cycle_shapes(MultigridShape(8, 8, 158), (0.5, 0.5 ** 0.5), base_size=224)
    assert coarse == [MultigridShape(16, 8, 112), MultigridShape(8, 8, 158),
                      MultigridShape(8, 8, 158)]


def test_short_cycle_in_finetune_can_be_switched_off():
    on, off = slowfast_schedule(), slowfast_schedule(short_cycle_in_finetune=False)
    assert len(on.iteration_shapes(on.total_epochs - 1)) == 3
    assert off.iteration_shapes(off.total_epochs - 1) == [MultigridShape(64, 32, 224)]
    assert len(off.iteration_shapes(0)) == 3
    # Same iteration budget: without the short cycle an epoch takes 7/3 as many
    # iterations, so the fine-tuning phase gets 3/7 of the (unscaled) epochs.
    ft_on = sum(s.epochs for s in on.stages if s.finetune)
    ft_off = sum(s.epochs for s in off.stages if s.finetune)
    assert ft_off < ft_on


def test_small_synthetic_run_has_valid_shapes():
    schedule = MultigridSchedule(16, 16, 64, 8, "cosine")
    assert schedule.total_epochs == 12
    tiny = MultigridSchedule(2, 2, 16, 4, [0, 2, 3])
    for sched in (schedule, tiny):
        for epoch in range(sched.total_epochs):
            for shape in sched.iteration_shapes(epoch):
                assert shape.batch_size >= 1 and shape.frames >= 1 and shape.size >= 8
        assert sched.stages[0].start_epoch == 0
        assert all(a.end_epoch == b.start_epoch for a, b in itertools.pairwise(sched.stages))
    assert "finetune" in schedule.describe()
    assert len(schedule.describe().splitlines()) == len(schedule.stages) + 2


def test_short_cycle_only_scales_the_epochs():
    schedule = slowfast_schedule(long_cycle=False)
    assert [s.end_epoch for s in schedule.stages] == [141, 231, 294, 358]
    assert all(s.shape == MultigridShape(64, 32, 224) and s.short_cycle
               for s in schedule.stages)
    assert [s.lr_factor for s in schedule.stages] == pytest.approx([1, 0.1, 0.01, 0.001])


def test_cosine_lr_factor():
    schedule = MultigridSchedule(16, 16, 64, 30, "cosine")
    total = schedule.total_epochs
    assert schedule.lr_factor(0) == pytest.approx(8.0)  # batch multiplier of the first shape
    assert schedule.lr_factor(total) == pytest.approx(0.0, abs=1e-12)
    first = schedule.stages[0]
    assert schedule.lr_factor(first.end_epoch - 0.01) < schedule.lr_factor(0)
    plain = MultigridSchedule(16, 16, 64, 30, "cosine",
                              MultigridOptions(scale_lr_with_batch=False))
    assert plain.lr_factor(0) == pytest.approx(1.0)
    assert plain.lr_factor(total / 2) == pytest.approx(0.5)


def test_options_from_a_duck_typed_section():
    section = SimpleNamespace(enabled=True, long_cycle=True, short_cycle=False,
                              long_cycle_factors=[[0.5, 1.0], [1.0, 1.0]],
                              short_cycle_factors=[0.5, 0.5 ** 0.5], bn_base_size=4,
                              epoch_factor=2.0)
    schedule = MultigridSchedule(16, 16, 64, 10, [0, 6], section)
    assert schedule.options.long_cycle_factors == ((0.5, 1.0), (1.0, 1.0))
    assert {s.shape for s in schedule.stages} == {MultigridShape(32, 8, 64),
                                                  MultigridShape(16, 16, 64)}
    assert schedule.total_epochs == 20
    assert schedule.iteration_shapes(0) == [MultigridShape(32, 8, 64)]
    assert schedule.bn_splits_at(0) == 8


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(lr_steps=[0, 50, 40]), "must increase"),
    (dict(lr_steps=[0, 300]), "at most base_epochs"),
    (dict(lr_steps="linear"), "'cosine'"),
    (dict(options=SimpleNamespace(epoch_factor=0)), "epoch_factor"),
    (dict(options=SimpleNamespace(long_cycle_factors=[(0.5, -1.0)])), "long_cycle_factors"),
    (dict(base_size=0), "size"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultigridSchedule(**dict(SLOWFAST, **kwargs))


def test_per_rank():
    assert per_rank(MultigridShape(16, 8, 64), 4) == MultigridShape(4, 8, 64)
    with pytest.raises(ValueError, match="cannot be split"):
        per_rank(MultigridShape(2, 8, 64), 4)


def _drain(batch_sampler) -> list[list[tuple[int, int, int]]]:
    return [list(batch) for batch in batch_sampler]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("num_items", [1, 37, 112, 113, 250])
def test_batch_sampler_covers_every_index_with_the_cycle_shapes(num_items, drop_last):
    schedule = MultigridSchedule(4, 8, 32, 6, [0, 4])
    sampler = MultigridBatchSampler(DistributedSampler(range(num_items), num_replicas=1,
                                                       rank=0, seed=1),
                                    schedule, drop_last=drop_last)
    for epoch in range(schedule.total_epochs):
        sampler.set_epoch(epoch)
        shapes = schedule.iteration_shapes(epoch)
        batches = _drain(sampler)
        assert len(batches) == len(sampler) == sampler.epoch_length
        indices = [i for batch in batches for i, _, _ in batch]
        assert len(indices) == len(set(indices))
        if not drop_last:
            assert sorted(indices) == list(range(num_items))
        for i, batch in enumerate(batches):
            shape = shapes[i % len(shapes)]
            assert {(t, s) for _, t, s in batch} == {(shape.frames, shape.size)}
            assert len(batch) == shape.batch_size or (i == len(batches) - 1 and not drop_last)
        dropped = num_items - len(indices)
        assert dropped < shapes[len(batches) % len(shapes)].batch_size


def test_batch_sampler_splits_global_batches_across_processes():
    schedule = MultigridSchedule(8, 8, 32, 4, [0, 3])
    ranks = []
    for rank in range(2):
        sampler = MultigridBatchSampler(
            DistributedSampler(range(100), num_replicas=2, rank=rank, seed=0),
            schedule, world_size=2)
        sampler.set_epoch(5)
        ranks.append(_drain(sampler))
    assert len(ranks[0]) == len(ranks[1]) == 5  # 50 items a process: 16, 8, 4, 16, 6
    per_process = schedule.iteration_shapes(5, world_size=2)
    assert [len(b) for b in ranks[0][:3]] == [s.batch_size for s in per_process]
    assert per_process[-1].batch_size * 2 == schedule.shape_at(5).batch_size
    assert {i for r in ranks for b in r for i, _, _ in b} == set(range(100))


def test_batch_sampler_resumes_mid_epoch():
    schedule = MultigridSchedule(4, 8, 32, 6, [0, 4])

    def make() -> MultigridBatchSampler:
        return MultigridBatchSampler(DistributedSampler(range(90), num_replicas=1, rank=0,
                                                        seed=7), schedule)

    reference = make()
    reference.set_epoch(7)  # batches of 16, 8, 4: 90 = 3 x 28 + 6, so 10 batches
    full = _drain(reference)
    assert len(full) == 10
    interrupted = make()
    interrupted.set_epoch(7)
    iterator = iter(interrupted)
    done = [next(iterator) for _ in range(4)]
    state = interrupted.state_dict()
    assert state == {"epoch": 7, "batches_done": 4} and done == full[:4]
    assert interrupted.state_dict(batches_done=3)["batches_done"] == 3  # trainer's count

    resumed = make()
    resumed.load_state_dict(state)
    assert len(resumed) == len(full) - 4
    assert _drain(resumed) == full[4:]
    resumed.set_epoch(3)  # a new epoch starts from its first batch again
    assert len(resumed) == resumed.epoch_length
    with pytest.raises(ValueError, match="cannot skip"):
        resumed.skip(resumed.epoch_length + 1)


class _ClipDataset(Dataset):
    """Items ``[3, T, S, S]`` whose shape comes from the ``(index, frames, size)`` key."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, key):
        index, frames, size = key
        return {"video": torch.full((3, frames, size, size), float(index)), "index": index}


def test_data_loader_yields_the_cycle_shapes():
    shapes = [MultigridShape(4, 2, 8), MultigridShape(2, 2, 12), MultigridShape(1, 4, 16)]
    batch_sampler = MultigridBatchSampler(SequentialSampler(range(19)), shapes)
    loader = DataLoader(_ClipDataset(), batch_sampler=batch_sampler)
    got = [tuple(batch["video"].shape) for batch in loader]
    assert len(got) == len(loader) == 8
    assert got[:4] == [(4, 3, 2, 8, 8), (2, 3, 2, 12, 12), (1, 3, 4, 16, 16),
                       (4, 3, 2, 8, 8)]
    assert got[-1] == (1, 3, 2, 12, 12)  # 19 = 2 x 7 + 4 + 1: partial last batch


def test_bn_splits_divide_the_batch():
    assert [bn_splits(b, 8) for b in (1, 7, 8, 16, 20, 24, 28, 64)] == [1, 1, 1, 2, 2, 3, 2, 8]
    for batch in range(1, 200):
        splits = bn_splits(batch, 8)
        assert batch % splits == 0 and splits <= max(1, batch // 8)
    schedule = slowfast_schedule()
    for epoch in range(schedule.total_epochs):
        for world_size in (1, 8):
            splits = schedule.bn_splits_at(epoch, world_size)
            assert all(s.batch_size % splits == 0
                       for s in schedule.iteration_shapes(epoch, world_size))
    assert schedule.bn_splits_at(0, world_size=8) == 8  # 512 / 8 GPUs / 8 clips


def test_apply_bn_splits_on_x3d():
    torch.manual_seed(0)
    model = vidnets.create_model("x3d_xs", num_classes=5)
    convert_to_sub_batch_norm(model, 1).train()
    layers = [m for m in model.modules() if isinstance(m, SubBatchNorm3d)]
    for shape, expected in ((MultigridShape(4, 4, 32), 2), (MultigridShape(6, 2, 40), 3)):
        assert apply_bn_splits(model, shape, bn_base_size=2) == expected
        assert {m.num_splits for m in layers} == {expected}
        clip = torch.randn(shape.batch_size, 3, shape.frames, shape.size, shape.size)
        logits = model(clip)
        assert logits.shape == (shape.batch_size, 5) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="no SubBatchNorm3d"):
        apply_bn_splits(vidnets.create_model("x3d_xs", num_classes=5), 8)
