"""Decoding real files: the shared videos, hand-made VFR/1080p clips and broken files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vidnets.data.video import (
    VideoError,
    clip_starts,
    iter_frames,
    open_video,
    probe_video,
    read_clip,
    read_frame_folder,
    read_video,
)

SHARED = ["demo.mp4", "test.mp4", "part_0.mp4", "test.avi"]


def decode_all(path) -> tuple[list[float], list[np.ndarray]]:
    """Every frame decoded from the start (no seeking): the reference."""
    pairs = list(iter_frames(path))
    return [t for t, _ in pairs], [a for _, a in pairs]


def latest_at(times: list[float], target: float) -> int:
    """Index of the latest frame shown at ``target`` (the first for earlier targets)."""
    return max([i for i, t in enumerate(times) if t <= target + 1e-6], default=0)


@pytest.mark.parametrize("name", SHARED)
def test_probe_matches_decoded_frames(shared_videos, name):
    info = probe_video(shared_videos / name)
    times, frames = decode_all(shared_videos / name)
    assert info.num_frames == len(frames)
    assert (info.height, info.width, 3) == frames[0].shape
    assert info.duration == pytest.approx(len(frames) / info.fps, abs=2 / info.fps)
    assert info.has_audio == (name == "test.avi")
    assert all(b > a for a, b in zip(times[:-1], times[1:], strict=True)), "times must increase"
    assert times[-1] == pytest.approx(info.duration, abs=2 / info.fps)


@pytest.mark.parametrize("name", SHARED)
def test_clips_equal_frames_decoded_from_start(shared_videos, name):
    """Seek + partial decode gives exactly the frames a full decode gives, by stride and
    by time (fps), including starts right after a keyframe and near the end (padding)."""
    path = shared_videos / name
    info = probe_video(path)
    times, frames = decode_all(path)
    for start in (0.0, 0.3, info.duration * 0.68, info.duration - 10 / info.fps):
        clip = read_clip(path, start=start, num_frames=8, stride=2)
        first = next(i for i, t in enumerate(times) if t >= start - 1e-6)
        expected = [frames[min(first + 2 * k, len(frames) - 1)] for k in range(8)]
        assert clip.dtype == torch.uint8 and clip.shape == (8, info.height, info.width, 3)
        np.testing.assert_array_equal(clip.numpy(), np.stack(expected), err_msg=f"{start=}")

        clip = read_clip(path, start=start, num_frames=6, fps=7.5)
        expected = [frames[latest_at(times, start + k / 7.5)] for k in range(6)]
        np.testing.assert_array_equal(clip.numpy(), np.stack(expected), err_msg=f"{start=}")


def test_seek_starts_decoding_at_a_later_keyframe(shared_videos):
    """demo.mp4 has a keyframe at 6.68 s: a clip at 7 s must not decode from 0."""
    with open_video(shared_videos / "demo.mp4") as video:
        first_time, _ = next(video.frames(7.0))
    assert 6.0 < first_time <= 7.0


def test_variable_frame_rate_sampling_picks_frames_by_time(vfr_mp4, vfr_times, grey):
    times = vfr_times
    for start, fps in ((0.0, 10.0), (0.41, 20.0), (0.95, 50.0)):
        clip = read_clip(vfr_mp4, start=start, num_frames=8, fps=fps)
        got = [grey(frame) for frame in clip.numpy()]
        assert got == [latest_at(times, start + k / fps) for k in range(8)], (start, fps)
    clip = read_clip(vfr_mp4, start=0.41, num_frames=4, stride=2)
    assert [grey(f) for f in clip.numpy()] == [6, 8, 10, 12]


def test_iter_frames_resamples_whole_vfr_video(vfr_mp4, vfr_times, grey):
    info = probe_video(vfr_mp4)
    times = vfr_times
    pairs = list(iter_frames(vfr_mp4, fps=10))
    # targets run until the last frame's display interval ends (1 / average fps)
    assert len(pairs) == int((times[-1] + 1 / info.fps) * 10 - 1e-9) + 1
    for k, (time, frame) in enumerate(pairs):
        assert time == pytest.approx(k / 10)
        assert grey(frame) == latest_at(times, k / 10)
    assert [grey(a) for _, a in iter_frames(vfr_mp4)] == list(range(len(times)))


def test_full_hd_clip(hd_mp4):
    info = probe_video(hd_mp4)
    assert (info.width, info.height, info.num_frames) == (1920, 1080, 8)
    clip = read_clip(hd_mp4, start=0.2, num_frames=3)  # frames 5, 6, 7
    assert clip.shape == (3, 1080, 1920, 3)
    for k, frame in enumerate(clip.numpy(), start=5):
        left = 200 + 150 * k
        assert frame[420:580, left + 20 : left + 180].min() > 230  # the white square
        assert frame[420:580, left - 60 : left - 20, 2].mean() < 160  # background
    _, frames = decode_all(hd_mp4)
    np.testing.assert_array_equal(clip.numpy(), np.stack(frames[5:8]))


def test_too_short_pads_with_last_frame_or_fails(h264_mp4, grey):
    clip = read_clip(h264_mp4, start=1.5, num_frames=16)  # 10 of 16 frames left
    assert [grey(f) for f in clip.numpy()] == list(range(30, 40)) + [39] * 6
    with pytest.raises(VideoError, match=r"too short: 6 frames.*clip needs 16") as err:
        read_clip(h264_mp4, start=1.7, num_frames=16)
    assert str(h264_mp4) in str(err.value)
    # stride: frames 20, 23, ..., 38 (7 of 10), padded with the video's last frame
    clip = read_clip(h264_mp4, start=1.0, num_frames=10, stride=3)
    assert [grey(f) for f in clip.numpy()] == [20, 23, 26, 29, 32, 35, 38, 39, 39, 39]


def test_indexed_video_frames_are_what_was_encoded(h264_mp4, grey, grey_level):
    video = read_video(h264_mp4)
    assert video.shape == (40, 48, 64, 3)
    levels = video.float().mean(dim=(1, 2, 3))
    expected = grey_level(torch.arange(40))
    assert (levels - expected).abs().max() < 2
    assert read_video(h264_mp4, fps=5, max_frames=6).shape[0] == 6
    assert [grey(f) for f in read_video(h264_mp4, fps=5).numpy()] == list(range(0, 40, 4))


BROKEN = {
    "empty_file": "empty file",
    "audio_only": "no video stream",
    "truncated_mp4": "cannot open",
    "random_bytes_mp4": "cannot open",
}


@pytest.mark.parametrize("fixture", BROKEN)
def test_broken_files_raise_video_error_naming_the_file(request, fixture):
    path = request.getfixturevalue(fixture)
    for read in (lambda: probe_video(path), lambda: read_clip(path, start=0, num_frames=4)):
        with pytest.raises(VideoError, match=BROKEN[fixture]) as err:
            read()
        assert str(path) in str(err.value)
        assert isinstance(err.value, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="file not found") as err:
        read_clip(tmp_path / "nope.mp4", start=0, num_frames=4)
    assert "nope.mp4" in str(err.value)


def test_truncated_data_after_the_index(truncated_faststart_mp4):
    """Opens and claims 4 s, but only the first frames are there."""
    assert probe_video(truncated_faststart_mp4).duration == pytest.approx(4.0)
    assert read_clip(truncated_faststart_mp4, start=0, num_frames=8).shape[0] == 8
    with pytest.raises(VideoError, match="too short: 0 frames"):
        read_clip(truncated_faststart_mp4, start=3.0, num_frames=8)


def test_sampling_arguments_are_checked(h264_mp4):
    with pytest.raises(ValueError, match="either fps"):
        read_clip(h264_mp4, start=0, num_frames=4, fps=10, stride=2)
    with pytest.raises(ValueError, match="num_frames"):
        read_clip(h264_mp4, start=0, num_frames=0)


def test_clip_starts():
    assert clip_starts(10, 2, mode="uniform", num_clips=5) == [0, 2, 4, 6, 8]
    assert clip_starts(10, 2, mode="uniform") == [4]
    assert clip_starts(1, 2, mode="uniform", num_clips=3) == [0, 0, 0]
    draws = clip_starts(10, 2, mode="random", num_clips=200,
                        generator=torch.Generator().manual_seed(1))
    assert min(draws) >= 0 and max(draws) <= 8 and max(draws) - min(draws) > 6
    again = clip_starts(10, 2, mode="random", num_clips=200,
                        generator=torch.Generator().manual_seed(1))
    assert draws == again
    with pytest.raises(ValueError, match="unknown clip mode"):
        clip_starts(10, 2, mode="middle")


def test_frame_folder(tmp_path, grey, grey_level):
    folder = tmp_path / "1234"
    folder.mkdir()
    for k in range(10):
        level = grey_level(k)
        Image.new("RGB", (32, 24), (level,) * 3).save(folder / f"{k + 1:05d}.jpg", quality=95)
    clip = read_frame_folder(folder, start_index=2, num_frames=4, stride=2)
    assert clip.shape == (4, 24, 32, 3)
    assert [grey(f) for f in clip.numpy()] == [2, 4, 6, 8]
    clip = read_frame_folder(folder, start_index=5, num_frames=6)  # 5 of 6: pad
    assert [grey(f) for f in clip.numpy()] == [5, 6, 7, 8, 9, 9]
    with pytest.raises(VideoError, match="too short: 2 frames"):
        read_frame_folder(folder, start_index=8, num_frames=6)
    (folder / "00003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoError, match="00003.jpg"):
        read_frame_folder(folder, start_index=0, num_frames=4)
    with pytest.raises(VideoError, match="frame folder not found"):
        read_frame_folder(tmp_path / "missing", start_index=0, num_frames=4)
