"""`vidnets stream` and its runner: per-frame output, plot, overlay, HTTP sources, a
source that drops mid-stream, one that cannot be opened, bounded bookkeeping."""

from __future__ import annotations

import http.server
import io
import json
import socket
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidnets import Streamer, create_model
from vidnets.cli import main
from vidnets.data.transforms import ClipTransform
from vidnets.data.video import iter_frames
from vidnets.deploy.history import ProbabilityHistory
from vidnets.deploy.loading import load_inference_model
from vidnets.deploy.runner import run_stream
from vidnets.deploy.sampling import FrameSampler
from vidnets.deploy.session import StreamOptions, stream_session
from vidnets.deploy.sources import display_name
from vidnets.engine.evaluate import stream_video

TRANSFORM = ClipTransform(64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=False)


def _stream(capsys, source, weights, *args) -> tuple[int, list[dict], str]:
    """Run `vidnets stream --json`: exit code, JSON lines, stderr."""
    if "--backend" not in args:  # the exported runtimes are tested in test_export.py
        args = (*args, "--backend", "eager")
    code = main(["stream", str(source), "--model", "movinet_a0_stream", "--weights",
                 str(weights), "--json", *map(str, args)])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def _frame_count(path: Path) -> tuple[int, list[float]]:
    with av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return len(times), times


def _is_png(path: Path) -> bool:
    with Image.open(path) as image:
        return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and min(image.size) > 100


@torch.no_grad()
def test_file_per_frame_lines_plot_and_overlay(shared_dir, stream_weights, tmp_path, capsys):
    video = shared_dir / "data" / "videos" / "part_0.mp4"  # 32 frames at 30 fps
    plot, overlay = tmp_path / "plot.png", tmp_path / "out" / "overlay.mp4"
    code, lines, err = _stream(capsys, video, stream_weights, "--plot", plot,
                               "--overlay", overlay, "--top-k", "5")
    assert code == 0, err
    frames, end = lines[:-1], lines[-1]
    sampled = np.stack([frame for _, frame in iter_frames(video, fps=8)])
    assert [f["frame"] for f in frames] == list(range(len(sampled))) == list(range(9))
    assert [f["time"] for f in frames] == pytest.approx([k / 8 for k in range(9)])
    # every frame's probabilities = stream_step on the frames sampled at 8 fps, 64 px
    model = create_model("movinet_a0_stream", weights=stream_weights)
    per_frame = stream_video(model, TRANSFORM(torch.from_numpy(sampled)), per_frame=True)
    for line, logits in zip(frames, per_frame.softmax(-1), strict=True):
        got = {item["index"]: item["probability"] for item in line["top_k"]}
        torch.testing.assert_close(torch.tensor([got[i] for i in range(5)]), logits,
                                   atol=1e-5, rtol=0)
    assert end["status"] == "complete" and end["error"] is None
    assert (end["source_frames"], end["frames"]) == (32, 9)
    assert end["top_k"] == frames[-1]["top_k"]
    assert end["plot"] == str(plot) and _is_png(plot)
    count, times = _frame_count(overlay)
    _, source_times = _frame_count(video)
    assert end["overlay"] == str(overlay) and count == 32
    assert times == pytest.approx(source_times, abs=1e-3)


def test_text_output_every_n_frames(shared_dir, stream_weights, capsys):
    video = shared_dir / "data" / "videos" / "part_0.mp4"
    code = main(["stream", str(video), "--model", "movinet_a0_stream", "--weights",
                 str(stream_weights), "--every", "3", "--top-k", "2", "--backend", "frame"])
    out, err = capsys.readouterr()
    assert code == 0, err
    out = out.splitlines()
    assert out[0].startswith(f"{video} -> movinet_a0_stream (frame): 8 frames at 8 fps, 64 x 64")
    assert [line.split()[1] for line in out[1:4]] == ["#0", "#3", "#6"]
    assert len(out[1].split()) == 6  # time, index, 2 x (label, probability)
    assert out[4] == f"{video}: complete, 32 frames decoded, 9 model frames (1.00 s)"
    assert out[5].startswith("  final ")


