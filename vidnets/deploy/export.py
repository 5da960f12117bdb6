"""Export to ONNX, ``torch.export`` (``.pt2``), ExecuTorch (``.pte``, XNNPACK) and TFLite.

Three graphs, all built from the deployed model (BN folded, ``2plus1d`` layout):

* ``clip``:   ``clip [B, 3, T, H, W] -> logits``;
* ``stream``: ``frames [B, 3, t, H, W], *state -> logits, *new_state`` (a chunk per call,
  ``t`` fixed or dynamic in ONNX);
* ``frame``:  ``frame [B, 3, H, W], *state -> logits, *new_state`` with 4-D states only
  (:mod:`vidnets.deploy.frame`), for delegates that reject 5-D tensors. As TFLite
  (``.tflite``, converted by ``litert-torch``) every 4-D input and output is channels-last
  (frame ``[B, H, W, 3]``, states ``[B, H', W', C]``: ``GraphSpec.layout == "nhwc"``), so
  the NHWC runtime never transposes the state between calls.

State inputs are named after the model's state keys, their outputs ``{key}_next``, so a
runtime feeds each output back to the input of the same key. Every exported file carries
the model's metadata (preprocessing, labels, graph signature) in a ``.json`` beside it and,
for ONNX, in the model's ``metadata_props``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..layers import State
from ..models.base import VideoClassifier
from .fold import deploy_model
from .frame import FrameAvgPool, FrameModel, fold_padding, frame_state

GraphKind = Literal["clip", "stream", "frame"]
GRAPHS: tuple[str, ...] = ("clip", "stream", "frame")
FORMATS: tuple[str, ...] = ("onnx", "torch-export", "executorch", "tflite")
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2", "executorch": ".pte", "tflite": ".tflite"}
NEXT = "_next"


@dataclass
class GraphSpec:
    """What an exported graph takes and returns (saved beside it as JSON)."""

    graph: str
    input_names: list[str]
    output_names: list[str]
    input_shapes: dict[str, list[int]]
    state_keys: list[str] = field(default_factory=list)
    dynamic_frames: bool = False
    layout: str = "nchw"  # "nhwc": every 4-D input and output channels-last (TFLite)


class StreamGraph(nn.Module):
    """``(frames [B, 3, t, H, W], *state) -> (logits, *new_state)`` in ``keys`` order."""

    def __init__(self, model: VideoClassifier, keys: Sequence[str]) -> None:
        super().__init__()
        self.model, self.keys = model, list(keys)

    def forward(self, frames: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model._run(frames, dict(zip(self.keys, state, strict=True)))
        return (logits, *(new_state[k] for k in self.keys))


class FrameGraph(nn.Module):
    """``(frame [B, 3, H, W], *state4d) -> (logits, *new_state4d)`` in ``keys`` order."""

    def __init__(self, frame_model: FrameModel) -> None:
        super().__init__()
        self.frame_model, self.keys = frame_model, frame_model.keys

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.frame_model(frame, dict(zip(self.keys, state, strict=True)))
        return (logits, *(new_state[k] for k in self.keys))


class ClipGraph(nn.Module):
    """``clip [B, 3, T, H, W] -> logits`` without the eager input checks."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.model._run(clip, None)[0]


def build_graph(model: VideoClassifier, graph: GraphKind, *, height: int, width: int,
                frames: int = 1, batch: int = 1, deploy: bool = True,
                fold_pads: bool = False) -> tuple[nn.Module, tuple[torch.Tensor, ...], GraphSpec]:
    """The module to export, example inputs and its :class:`GraphSpec`.

    ``frames``: the clip length (``clip``) or frames per call (``stream``).
    ``fold_pads``: fold the frame graph's pad ops into its convs (:func:`fold_padding`)."""
    if graph not in GRAPHS:
        raise ValueError(f"unknown graph {graph!r}; expected one of {GRAPHS}")
    if graph != "clip" and not model.causal:
        raise ValueError(f"a {graph!r} graph needs a causal model; {type(model).__name__} is "
                         "not (export the clip graph, or use a *_stream model)")
    deployed = deploy_model(model) if deploy else model.eval()
    if graph == "clip":
        clip = torch.rand(batch, 3, frames, height, width)
        spec = GraphSpec("clip", ["clip"], ["logits"], {"clip": list(clip.shape)})
        return ClipGraph(deployed), (clip,), spec
    state = deployed.init_state(batch, height, width)
    keys = list(state)
    if graph == "stream":
        module: nn.Module = StreamGraph(deployed, keys)
        x = torch.rand(batch, 3, frames, height, width)
        name = "frames"
    else:
        frame_model = FrameModel(deployed, height, width)
        module = FrameGraph(fold_padding(frame_model) if fold_pads else frame_model)
        state = frame_state(state)
        x = torch.rand(batch, 3, height, width)
        name = "frame"
    args = (x, *(state[k] for k in keys))
    shapes = {name: list(x.shape), **{k: list(state[k].shape) for k in keys}}
    spec = GraphSpec(graph, [name, *keys], ["logits", *(k + NEXT for k in keys)], shapes, keys)
    return module.eval(), args, spec


