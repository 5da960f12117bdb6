"""Small real video files written with PyAV: good ones and deliberately broken ones."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# Frame k of the "indexed" videos is a flat grey of level GREY0 + GREY_STEP * k, so a
# decoded frame tells which source frame it is.
GREY0, GREY_STEP = 16, 6


def grey_index(frame: np.ndarray) -> int:
    """Index of an indexed-video frame from its mean level."""
    return round((float(frame.mean()) - GREY0) / GREY_STEP)


def write_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = 25,
    times_ms: list[int] | None = None,
    gop: int = 12,
    faststart: bool = False,
) -> Path:
    """Encode RGB uint8 [H, W, 3] frames as h264 (yuv420p); ``times_ms`` sets each frame's
    presentation time by hand (variable frame rate)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = 0
        stream.options = {"preset": "ultrafast", "crf": "10"}
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for k, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if times_ms is not None:
                frame.pts = times_ms[k]
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def grey_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    return [np.full((height, width, 3), GREY0 + GREY_STEP * k, np.uint8) for k in range(count)]


@pytest.fixture(scope="session")
def grey():
    """Decoded frame of an indexed video -> its source frame index."""
    return grey_index


@pytest.fixture(scope="session")
def grey_level():
    """Source frame index -> its grey level."""
    return lambda k: GREY0 + GREY_STEP * k


@pytest.fixture(scope="session")
def vfr_times() -> list[float]:
    """Presentation times (s) of the frames of ``vfr_mp4``."""
    return [ms / 1000 for ms in VFR_TIMES_MS]


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def h264_mp4(video_dir) -> Path:
    """40 indexed frames, 64x48, 20 fps (2 s), a keyframe every 8 frames."""
    return write_video(video_dir / "indexed.mp4", grey_frames(40), fps=20, gop=8)


@pytest.fixture(scope="session")
def webm_video(video_dir) -> Path:
    """24 indexed frames, 64x48, VP9 in WebM at 12 fps (Something-Something V2 style)."""
    path = video_dir / "indexed.webm"
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for array in grey_frames(24):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


# Presentation times (ms) of the variable-frame-rate video: bursts and gaps.
VFR_TIMES_MS = [0, 40, 80, 100, 120, 400, 420, 440, 900, 1000, 1010, 1020, 1030, 1500, 1600]


@pytest.fixture(scope="session")
def vfr_mp4(video_dir) -> Path:
    """Indexed frames shown at VFR_TIMES_MS."""
    frames = grey_frames(len(VFR_TIMES_MS))
    return write_video(video_dir / "vfr.mp4", frames, fps=25, times_ms=VFR_TIMES_MS, gop=4)


@pytest.fixture(scope="session")
def hd_mp4(video_dir) -> Path:
    """1920x1080, 8 frames at 25 fps: a gradient with a square moving right."""
    rows = np.linspace(0, 255, 1080, dtype=np.float32)[:, None]
    cols = np.linspace(0, 255, 1920, dtype=np.float32)[None, :]
    base = np.stack([np.broadcast_to(rows, (1080, 1920)), np.broadcast_to(cols, (1080, 1920)),
                     np.full((1080, 1920), 128, np.float32)], axis=-1).astype(np.uint8)
    frames = []
    for k in range(8):
        frame = base.copy()
        frame[400:600, 200 + 150 * k : 400 + 150 * k] = 255
        frames.append(frame)
    return write_video(video_dir / "hd.mp4", frames, fps=25, gop=4)


@pytest.fixture(scope="session")
def audio_only(video_dir) -> Path:
    """An mp4 with one AAC audio stream and no video."""
    path = video_dir / "audio_only.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        tone = (0.2 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
        for first in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, first : first + 1024], format="fltp",
                                               layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def empty_file(video_dir) -> Path:
    path = video_dir / "empty.mp4"
    path.write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def truncated_mp4(video_dir, shared_videos) -> Path:
    """The first half of the shared demo.mp4 (its index sits at the end: unreadable)."""
    data = (shared_videos / "demo.mp4").read_bytes()
    path = video_dir / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="session")
def truncated_faststart_mp4(video_dir) -> Path:
    """A 4 s indexed video with its index first, cut after 30% of its bytes: it opens and
    claims 4 s, but the data ends early."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(80)]
    full = write_video(video_dir / "faststart_full.mp4", frames, fps=20, faststart=True)
    path = video_dir / "truncated_faststart.mp4"
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.3)])
    return path


@pytest.fixture(scope="session")
def random_bytes_mp4(video_dir) -> Path:
    path = video_dir / "random.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    return path


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    path = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "videos"
    if not path.is_dir():
        pytest.skip(f"shared videos not found at {path}")
    return path


@pytest.fixture
def copy_video(tmp_path):
    """Copy a video into tmp_path under a new relative name; returns the new path."""

    def copy(source: Path, relative: str) -> Path:
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target

    return copy