@torch.no_grad()
def test_runner_matches_stream_step_on_sampled_frames(shared_dir, stream_weights):
    # test.avi: first frame at 0.04 s, packed B-frames (timestamps reordered)
    video = shared_dir / "data" / "videos" / "test.avi"
    inference = load_inference_model("movinet_a0_stream", stream_weights)
    predictions = [p for step in run_stream(str(video), Streamer(inference.model),
                                            inference.preprocessing)
                   for p in step.predictions]
    sampled = np.stack([frame for _, frame in iter_frames(video, fps=8)])
    assert len(predictions) == len(sampled) > 50
    clip = TRANSFORM(torch.from_numpy(sampled))
    expected = stream_video(inference.model, clip, per_frame=True).softmax(-1)
    got = torch.stack([p.probabilities for p in predictions])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_realtime_paces_to_the_source_times(shared_dir, stream_weights):
    video = shared_dir / "data" / "videos" / "part_0.mp4"  # last frame at 1.03 s
    inference = load_inference_model("movinet_a0_stream", stream_weights)
    start = time.perf_counter()
    steps = list(run_stream(str(video), Streamer(inference.model), inference.preprocessing,
                            realtime=True))
    assert time.perf_counter() - start >= 1.0
    assert len(steps) == 33  # 32 frames + the final step


