"""Batch sampling that a resumed or distributed run reproduces exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ShardedBatchSampler(Sampler[list[int]]):
    """Global batches of a seeded per-epoch permutation, each split across processes.

    Epoch ``e`` shuffles ``range(num_items)`` with seed ``seed + e`` (or keeps the order
    when ``shuffle`` is off) and cuts it into global batches of ``global_batch``; process
    ``rank`` takes slice ``[rank * b, (rank + 1) * b)`` of each, ``b = global_batch /
    world_size``. One process with the full batch therefore sees, in order, the
    concatenation of what every process sees. ``start_batch`` skips the batches an
    interrupted run already did (resume); it applies to the current epoch only.
    """

    def __init__(self, num_items: int, global_batch: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True, drop_last: bool = True) -> None:
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by the "
                             f"{world_size} processes")
        if num_items < (global_batch if drop_last else 1):
            raise ValueError(f"{num_items} items cannot fill one batch of {global_batch}")
        self.num_items, self.global_batch = num_items, global_batch
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        full, rest = divmod(self.num_items, self.global_batch)
        return full + (0 if self.drop_last or rest == 0 else 1) - self.start_batch

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        per_rank = self.global_batch // self.world_size
        total = len(self) + self.start_batch
        for b in range(self.start_batch, total):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            if len(batch) < self.global_batch:
                per_rank = -(-len(batch) // self.world_size)
            yield batch[self.rank * per_rank:(self.rank + 1) * per_rank]
