"""int8 post-training quantisation with stateful calibration (ONNX Runtime, QDQ)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import SHARED, missing_reference, randomize, require_module
from vidnets import create_model
from vidnets.data.transforms import ClipTransform
from vidnets.data.video import iter_frames
from vidnets.deploy.export import build_graph, export_onnx, initial_state, read_sidecar
from vidnets.deploy.quantize import float_convs, quantize_onnx_frame_graph, stateful_inputs

SIZE = 48


@pytest.fixture(scope="module")
def ort():
    return require_module("onnxruntime")


def _videos(count: int, frames: int) -> list[torch.Tensor]:
    """``count`` consecutive ``frames``-frame pieces of the shared test.mp4, ``[3, T, S, S]``."""
    if not SHARED.is_dir():
        missing_reference(f"shared videos not found at {SHARED}")
    transform = ClipTransform(SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=False)
    decoded = [f for _, f in iter_frames(SHARED / "data/videos/test.mp4", fps=6.0)]
    return [transform(torch.from_numpy(np.stack(decoded[i * frames:(i + 1) * frames])))
            for i in range(count)]


@pytest.fixture(scope="module")
def model():
    return randomize(create_model("movinet_a0_stream", num_classes=5), seed=7)


def test_calibration_threads_the_state(model, ort, tmp_path):
    module, args, spec = build_graph(model, "frame", height=SIZE, width=SIZE)
    path = export_onnx(module, args, spec, tmp_path / "float.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    videos = _videos(2, 3)
    feeds = list(stateful_inputs(session, spec, videos))
    assert len(feeds) == 6
    key = "state_block1_layer0_stream_buffer"
    for start in (0, 3):  # each video starts from the zero state
        assert all(not feeds[start][k].any() for k in spec.state_keys)
    # the state of each later call is the float graph's output of the call before
    out = session.run(spec.output_names, feeds[0])
    np.testing.assert_array_equal(feeds[1][key], out[1 + spec.state_keys.index(key)])
    assert np.abs(feeds[2][key]).max() > 0
    np.testing.assert_array_equal(feeds[2]["frame"], videos[0][None, :, 2].numpy())


def test_int8_graph_tracks_float_on_real_video(model, ort, tmp_path):
    import onnx

    path = quantize_onnx_frame_graph(model, _videos(3, 4), tmp_path / "int8.onnx",
                                     height=SIZE, width=SIZE, metadata={"labels": list("abcde")})
    spec, meta = read_sidecar(path)
    assert meta["labels"] == list("abcde")
    assert meta["quantization"]["calibration_frames"] == 12
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 50
    # int8 weights, one scale per output channel
    weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 40
    # the convs on pooled features (15 blocks x 2 + head 2) and the 11 temporal convs
    # stay float
    assert len(float_convs(path)) == 43
    float_module, args, _ = build_graph(model, "frame", height=SIZE, width=SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = {k: v.numpy() for k, v in initial_state(spec).items()}
    float_state = args[1:]
    video = _videos(5, 6)[4]  # not seen in calibration
    for t in range(video.shape[1]):
        out = session.run(None, {"frame": video[None, :, t].numpy(), **state})
        state = dict(zip(spec.state_keys, out[1:], strict=True))
        with torch.no_grad():
            reference = float_module(video[None, :, t], *float_state)
        float_state = reference[1:]
    logits, expected = out[0][0], reference[0][0].numpy()
    spread = expected.max() - expected.min()
    assert np.abs(logits - expected).max() < 0.25 * spread
    assert np.corrcoef(logits, expected)[0, 1] > 0.9


def test_cli_int8_export_skips_a_bad_calibration_video(model, ort, tmp_path, capsys):
    from vidnets.cli import main
    from vidnets.weights import save_weights

    weights = save_weights(model.state_dict(), tmp_path / "w.safetensors",
                           {"model": "movinet_a0_stream", "num_classes": 5, "size": SIZE,
                            "frames": 8, "fps": 6})
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    out = tmp_path / "a0-int8.onnx"
    videos = SHARED / "data" / "videos"
    assert main(["export", "--model", "movinet_a0_stream", "--weights", str(weights),
                 "--format", "onnx", "--int8", "--calibrate", str(videos / "test.avi"),
                 str(bad), str(videos / "part_0.mp4"), "--calibration-frames", "5",
                 "--out", str(out)]) == 0
    assert "skipped calibration video" in capsys.readouterr().err
    spec, meta = read_sidecar(out)
    assert spec.graph == "frame" and meta["quantization"]["calibration_frames"] == 10
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    state = {k: v.numpy() for k, v in initial_state(spec).items()}
    logits = session.run(None, {"frame": np.zeros((1, 3, SIZE, SIZE), np.float32), **state})[0]
    assert logits.shape == (1, 5) and np.isfinite(logits).all()
