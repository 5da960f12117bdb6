"""Streaming runtimes behind one interface: ``streamer(frames [1, 3, t, H, W]) -> logits``.

* ``eager``:       ``stream_step`` of the deployed model (BN folded) in PyTorch;
* ``frame``:       the 4-D one-frame graph (:mod:`vidnets.deploy.frame`) in PyTorch;
* ``onnxruntime``: the one-frame graph exported to ONNX, run by ONNX Runtime;
* ``executorch``:  the one-frame graph as an ExecuTorch program with the XNNPACK delegate;
* ``litert``:      the one-frame graph converted to TFLite (``litert-torch``, channels-last
  state) in the LiteRT interpreter (XNNPACK), the runtime of the official TFLite models.

Exported graphs are cached under ``$VIDNETS_CACHE/deploy`` keyed by the weights, the
graph and the input size, so only the first run of a model pays for the export.
``auto`` picks the fastest installed runtime (measured in ``benchmarks/stream_speed.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..models.base import Streamer, VideoClassifier
from ..weights.download import cache_dir
from . import export, fold, frame
from .export import (
    NEXT,
    SUFFIXES,
    build_graph,
    export_executorch,
    export_onnx,
    export_tflite,
    initial_state,
    read_sidecar,
)
from .fold import deploy_model
from .frame import FrameModel, frame_state
from .runner import StreamerLike

BACKENDS: tuple[str, ...] = ("eager", "frame", "onnxruntime", "executorch", "litert")
# fastest first (benchmarks/stream_speed.py on a 2-core x86 CPU)
PREFERENCE: tuple[str, ...] = ("litert", "onnxruntime", "executorch", "frame", "eager")
# what each backend imports: its runtime (and, for litert, the converter)
_MODULES = {"onnxruntime": ("onnxruntime",), "executorch": ("executorch",),
            "litert": ("ai_edge_litert", "litert_torch")}


def available_backends() -> list[str]:
    """Backends whose runtime is installed, fastest first."""
    return [b for b in PREFERENCE if all(importlib.util.find_spec(module) is not None
                                         for module in _MODULES.get(b, ()))]


def resolve_backend(name: str) -> str:
    """``auto`` -> the fastest installed backend; otherwise check ``name`` is usable."""
    if name == "auto":
        return available_backends()[0]
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected auto or one of {BACKENDS}")
    if name not in available_backends():
        raise ValueError(f"backend {name!r} needs the packages {list(_MODULES[name])} (see "
                         f"the README's deployment section); installed: "
                         f"{available_backends()}")
    return name


class _FrameLoop:
    """Feeds a ``t``-frame chunk one frame at a time to ``step(frame [1, 3, H, W])``."""

    step: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        logits = None
        for t in range(frames.shape[2]):
            logits = self.step(frames[:, :, t])
        if logits is None:
            raise ValueError(f"expected at least one frame, got shape {tuple(frames.shape)}")
        return logits


class EagerStreamer(Streamer):
    """:class:`~vidnets.models.base.Streamer` of the deployed model, without autograd (the
    CPU fast paths of the layers need it off); any chunk length."""

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return super().__call__(frames)


class FrameGraphStreamer(_FrameLoop):
    """The 4-D one-frame graph in eager PyTorch."""

    def __init__(self, model: VideoClassifier, height: int, width: int) -> None:
        self.graph = FrameModel(model, height, width).eval()
        self.initial = frame_state(model.init_state(1, height, width))
        self.state = self.initial

    def reset(self) -> None:
        self.state = self.initial

    @torch.inference_mode()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.graph(frame, self.state)
        return logits


class OnnxStreamer(_FrameLoop):
    """The one-frame ONNX graph in ONNX Runtime with I/O binding: two preallocated state
    buffers swap roles every call (outputs are written straight into the next call's
    inputs), so a call allocates and copies nothing but the frame."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.spec, _ = read_sidecar(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.binding = self.session.io_binding()
        zeros = initial_state(self.spec)
        self.buffers = [{k: v.numpy() for k, v in zeros.items()},
                        {k: v.numpy().copy() for k, v in zeros.items()}]
        self.logits = np.zeros([d if isinstance(d, int) else 1 for d in
                                self.session.get_outputs()[0].shape], np.float32)
        self.reset()

    def reset(self) -> None:
        for value in self.buffers[0].values():
            value[...] = 0
        self.current = 0

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        state, new_state = self.buffers[self.current], self.buffers[1 - self.current]
        binding = self.binding
        frame = frame.contiguous().numpy()
        binding.bind_cpu_input(self.spec.input_names[0], frame)
        for key in self.spec.state_keys:
            binding.bind_cpu_input(key, state[key])
            binding.bind_output(key + NEXT, "cpu", 0, np.float32, new_state[key].shape,
                                new_state[key].ctypes.data)
        binding.bind_output("logits", "cpu", 0, np.float32, self.logits.shape,
                            self.logits.ctypes.data)
        self.session.run_with_iobinding(binding)
        self.current = 1 - self.current
        return torch.from_numpy(self.logits.copy())


