"""int8 post-training quantisation of the one-frame streaming graph, with stateful
calibration (the state threaded through each calibration video, as the official
``quantize_movinet.py`` does), for ONNX Runtime.

The float frame graph (:mod:`vidnets.deploy.frame`) is exported to ONNX; each calibration
video is streamed through it frame by frame with the float state carried from call to
call, and every call's inputs (frame and state) are what the calibrator observes, so the
activation ranges are those of real streaming. Convolutions get int8 weights (per output
channel) and uint8 activations (QDQ format), by default except those on pooled ``1 x 1``
features (squeeze-excitation and head) and the temporal convs over the stream buffers
(negligible compute); the elementwise ops between them, the cumulative pools (running
sums and frame counters) and the state stay in float, so the quantised graph has the float
graph's inputs, outputs and state layout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.base import VideoClassifier
from .export import GraphSpec, build_graph, export_onnx, initial_state, save_sidecar


def stateful_inputs(session: Any, spec: GraphSpec, videos: Iterable[torch.Tensor]
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Inputs of every call when each video ``[3, T, H, W]`` is streamed one frame at a
    time through the float ``session``, the state carried from frame to frame."""
    zero = {k: v.numpy() for k, v in initial_state(spec).items()}
    for video in videos:
        state = zero
        for t in range(video.shape[1]):
            feed = {spec.input_names[0]: video[None, :, t].contiguous().numpy(), **state}
            yield feed
            out = session.run(spec.output_names, feed)
            state = dict(zip(spec.state_keys, out[1:], strict=True))


class StatefulCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over :func:`stateful_inputs`."""

    def __init__(self, session: Any, spec: GraphSpec, videos: Iterable[torch.Tensor]) -> None:
        self.inputs = stateful_inputs(session, spec, videos)
        self.frames = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self.inputs, None)
        self.frames += feed is not None
        return feed

    def rewind(self) -> None:
        raise NotImplementedError("stateful calibration streams each video once")


def float_convs(path: Path) -> list[str]:
    """Names of the Conv nodes of an ONNX frame graph kept in float: those on pooled
    ``1 x 1`` features (squeeze-excitation, head) and the temporal ``kt x 1`` convs over
    the stream buffers (negligible compute; quantising them costs accuracy)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.input]}
    kernels = {t.name: numpy_helper.to_array(t).shape[2:] for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        kh, kw = kernels.get(node.input[1], (0, 0))
        if shapes.get(node.input[0], [0, 0, 0, 0])[2:] == [1, 1] or (kh > 1 and kw == 1):
            names.append(node.name)
    return names


def quantize_onnx_frame_graph(model: VideoClassifier, videos: Iterable[torch.Tensor],
                              path: str | Path, *, height: int, width: int,
                              calibration: str = "percentile", keep_float: bool = True,
                              metadata: dict[str, Any] | None = None) -> Path:
    """Write the int8 one-frame graph of a causal ``model`` to ``path`` (ONNX, QDQ).

    ``videos``: preprocessed calibration videos ``[3, T, height, width]``.
    ``calibration``: ``minmax``, ``percentile`` or ``entropy`` activation ranges.
    ``keep_float``: keep the convs of :func:`float_convs` in float."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if calibration not in methods:
        raise ValueError(f"unknown calibration {calibration!r}; expected one of {list(methods)}")
    path = Path(path)
    module, args, spec = build_graph(model, "frame", height=height, width=width)
    with tempfile.TemporaryDirectory(prefix="vidnets-int8-") as tmp:
        float_path = export_onnx(module, args, spec, Path(tmp) / "float.onnx")
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        session = ort.InferenceSession(str(float_path), providers=["CPUExecutionProvider"])
        reader = StatefulCalibrationReader(session, spec, videos)
        path.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(str(prepared), str(path), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True,
                        nodes_to_exclude=float_convs(prepared) if keep_float else [],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[calibration])
    if reader.frames == 0:
        path.unlink(missing_ok=True)
        raise ValueError("calibration needs at least one frame")
    meta = {**(metadata or {}), "quantization": {
        "scheme": "int8 QDQ: per-channel int8 conv weights, uint8 activations",
        "calibration": f"stateful, {calibration}", "calibration_frames": reader.frames,
        "float_convs": "pooled and temporal" if keep_float else "none"}}
    save_sidecar(path, spec, meta)
    return path
