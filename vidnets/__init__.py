"""vidnets: efficient video recognition in PyTorch (MoViNet, X3D, VoV3D)."""

from .config import ModelConfig
from .models import Streamer, VideoClassifier
from .registry import create_model, list_models, model_config

__version__ = "0.1.0"

__all__ = ["ModelConfig", "Streamer", "VideoClassifier", "__version__", "create_model",
           "list_models", "model_config"]