def initial_state(spec: GraphSpec) -> State:
    """Zero state of an exported graph, from its spec."""
    return {k: torch.zeros(spec.input_shapes[k]) for k in spec.state_keys}


def save_sidecar(path: Path, spec: GraphSpec, metadata: dict[str, Any]) -> Path:
    """Write ``FILE.json`` beside an exported file: its metadata and graph signature."""
    sidecar = path.with_suffix(path.suffix + ".json")
    sidecar.write_text(json.dumps({**metadata, "graph": asdict(spec)}, indent=1,
                                  sort_keys=True, default=str))
    return sidecar


def read_sidecar(path: str | Path) -> tuple[GraphSpec, dict[str, Any]]:
    """The :class:`GraphSpec` and metadata saved beside an exported file."""
    sidecar = Path(str(path) + ".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{path}: no {sidecar.name} beside it (export with vidnets)")
    data = json.loads(sidecar.read_text())
    return GraphSpec(**data.pop("graph")), data


def export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec,
                path: str | Path, metadata: dict[str, Any] | None = None, *,
                dynamic_frames: bool = False) -> Path:
    """Write ``module`` as ONNX (dynamo exporter) with named inputs/outputs."""
    import onnx

    path = Path(path)
    dynamic_shapes = None
    if dynamic_frames:
        if spec.graph != "stream":
            raise ValueError("dynamic frames need the stream graph")
        frames = torch.export.Dim("frames", min=1, max=1024)
        dynamic_shapes = ({2: frames}, tuple(None for _ in args[1:]))
        spec.dynamic_frames = True
    exported = export_program(module, args, dynamic_shapes)
    program = torch.onnx.export(exported, args, input_names=spec.input_names,
                                output_names=spec.output_names, dynamo=True, optimize=True,
                                verbose=False)
    model = program.model_proto
    meta = {**(metadata or {}), "graph": asdict(spec)}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    save_sidecar(path, spec, metadata or {})
    return path


def export_program(module: nn.Module, args: tuple[torch.Tensor, ...],
                   dynamic_shapes: Any = None) -> torch.export.ExportedProgram:
    """``torch.export`` of a graph module (non-strict tracing)."""
    with torch.no_grad():
        return torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)