class ExecuTorchStreamer(_FrameLoop):
    """The one-frame ExecuTorch program (XNNPACK delegate)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from executorch.runtime import Runtime

        if threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(threads)
        self.spec, _ = read_sidecar(path)
        self.method = Runtime.get().load_program(path).load_method("forward")
        self.initial = [initial_state(self.spec)[k] for k in self.spec.state_keys]
        self.state = list(self.initial)

    def reset(self) -> None:
        self.state = list(self.initial)

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        out = self.method.execute([frame.contiguous(), *self.state])
        self.state = list(out[1:])
        return out[0]


class LiteRTStreamer(_FrameLoop):
    """The one-frame TFLite graph (channels-last state) in the LiteRT interpreter.

    Each call writes the frame into the interpreter's input tensor, invokes, and copies
    every new state into its input tensor for the next call: one copy per state, no
    allocation. (That needs the interpreter's input and output buffers to be disjoint,
    checked once; otherwise the new states are read out before any is written back.)"""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec, _ = read_sidecar(path)
        if self.spec.layout != "nhwc":
            raise ValueError(f"{path}: expected a channels-last TFLite frame graph, got "
                             f"layout {self.spec.layout!r}")
        self.interpreter = Interpreter(model_path=str(path),
                                       num_threads=threads or torch.get_num_threads())
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner()
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        # accessors, not arrays: the interpreter refuses to run while a view is alive
        tensor = self.interpreter.tensor
        self.frame = tensor(inputs[self.spec.input_names[0]]["index"])
        self.logits = tensor(outputs["logits"]["index"])
        self.pairs = [(tensor(inputs[key]["index"]), tensor(outputs[key + NEXT]["index"]))
                      for key in self.spec.state_keys]
        self.in_place = _disjoint([self.frame(), self.logits(),
                                   *(view() for pair in self.pairs for view in pair)])
        self.reset()

    def reset(self) -> None:
        for state, _ in self.pairs:
            state().fill(0)

    def step(self, frame: torch.Tensor) -> torch.Tensor:
        # numpy, not torch: a torch copy wakes torch's thread pool, whose spinning threads
        # then compete with the interpreter's (measured: slower streaming at 2 threads)
        np.copyto(self.frame(), frame.permute(0, 2, 3, 1).numpy())
        self.interpreter.invoke()
        logits = torch.from_numpy(self.logits().copy())
        new_states = [new_state() if self.in_place else new_state().copy()
                      for _, new_state in self.pairs]
        for (state, _), value in zip(self.pairs, new_states, strict=True):
            np.copyto(state(), value)
        return logits


def _disjoint(arrays: list[np.ndarray]) -> bool:
    """Whether no two arrays share memory."""
    spans = sorted((a.ctypes.data, a.ctypes.data + a.nbytes) for a in arrays)
    return all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


def weights_digest(model: VideoClassifier) -> str:
    """sha256 of the model's class name, its state dict and the code that builds and
    exports its graphs (the export cache key)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for module in (fold, frame, export):
        digest.update(Path(module.__file__).read_bytes())
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def exported_frame_graph(model: VideoClassifier, fmt: str, height: int, width: int,
                         cache: Path | None = None) -> Path:
    """Path of ``model``'s one-frame graph as ``onnx``/``executorch``/``tflite``,
    exported once."""
    suffix = SUFFIXES[fmt]
    folder = cache or cache_dir() / "deploy"
    path = folder / f"{weights_digest(model)}-frame-{height}x{width}{suffix}"
    if not (path.is_file() and Path(str(path) + ".json").is_file()):
        # ONNX Runtime's pad op costs more than a few zero taps; XNNPACK (ExecuTorch) keeps
        # its optimised 3x3 / 5x5 depthwise kernels only with the explicit pad
        module, args, spec = build_graph(model, "frame", height=height, width=width,
                                         deploy=False, fold_pads=fmt == "onnx")
        tmp = path.with_name(path.name + ".tmp" + suffix)
        exporter = {"onnx": export_onnx, "executorch": export_executorch,
                    "tflite": export_tflite}[fmt]
        exporter(module, args, spec, tmp)
        Path(str(tmp) + ".json").replace(Path(str(path) + ".json"))
        tmp.replace(path)
    return path


def create_streamer(model: VideoClassifier, backend: str, height: int, width: int, *,
                    threads: int | None = None, cache: Path | None = None) -> StreamerLike:
    """A streamer of the causal ``model`` for ``height x width`` frames on ``backend``.

    ``streamer(frames [1, 3, t, H, W])`` returns the logits ``[1, K]`` after the last frame;
    ``streamer.reset()`` starts a new video."""
    if not model.causal:
        raise model._not_streamable()
    backend = resolve_backend(backend)
    deployed = deploy_model(model)
    if backend == "eager":
        return EagerStreamer(deployed)
    if backend == "frame":
        return FrameGraphStreamer(deployed, height, width)
    if backend == "onnxruntime":
        return OnnxStreamer(exported_frame_graph(deployed, "onnx", height, width, cache),
                            threads)
    if backend == "litert":
        return LiteRTStreamer(exported_frame_graph(deployed, "tflite", height, width, cache),
                              threads)
    return ExecuTorchStreamer(exported_frame_graph(deployed, "executorch", height, width,
                                                   cache), threads)