def _faststart_copy(source: Path, out: Path) -> Path:
    """``source`` remuxed with the index first (what a web server usually holds)."""
    with av.open(str(source)) as src, av.open(str(out), "w",
                                              options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return out


def test_http_source_equals_the_file(shared_dir, stream_weights, tmp_path, http_server,
                                     capsys):
    video = _faststart_copy(shared_dir / "data" / "videos" / "part_0.mp4", tmp_path / "v.mp4")
    url = f"{http_server(tmp_path)}/v.mp4"
    code, from_url, err = _stream(capsys, url, stream_weights)
    assert code == 0, err
    code, from_file, _ = _stream(capsys, video, stream_weights)
    assert code == 0
    assert from_url[-1]["source"] == url and from_url[-1]["status"] == "complete"
    assert [line["top_k"] for line in from_url] == [line["top_k"] for line in from_file]


def _write_mpegts(frames: list[np.ndarray], path: Path) -> Path:
    """An MPEG-TS file (decodable from any cut) of ``frames`` at 30 fps."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=30)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 6
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture
def truncating_server(http_server):
    """Factory: serve ``data`` over HTTP announcing its full length but sending only the
    first ``fraction`` of it, then closing the connection; returns the URL."""
    def serve(data: bytes, fraction: float) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: int(len(data) * fraction)])

            def log_message(self, *args):
                pass

        return f"{http_server(Handler)}/live.ts"

    return serve


def test_source_dropping_mid_stream_keeps_what_was_seen(shared_dir, stream_weights, tmp_path,
                                                        truncating_server, capsys):
    frames = [f for _, f in iter_frames(shared_dir / "data" / "videos" / "test.mp4")][:90]
    ts = _write_mpegts(frames, tmp_path / "full.ts")
    url = truncating_server(ts.read_bytes(), 0.6)
    plot = tmp_path / "plot.png"
    code, lines, err = _stream(capsys, url, stream_weights, "--plot", plot)
    assert code == 3
    assert err.startswith(f"vidnets stream: {url}: stream dropped after ")
    assert err.count("\n") == 1
    end = lines[-1]
    assert end["status"] == "dropped" and end["error"] in err
    assert 10 < end["frames"] < 24 and 30 < end["source_frames"] < 90  # 3 s at 8 fps: 24
    assert end["plot"] == str(plot) and _is_png(plot)
    # what was seen equals the start of the complete stream
    code, complete, _ = _stream(capsys, ts, stream_weights)
    assert code == 0 and complete[-1]["frames"] == 24
    assert [line["top_k"] for line in lines[:-1]] == \
        [line["top_k"] for line in complete[: end["frames"]]]


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["missing file", "refused port", "not a video"])
def test_source_that_cannot_be_opened(kind, stream_weights, tmp_path, capsys):
    source = {"missing file": str(tmp_path / "nope.mp4"),
              "refused port": f"http://127.0.0.1:{_refused_port()}/cam.mp4",
              "not a video": str(stream_weights)}[kind]
    overlay = tmp_path / "overlay.mp4"
    code, lines, err = _stream(capsys, source, stream_weights, "--overlay", overlay)
    assert code == 2
    assert err.startswith(f"vidnets stream: {source}: cannot open: ")
    assert {"missing file": "file not found", "refused port": "Connection refused",
            "not a video": "Invalid data"}[kind] in err
    assert lines == [{"type": "end", "source": source, "status": "cannot_open",
                      "error": err.split("vidnets stream: ")[1].strip(), "source_frames": 0,
                      "frames": 0, "seconds": None, "top_k": [], "plot": None,
                      "overlay": None}]
    assert not overlay.exists()


class _CtrlCAt:
    """A streamer whose ``n``-th call is interrupted by the user (Ctrl-C)."""

    def __init__(self, streamer: Streamer, n: int) -> None:
        self.streamer, self.n, self.calls = streamer, n, 0

    def reset(self) -> None:
        self.streamer.reset()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.streamer(frames)


def test_ctrl_c_keeps_what_was_seen(shared_dir, stream_weights, tmp_path):
    video = shared_dir / "data" / "videos" / "test.mp4"
    inference = load_inference_model("movinet_a0_stream", stream_weights)
    options = StreamOptions(json=True, plot=tmp_path / "plot.png",
                            overlay=tmp_path / "overlay.mkv")
    out, err = io.StringIO(), io.StringIO()
    code = stream_session(str(video), _CtrlCAt(Streamer(inference.model), 6), inference,
                          options, out=out, err=err)
    assert code == 130
    assert err.getvalue() == f"vidnets stream: {video}: stopped by the user\n"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    end = lines[-1]
    assert end["status"] == "interrupted" and end["frames"] == 5 == len(lines) - 1
    assert _is_png(options.plot)
    assert _frame_count(options.overlay)[0] == end["source_frames"] > 5 * 30 / 8


def test_history_memory_is_bounded_and_spans_the_stream():
    history = ProbabilityHistory(num_classes=3, capacity=8)
    buffers = (history._times, history._probabilities)
    for k in range(1000):
        probabilities = torch.tensor([k / 1000, 1 - k / 1000, 0.5 if k == 500 else 0.0])
        history.add(k / 10, probabilities)
    times, probabilities = history.series()
    assert (history._times, history._probabilities) == buffers  # same storage, never grown
    assert history.frames == 1000 and len(times) <= 9 and history.frames_per_point == 128
    assert times[0] == pytest.approx(6.35) and times[-1] > 90  # first 128 frames' mean time
    assert probabilities[:, 0] == pytest.approx((times * 10 / 1000).float(), abs=1e-4)
    assert history.peak.tolist() == pytest.approx([0.999, 1.0, 0.5])
    assert history.top_classes(2) == [1, 0]
    assert history.series([2])[1].shape == (len(times), 1)


def test_sampler_follows_read_clip_and_survives_clock_jumps():
    sampler = FrameSampler(fps=10.0)
    decided = [(t, f) for k in range(7) for t, f in sampler.push(k / 30, k)]  # 30 fps source
    assert decided == [(0.0, 0), (pytest.approx(0.1), 3)]  # latest frame at or before
    assert sampler.push(3600.0, 7) == []  # the clock jumps by an hour: no 36000 frames
    assert sampler.push(3600.1, 8) == [(pytest.approx(0.2), 7)]  # stream time goes on
    assert sampler.finish(1 / 30) == [(pytest.approx(0.3), 8)]
    strided = FrameSampler(fps=None, stride=3)
    assert [f for k in range(7) for _, f in strided.push(k / 30, k)] == [0, 3, 6]


def test_passwords_are_hidden_in_messages():
    assert display_name("rtsp://cam:secret@10.0.0.2:554/live") == "rtsp://cam:***@10.0.0.2:554/live"
    assert display_name("/dev/video0") == "/dev/video0"
