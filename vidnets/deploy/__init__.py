"""Deployment: the inference form of a model (BN folded, 2plus1d layout), the 4-D one-frame
streaming graph, export (ONNX, torch.export, ExecuTorch), int8 quantisation, streaming
runtimes, and inference on videos and live streams (`vidnets predict` / `vidnets stream`)."""

from .backends import BACKENDS, available_backends, create_streamer, resolve_backend
from .export import FORMATS, GRAPHS, build_graph, export_model, read_sidecar
from .fold import deploy_model
from .frame import FrameModel, clip_state, frame_state

__all__ = [
    "BACKENDS", "FORMATS", "GRAPHS", "FrameModel", "available_backends", "build_graph",
    "clip_state", "create_streamer", "deploy_model", "export_model", "frame_state",
    "read_sidecar", "resolve_backend",
]
