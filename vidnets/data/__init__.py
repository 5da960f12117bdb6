"""Video data: label sets (decoding, samplers, transforms and datasets build on these)."""

from .labels import LABEL_SETS, load_labels

__all__ = ["LABEL_SETS", "load_labels"]
