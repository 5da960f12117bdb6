"""TensorFlow-style "same" padding.

TF pads ``max(k - ((n - 1) % s + 1), 0)`` in total and puts the odd element *after*:
a 3x3 stride-2 conv on an even size pads 0 before and 1 after. PyTorch's symmetric
``padding=`` cannot express that, so strided convs pad explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding TF's ``padding='same'`` uses for one dimension."""
    total = max(kernel - ((size - 1) % stride + 1), 0)
    return total // 2, total - total // 2


def same_output_size(size: int, stride: int) -> int:
    """Output size of a "same"-padded op: ``ceil(size / stride)``."""
    return math.ceil(size / stride)


def f_pad_args(pads: Sequence[tuple[int, int]]) -> list[int]:
    """Convert per-dimension (before, after) pairs, outermost first, to ``F.pad`` order."""
    out: list[int] = []
    for before, after in reversed(pads):
        out += [before, after]
    return out
