"""Exported graphs (ONNX in ONNX Runtime, torch.export, ExecuTorch, TFLite in LiteRT) match
PyTorch on a real video streamed frame by frame; the state is named graph inputs and
outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import SHARED, missing_reference, randomize, require_module
from vidnets import create_model
from vidnets.cli import main
from vidnets.data.transforms import ClipTransform
from vidnets.data.video import iter_frames
from vidnets.deploy.backends import create_streamer
from vidnets.deploy.export import (
    NEXT,
    ChannelsLastGraph,
    build_graph,
    check_tflite,
    export_model,
    initial_state,
    read_sidecar,
)
from vidnets.deploy.frame import frame_state

SIZE = 64


@pytest.fixture(scope="module")
def stream_model():
    return randomize(create_model("movinet_a0_stream", num_classes=6), seed=4)


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    """12 frames of the shared test.mp4 at 64 x 64, values in [0, 1]: ``[1, 3, 12, 64, 64]``."""
    if not SHARED.is_dir():
        missing_reference(f"shared videos not found at {SHARED}")
    decoded = iter_frames(SHARED / "data/videos/test.mp4", fps=5.0)
    frames = [frame for _, (_, frame) in zip(range(12), decoded, strict=False)]
    clip = ClipTransform(SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=False)
    return clip(torch.from_numpy(np.stack(frames)))[None]


def _reference(model, video: torch.Tensor) -> list[torch.Tensor]:
    """Logits after every frame of ``stream_step``."""
    state, out = model.init_state(1, SIZE, SIZE), []
    with torch.no_grad():
        for t in range(video.shape[2]):
            logits, state = model.stream_step(video[:, :, t:t + 1], state)
            out.append(logits)
    return out


def test_onnx_frame_graph_in_onnxruntime_matches_pytorch(stream_model, video, tmp_path):
    ort = require_module("onnxruntime")
    path = export_model(stream_model, tmp_path / "a0.onnx", "onnx", graph="frame",
                        height=SIZE, width=SIZE, metadata={"labels": list("abcdef")})
    spec, meta = read_sidecar(path)
    assert meta["labels"] == list("abcdef")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    keys = list(stream_model.init_state(1, SIZE, SIZE))
    assert [i.name for i in session.get_inputs()] == ["frame", *keys]
    assert [o.name for o in session.get_outputs()] == ["logits", *(k + NEXT for k in keys)]
    assert all(len(i.shape) <= 4 for i in session.get_inputs())
    state = {k: v.numpy() for k, v in initial_state(spec).items()}
    for t, expected in enumerate(_reference(stream_model, video)):
        out = session.run(None, {"frame": video[:, :, t].numpy(), **state})
        state = dict(zip(spec.state_keys, out[1:], strict=True))
        np.testing.assert_allclose(out[0], expected.numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_stream_graph_takes_chunks(stream_model, video, tmp_path):
    ort = require_module("onnxruntime")
    path = export_model(stream_model, tmp_path / "a0s.onnx", "onnx", graph="stream",
                        height=SIZE, width=SIZE, frames=3)
    spec, _ = read_sidecar(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert spec.input_shapes["frames"] == [1, 3, 3, SIZE, SIZE]
    state = {k: v.numpy() for k, v in initial_state(spec).items()}
    expected = _reference(stream_model, video)
    for t in range(0, 12, 3):
        out = session.run(None, {"frames": video[:, :, t:t + 3].numpy(), **state})
        state = dict(zip(spec.state_keys, out[1:], strict=True))
        np.testing.assert_allclose(out[0], expected[t + 2].numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_clip_graph(tmp_path):
    ort = require_module("onnxruntime")
    model = randomize(create_model("x3d_xs", num_classes=5), seed=1)
    path = export_model(model, tmp_path / "x3d.onnx", "onnx", height=48, width=48, frames=4)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    clip = torch.rand(1, 3, 4, 48, 48)
    with torch.no_grad():
        expected = model(clip).numpy()
    np.testing.assert_allclose(session.run(None, {"clip": clip.numpy()})[0], expected,
                               rtol=1e-4, atol=1e-5)


def test_torch_export_four_d_graph(stream_model, video, tmp_path):
    path = export_model(stream_model, tmp_path / "a0.pt2", "torch-export", graph="frame",
                        height=SIZE, width=SIZE)
    program = torch.export.load(str(path))
    ranks = {len(node.meta["val"].shape) for node in program.graph.nodes
             if isinstance(node.meta.get("val"), torch.Tensor)}
    assert max(ranks) == 4  # frames as images, states as 4-D tensors
    # BN folded: no batch-norm op left in the graph
    assert not any("batch_norm" in str(node.target) for node in program.graph.nodes)
    spec, _ = read_sidecar(path)
    state = [initial_state(spec)[k] for k in spec.state_keys]
    module = program.module()
    for t, expected in enumerate(_reference(stream_model, video)[:6]):
        out = module(video[:, :, t], *state)
        state = list(out[1:])
        torch.testing.assert_close(out[0], expected, rtol=1e-4, atol=1e-4)


def test_torch_export_stream_graph_takes_chunks_with_state(stream_model, video, tmp_path):
    path = export_model(stream_model, tmp_path / "a0s.pt2", "torch-export", graph="stream",
                        height=SIZE, width=SIZE, frames=2)
    program = torch.export.load(str(path))
    spec, _ = read_sidecar(path)
    assert len(program.graph_signature.user_inputs) == 1 + len(spec.state_keys)
    assert len(program.graph_signature.user_outputs) == 1 + len(spec.state_keys)
    module, state = program.module(), [initial_state(spec)[k] for k in spec.state_keys]
    expected = _reference(stream_model, video)
    for t in range(0, 6, 2):
        out = module(video[:, :, t:t + 2], *state)
        state = list(out[1:])
        torch.testing.assert_close(out[0], expected[t + 1], rtol=1e-4, atol=1e-4)


def test_executorch_backend_matches_pytorch(stream_model, video, tmp_path):
    require_module("executorch")
    expected = _reference(stream_model, video)[-1]
    streamer = create_streamer(stream_model, "executorch", SIZE, SIZE, cache=tmp_path)
    torch.testing.assert_close(streamer(video[:, :, :5]), _reference(stream_model,
                                                                     video[:, :, :5])[-1],
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(streamer(video[:, :, 5:]), expected, rtol=1e-4, atol=1e-4)
    streamer.reset()
    torch.testing.assert_close(streamer(video), expected, rtol=1e-4, atol=1e-4)
    assert len(list(tmp_path.glob("*.pte"))) == 1  # exported once, then cached


def _save(model, path, name="movinet_a0_stream"):
    from vidnets.weights import save_weights

    return save_weights(model.state_dict(), path,
                        {"model": name, "num_classes": 6, "labels": list("abcdef"),
                         "size": SIZE, "frames": 8, "fps": 5})


def test_tflite_frame_graph_in_litert_matches_pytorch(stream_model, video, tmp_path, capsys):
    """`vidnets export --format tflite`: named, channels-last inputs and outputs, no
    transpose or pad op; streamed in LiteRT with the state carried by name, the logits
    equal stream_step's at every frame and the states hold the model's state values."""
    require_module("litert_torch")
    litert = require_module("ai_edge_litert.interpreter")
    out = tmp_path / "a0.tflite"
    assert main(["export", "--model", "movinet_a0_stream", "--weights",
                 str(_save(stream_model, tmp_path / "w.safetensors")), "--format", "tflite",
                 "--out", str(out)]) == 0
    spec, meta = read_sidecar(out)
    assert (spec.graph, spec.layout, meta["labels"]) == ("frame", "nhwc", list("abcdef"))
    assert spec.input_shapes["frame"] == [1, SIZE, SIZE, 3]
    interpreter = litert.Interpreter(model_path=str(out))
    assert not {op["op_name"] for op in interpreter._get_ops_details()} & {"TRANSPOSE", "PAD"}
    runner = interpreter.get_signature_runner()
    keys = list(stream_model.init_state(1, SIZE, SIZE))
    assert set(runner.get_input_details()) == {"frame", *keys}
    assert set(runner.get_output_details()) == {"logits", *(k + NEXT for k in keys)}
    state = {k: v.numpy() for k, v in initial_state(spec).items()}
    model_state = stream_model.init_state(1, SIZE, SIZE)
    with torch.no_grad():
        for t in range(video.shape[2]):
            expected, model_state = stream_model.stream_step(video[:, :, t:t + 1], model_state)
            result = runner(frame=video[:, :, t].permute(0, 2, 3, 1).contiguous().numpy(),
                            **state)
            state = {k: result[k + NEXT] for k in keys}
            np.testing.assert_allclose(result["logits"], expected.numpy(), rtol=1e-4,
                                       atol=1e-4)
    for key, value in frame_state(model_state).items():
        np.testing.assert_allclose(state[key], value.permute(0, 2, 3, 1).numpy(), rtol=1e-4,
                                   atol=1e-4, err_msg=key)
    # the export-time check fails on a graph the file was not converted from
    module, _, _ = build_graph(stream_model, "frame", height=SIZE, width=SIZE)
    module.frame_model.head.classifier.conv.bias.data += 0.01
    with pytest.raises(ValueError, match="differs from PyTorch in 'logits'"):
        check_tflite(out, ChannelsLastGraph(module, spec), spec)
    # a clip model has no one-frame graph
    assert main(["export", "--model", "x3d_xs", "--weights",
                 str(_save(create_model("x3d_xs", num_classes=6), tmp_path / "x.safetensors",
                           "x3d_xs")), "--format", "tflite", "--out",
                 str(tmp_path / "x.tflite")]) == 2
    assert "not causal" in capsys.readouterr().err


def test_litert_backend_streams_x3d(video, tmp_path):
    require_module("litert_torch")
    model = randomize(create_model("x3d_xs_stream", num_classes=6), seed=5)
    streamer = create_streamer(model, "litert", SIZE, SIZE, cache=tmp_path)
    assert streamer.in_place
    expected = _reference(model, video[:, :, :6])
    for t in range(6):
        torch.testing.assert_close(streamer(video[:, :, t:t + 1]), expected[t], rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("backend", ["eager", "frame", "onnxruntime", "litert"])
def test_backends_match_clip(stream_model, video, backend, tmp_path):
    if backend == "onnxruntime":
        require_module("onnxruntime")
    if backend == "litert":
        require_module("litert_torch")
    streamer = create_streamer(stream_model, backend, SIZE, SIZE, cache=tmp_path)
    with torch.no_grad():
        expected = stream_model(video)
    torch.testing.assert_close(streamer(video[:, :, :7]), stream_model(video[:, :, :7]),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(streamer(video[:, :, 7:]), expected, rtol=1e-4, atol=1e-4)


def test_cli_export_and_benchmark(tmp_path, capsys):
    from vidnets.weights import save_weights

    require_module("onnxruntime")
    model = randomize(create_model("movinet_a0_stream", num_classes=3))
    weights = save_weights(model.state_dict(), tmp_path / "w.safetensors",
                           {"model": "movinet_a0_stream", "num_classes": 3,
                            "labels": ["x", "y", "z"], "size": 48, "frames": 8, "fps": 5})
    out = tmp_path / "a0.onnx"
    assert main(["export", "--model", "movinet_a0_stream", "--weights", str(weights),
                 "--format", "onnx", "--four-d", "--out", str(out)]) == 0
    spec, meta = read_sidecar(out)
    assert spec.graph == "frame" and spec.input_shapes["frame"] == [1, 3, 48, 48]
    assert meta["labels"] == ["x", "y", "z"] and meta["fps"] == 5
    capsys.readouterr()
    assert main(["benchmark", "movinet_a0_stream", "--streaming", "--backend", "frame",
                 "--size", "48", "--calls", "5", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["backend"] == "frame" and result["calls"] == 5
    assert 0 < result["median_ms"] <= result["p90_ms"] and result["peak_rss_mb"] > 0
