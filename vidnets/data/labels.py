"""Label sets shipped with vidnets (one class name per line, in dataset order)."""

from __future__ import annotations

from functools import cache
from importlib import resources

LABEL_SETS: tuple[str, ...] = (
    "kinetics400", "kinetics600", "kinetics700", "something_something_v2", "hmdb51", "ucf101",
)


@cache
def load_labels(name: str) -> tuple[str, ...]:
    """Class names of a shipped label set, e.g. ``load_labels("kinetics600")``."""
    if name not in LABEL_SETS:
        raise ValueError(f"unknown label set {name!r}; expected one of {LABEL_SETS}")
    text = resources.files("vidnets.data").joinpath("labels", f"{name}.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
