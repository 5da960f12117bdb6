"""Loading pretrained weights: checkpoint readers, archives and downloads."""

from . import vov3d, x3d  # noqa: F401  (register the VoV3D / X3D checkpoint converters)
from .checkpoint import load_checkpoint
from .safetensors_io import load_weights, read_metadata, save_weights

__all__ = ["load_checkpoint", "load_weights", "read_metadata", "save_weights"]