def export_torch(module: nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec,
                 path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write a ``torch.export`` ExportedProgram (``.pt2``, ``torch.export.load``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(module, args)
    torch.export.save(program, str(path))
    save_sidecar(path, spec, metadata or {})
    return path


def export_executorch(module: nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec,
                      path: str | Path, metadata: dict[str, Any] | None = None, *,
                      program: torch.export.ExportedProgram | None = None) -> Path:
    """Write an ExecuTorch program (``.pte``) with every supported op in XNNPACK."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    program = program or export_program(module, args)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lowered.to_executorch().buffer)
    save_sidecar(path, spec, metadata or {})
    return path


class ChannelsLastGraph(nn.Module):
    """A frame graph with named, channels-last I/O: ``forward(**inputs)`` takes every 4-D
    input as ``[B, H, W, C]`` and returns ``{name: output}`` with every 4-D output
    channels-last (the converter cancels the permutes against its NHWC layout)."""

    def __init__(self, module: nn.Module, spec: GraphSpec) -> None:
        super().__init__()
        self.module, self.spec = module, spec

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.module(*(_nchw(inputs[name]) for name in self.spec.input_names))
        return {name: _nhwc(out) for name, out in zip(self.spec.output_names, outputs,
                                                      strict=True)}


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.dim() == 4 else x


def export_tflite(module: nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec,
                  path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write the one-frame graph as TFLite (``litert-torch``) for the LiteRT interpreter.

    Inputs and outputs keep their names (signature ``serving_default``) and every 4-D one
    is channels-last (``spec.layout = "nhwc"``, ``spec.input_shapes`` in NHWC). The pools'
    TF "same" pads are folded into their kernels (a pad op would run channels-first); the
    convs' pads become the converter's own "same" padding. The file is kept only if it
    matches PyTorch on a streamed clip (:func:`check_tflite`)."""
    import litert_torch

    if spec.graph != "frame":
        raise ValueError(f"the TFLite export is the one-frame graph (got {spec.graph!r}); "
                         "export a *_stream model")
    module = copy.deepcopy(module)
    for pool in module.modules():
        if isinstance(pool, FrameAvgPool):
            pool.fold_padding()
    # litert-torch 0.10 mis-converts non-contiguous constants (measured: one layer's
    # temporal kernel, a strided view, replaced by another layer's)
    for tensor in [*module.parameters(), *module.buffers()]:
        tensor.data = tensor.data.contiguous()
    spec = copy.deepcopy(spec)
    spec.layout = "nhwc"
    inputs = {name: _nhwc(x).contiguous() for name, x in zip(spec.input_names, args,
                                                            strict=True)}
    spec.input_shapes = {name: list(x.shape) for name, x in inputs.items()}
    graph = ChannelsLastGraph(module, spec).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    litert_torch.convert(graph, sample_kwargs=inputs).export(str(path))
    try:
        check_tflite(path, graph, spec)
    except ValueError:
        path.unlink()
        raise
    save_sidecar(path, spec, metadata or {})
    return path


def check_tflite(path: Path, graph: ChannelsLastGraph, spec: GraphSpec, frames: int = 3,
                 tolerance: float = 1e-4) -> None:
    """Raise if a converted graph differs from PyTorch: ``frames`` random frames streamed
    from the zero state, PyTorch's state fed to both by name, every output compared at
    every frame (relative to its largest value, at least 1)."""
    from ai_edge_litert.interpreter import Interpreter

    generator = torch.Generator().manual_seed(0)
    runner = Interpreter(model_path=str(path)).get_signature_runner()
    frame = spec.input_names[0]
    state = {key: torch.zeros(spec.input_shapes[key]) for key in spec.state_keys}
    for _ in range(frames):
        inputs = {frame: torch.rand(spec.input_shapes[frame], generator=generator), **state}
        with torch.no_grad():
            expected = graph(**inputs)
        outputs = runner(**{name: x.numpy() for name, x in inputs.items()})
        for name, value in expected.items():
            error = float(abs(outputs[name] - value.numpy()).max())
            scale = float(value.abs().max())
            if error > tolerance * max(scale, 1.0):
                raise ValueError(f"{path}: the TFLite conversion differs from PyTorch in "
                                 f"{name!r} by {error:.2e} (largest value {scale:.2e}, "
                                 f"allowed {tolerance:g} relative); the file is not kept")
        state = {key: expected[key + NEXT] for key in spec.state_keys}


def export_model(model: VideoClassifier, path: str | Path, fmt: str, *,
                 graph: GraphKind | None = None, height: int, width: int, frames: int = 1,
                 batch: int = 1, dynamic_frames: bool = False,
                 metadata: dict[str, Any] | None = None) -> Path:
    """Export ``model`` as ``fmt`` (``onnx``, ``torch-export``, ``executorch``).

    ``graph`` defaults to ``stream`` for causal models (``frame`` for ExecuTorch and
    TFLite) and ``clip`` otherwise."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    if graph is None:
        graph = ("frame" if fmt in ("executorch", "tflite") else "stream") if model.causal \
            else "clip"
    if dynamic_frames:
        frames = max(frames, 2)  # an example of 1 frame would specialise the length to 1
    module, args, spec = build_graph(model, graph, height=height, width=width,
                                     frames=frames, batch=batch)
    meta = dict(metadata or {})
    if fmt == "onnx":
        return export_onnx(module, args, spec, path, meta, dynamic_frames=dynamic_frames)
    if dynamic_frames:
        raise ValueError("dynamic frames are supported for ONNX only")
    if fmt == "torch-export":
        return export_torch(module, args, spec, path, meta)
    if fmt == "tflite":
        return export_tflite(module, args, spec, path, meta)
    return export_executorch(module, args, spec, path, meta)
