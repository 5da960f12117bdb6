"""Loading pretrained weights: checkpoint readers, archives and downloads."""

from .checkpoint import load_checkpoint
from .safetensors_io import load_weights, read_metadata, save_weights

__all__ = ["load_checkpoint", "load_weights", "read_metadata", "save_weights"]
