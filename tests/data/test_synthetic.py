"""The synthetic motion dataset: rendering, the in-memory dataset, the video-file writer."""

from __future__ import annotations

import csv

import av
import numpy as np
import pytest
import torch

from vidnets.data.synthetic import (
    CLASSES,
    MARKER,
    SyntheticMotionDataset,
    clip_rng,
    render_clip,
    write_dataset,
)

FRAMES, SIZE = 8, 32


def _clips(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips ``[N, T, S, S, 3]`` float in [0, 1] of balanced labels ``[N]``."""
    labels = np.arange(count) % len(CLASSES)
    clips = [render_clip(int(y), frames=FRAMES, size=SIZE, rng=clip_rng(seed, "train", i))
             for i, y in enumerate(labels)]
    return np.stack(clips).astype(np.float32) / 255.0, labels


def _target_track(clips: np.ndarray) -> np.ndarray:
    """Per-frame measurements of the target ``[N, T, 3]``: centroid x, centroid y and log
    area of its bright pixels (the target is the only thing that bright)."""
    bright = clips.max(-1) > 0.78  # [N, T, S, S]
    area = bright.sum((2, 3)) + 1.0
    grid = np.arange(SIZE)
    x = (bright * grid[None, None, None, :]).sum((2, 3)) / area
    y = (bright * grid[None, None, :, None]).sum((2, 3)) / area
    return np.stack([x, y, np.log(area)], axis=-1)


def _nearest_centroid_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Fit class centroids on the first half of standardised features, score the second."""
    features = (features - features.mean(0)) / (features.std(0) + 1e-8)
    half = len(labels) // 2
    centroids = np.stack([features[:half][labels[:half] == c].mean(0)
                          for c in range(len(CLASSES))])
    distances = ((features[half:, None] - centroids[None]) ** 2).sum(-1)
    return float((distances.argmin(1) == labels[half:]).mean())


def test_render_is_deterministic_and_seed_dependent():
    a = render_clip(3, frames=FRAMES, size=SIZE, rng=np.random.default_rng(7))
    b = render_clip(3, frames=FRAMES, size=SIZE, rng=np.random.default_rng(7))
    c = render_clip(3, frames=FRAMES, size=SIZE, rng=np.random.default_rng(8))
    assert a.dtype == np.uint8 and a.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_every_class_renders_a_moving_clip():
    for label in range(len(CLASSES)):
        clip = render_clip(label, frames=FRAMES, size=SIZE, rng=np.random.default_rng(label))
        assert clip.shape == (FRAMES, SIZE, SIZE, 3)
        change = np.abs(np.diff(clip.astype(np.int16), axis=0)).mean()
        assert change > 8, f"{CLASSES[label]}: frames barely change ({change:.1f})"


def test_pair_classes_are_exact_time_reversals():
    """Class 2k+1 shows the frames of class 2k backwards: the same frame set, so no single
    frame (nor any order-blind function of the frames) separates a pair."""
    for pair in range(len(CLASSES) // 2):
        forward = render_clip(2 * pair, frames=FRAMES, size=SIZE, rng=np.random.default_rng(pair))
        backward = render_clip(2 * pair + 1, frames=FRAMES, size=SIZE,
                               rng=np.random.default_rng(pair))
        assert np.array_equal(forward[::-1], backward), CLASSES[2 * pair]
        assert not np.array_equal(forward, backward)


def test_the_class_shows_in_the_order_of_frames_only():
    """The same per-frame measurements classify well when their order is used (net change
    from the first to the last frame) and at chance when it is not (their distribution)."""
    clips, labels = _clips(600)
    track = _target_track(clips)
    change = track[:, -1] - track[:, 0]
    distribution = np.concatenate([track.mean(1), track.std(1), track.min(1), track.max(1)],
                                  axis=1)
    ordered = _nearest_centroid_accuracy(change, labels)
    unordered = _nearest_centroid_accuracy(distribution, labels)
    assert ordered > 0.6, f"net change of the target track gives only {ordered:.0%}"
    assert unordered < 0.2, f"the frames' statistics give {unordered:.0%} (chance 10%)"


def test_dataset_items_follow_the_contract():
    mean, std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
    data = SyntheticMotionDataset(12, frames=FRAMES, size=SIZE, seed=3, mean=mean, std=std)
    assert len(data) == 12 and sorted(set(data.labels)) == list(range(10))
    item = data[5]
    assert item["video"].dtype == torch.float32
    assert item["video"].shape == (3, FRAMES, SIZE, SIZE)
    assert item["label"].dtype == torch.int64 and int(item["label"]) == data.labels[5]
    assert item["index"] == 5 and item["view"] == 0
    raw = render_clip(data.labels[5], frames=FRAMES, size=SIZE, rng=clip_rng(3, "train", 5))
    expected = (torch.from_numpy(raw).permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225
    torch.testing.assert_close(item["video"], expected)
    data.set_epoch(4)
    torch.testing.assert_close(data[5]["video"], item["video"])


def test_dataset_splits_and_seeds_differ():
    train = SyntheticMotionDataset(4, frames=FRAMES, size=SIZE, seed=0, split="train")
    val = SyntheticMotionDataset(4, frames=FRAMES, size=SIZE, seed=0, split="val")
    other = SyntheticMotionDataset(4, frames=FRAMES, size=SIZE, seed=1, split="train")
    assert not torch.equal(train[0]["video"], val[0]["video"])
    assert not torch.equal(train[0]["video"], other[0]["video"])
    with pytest.raises(ValueError, match="split"):
        SyntheticMotionDataset(4, frames=FRAMES, size=SIZE, split="test")


def test_tuple_index_renders_that_shape():
    data = SyntheticMotionDataset(4, frames=FRAMES, size=SIZE)
    item = data[(2, 4, 40)]
    assert item["video"].shape == (3, 4, 40, 40)
    assert item["index"] == 2 and int(item["label"]) == data.labels[2]
    with pytest.raises(IndexError, match="out of range"):
        data[4]


def test_transform_sees_uint8_frames():
    seen = []

    def transform(frames: torch.Tensor) -> torch.Tensor:
        seen.append((frames.dtype, tuple(frames.shape)))
        return frames[:, :16, :16]

    data = SyntheticMotionDataset(2, frames=FRAMES, size=SIZE, transform=transform)
    assert data[0]["video"].shape == (3, FRAMES, 16, 16)
    assert seen == [(torch.uint8, (FRAMES, SIZE, SIZE, 3))]


def test_write_dataset_writes_decodable_videos_and_csvs(tmp_path):
    out = tmp_path / "synth"
    paths = write_dataset(out, num_train=10, num_val=4, frames=FRAMES, size=SIZE, fps=8,
                          seed=5, workers=2)
    assert paths["classes"].read_text().split() == list(CLASSES)
    for split, count in (("train", 10), ("val", 4)):
        with paths[split].open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == count
        assert {row["label"] for row in rows} <= set(CLASSES)
        data = SyntheticMotionDataset(count, frames=FRAMES, size=SIZE, seed=5, split=split)
        assert [CLASSES.index(row["label"]) for row in rows] == data.labels
        with av.open(str(out / rows[0]["path"])) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and float(stream.average_rate) == 8
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        assert frames.shape == (FRAMES, SIZE, SIZE, 3)
        original = (data[0]["video"].permute(1, 2, 3, 0) * 255).numpy()
        error = np.abs(frames.astype(np.float32) - original).mean()
        assert error < 12, f"{rows[0]['path']}: mean error {error:.1f} after compression"


def test_write_dataset_overwrites_only_its_own_directories(tmp_path):
    out = tmp_path / "synth"
    write_dataset(out, num_train=3, num_val=2, frames=4, size=SIZE, fps=4)
    write_dataset(out, num_train=2, num_val=1, frames=4, size=SIZE, fps=4)
    assert len(list((out / "train").glob("*.mp4"))) == 2
    assert (out / MARKER).is_file()
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        write_dataset(foreign, num_train=2, num_val=1, frames=4, size=SIZE, fps=4)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="even"):
        write_dataset(tmp_path / "odd", num_train=2, num_val=1, frames=4, size=33, fps=4)
