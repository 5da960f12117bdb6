"""Annotation readers on hand-written annotation files and VideoDataset on real videos."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vidnets.data.annotations import VideoRecord, check_files
from vidnets.data.datasets import (
    RECORD_KINDS,
    Failure,
    VideoDataset,
    build_records,
    collate_clips,
)
from vidnets.data.labels import LABEL_SETS, load_labels
from vidnets.data.transforms import ClipTransform

IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def eval_transform(size: int = 32) -> ClipTransform:
    return ClipTransform(size, *IDENTITY, train=False)


def frame_levels(video: torch.Tensor) -> list[float]:
    """Mean level (0-255) of each frame of a [3, T, S, S] clip in [0, 1]."""
    return [round(v * 255, 1) for v in video.mean(dim=(0, 2, 3)).tolist()]


def write_frames(folder, count: int, grey_level) -> None:
    folder.mkdir(parents=True)
    for k in range(count):
        Image.new("RGB", (40, 30), (grey_level(k),) * 3).save(folder / f"{k + 1:05d}.jpg")


# ---------------------------------------------------------------- annotation readers


def test_csv_records(tmp_path, h264_mp4, copy_video):
    copy_video(h264_mp4, "videos/a.mp4")
    copy_video(h264_mp4, "videos/sub/b.mp4")
    (tmp_path / "names.csv").write_text("path,label\nvideos/a.mp4,walk\nvideos/sub/b.mp4, Run\n")
    (tmp_path / "ints.csv").write_text("videos/a.mp4,1\nvideos/sub/b.mp4,0\n")
    records, classes = build_records("csv", root=tmp_path, annotation=tmp_path / "names.csv",
                                     labels=["run", "walk"])
    assert [(r.path, r.label) for r in records] == [
        (str(tmp_path / "videos/a.mp4"), 1), (str(tmp_path / "videos/sub/b.mp4"), 0)]
    assert classes == ("run", "walk")
    records, classes = build_records("csv", root=tmp_path, annotation=tmp_path / "ints.csv")
    assert [r.label for r in records] == [1, 0] and classes == ("0", "1")
    (tmp_path / "pyslowfast.txt").write_text("videos/sub/b.mp4 1\n")  # "path label" lists
    records, _ = build_records("csv", root=tmp_path, annotation=tmp_path / "pyslowfast.txt")
    assert [(r.path, r.label) for r in records] == [(str(tmp_path / "videos/sub/b.mp4"), 1)]
    with pytest.raises(ValueError, match=r"names.csv:2: label 'walk' is a class name"):
        build_records("csv", root=tmp_path, annotation=tmp_path / "names.csv")
    with pytest.raises(ValueError, match="unknown class 'Run'"):
        build_records("csv", root=tmp_path, annotation=tmp_path / "names.csv", labels=["walk"])


def test_folder_per_class(tmp_path, h264_mp4, copy_video):
    copy_video(h264_mp4, "walk/x.mp4")
    copy_video(h264_mp4, "run/b.mkv")
    copy_video(h264_mp4, "run/a.webm")
    (tmp_path / "run" / "notes.txt").write_text("not a video")
    records, classes = build_records("folder", root=tmp_path)
    assert classes == ("run", "walk")
    assert [(r.path.split("/")[-2:], r.label) for r in records] == [
        (["run", "a.webm"], 0), (["run", "b.mkv"], 0), (["walk", "x.mp4"], 1)]


def test_kinetics_both_layouts_and_label_spellings(tmp_path, h264_mp4, copy_video):
    copy_video(h264_mp4, "abc_000010_000020.mp4")  # flat
    copy_video(h264_mp4, "passing_American_football_(in_game)/def_000000_000010.mp4")
    copy_video(h264_mp4, "massaging person's head/ghi_000005_000015.mkv")
    annotation = tmp_path / "train.csv"
    annotation.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc,10,20,train\n"
        '"passing American football (in game)",def,0,10,train\n'
        "massaging_persons_head,ghi,5,15,train\n"
        "zumba,missing,30,40,train\n"
    )
    records, classes = build_records("kinetics", root=tmp_path, annotation=annotation)
    k400 = load_labels("kinetics400")
    assert classes == k400
    expected = ["abseiling", "passing American football (in game)",
                "massaging person's head", "zumba"]
    assert [r.label for r in records] == [k400.index(name) for name in expected]
    assert records[0].path == str(tmp_path / "abc_000010_000020.mp4")
    assert records[1].path.endswith("passing_American_football_(in_game)/def_000000_000010.mp4")
    assert records[2].path.endswith("ghi_000005_000015.mkv")
    with pytest.warns(UserWarning, match="missing_000030_000040.mp4"):
        assert len(check_files(records)) == 3
    _, classes = build_records("kinetics", root=tmp_path, annotation=annotation,
                               labels="kinetics600")
    assert len(classes) == 600
    annotation.write_text("label,youtube_id,time_start,time_end\nnot a class,x,0,10\n")
    with pytest.raises(ValueError, match=r"train.csv:2: unknown class 'not a class'"):
        build_records("kinetics", root=tmp_path, annotation=annotation)


def test_something_something_v2(tmp_path, webm_video, copy_video):
    names = load_labels("something_something_v2")
    labels_json = tmp_path / "something-something-v2-labels.json"
    # the official file maps each name to its index as a string, in no particular order
    labels_json.write_text(json.dumps({n: str(i) for i, n in reversed(list(enumerate(names)))}))
    entries = [
        {"id": "101", "label": "putting a pen on a table",
         "template": "Putting [something] on a surface", "placeholders": ["a pen"]},
        {"id": "7", "label": "pushing a cup from left to right",
         "template": "Pushing [something] from left to right", "placeholders": ["a cup"]},
    ]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    for entry in entries:
        copy_video(webm_video, f"videos/{entry['id']}.webm")
    records, classes = build_records("ssv2", root=tmp_path / "videos",
                                     annotation=tmp_path / "train.json", labels=labels_json)
    assert classes == names  # the JSON's index order is the shipped order
    assert [r.label for r in records] == [names.index("Putting something on a surface"),
                                          names.index("Pushing something from left to right")]
    dataset = VideoDataset(records, num_frames=4, transform=eval_transform(), mode="test",
                           num_classes=len(classes), stride=2)
    assert dataset[1]["video"].shape == (3, 4, 32, 32)


def test_something_something_v1_frame_folders(tmp_path, grey_level):
    for video_id, count in (("1", 20), ("2", 12)):
        write_frames(tmp_path / "frames" / video_id, count, grey_level)
    (tmp_path / "labels.csv").write_text("Holding something\nPushing something from left to "
                                         "right\n")
    (tmp_path / "train.csv").write_text("1;Pushing something from left to right\n"
                                        "2;Holding something\n")
    records, classes = build_records("ssv1", root=tmp_path / "frames",
                                     annotation=tmp_path / "train.csv",
                                     labels=tmp_path / "labels.csv")
    assert [(r.label, r.frames_dir) for r in records] == [(1, True), (0, True)]
    assert classes == ("Holding something", "Pushing something from left to right")
    test = VideoDataset(records, num_frames=4, stride=2, transform=eval_transform(),
                        mode="test", num_clips=2, num_classes=2)
    # 20 frames, a clip spans 7: starts at frames 0 and 13
    first = [frame_levels(test[i]["video"])[0] for i in (0, 1)]
    assert first == pytest.approx([grey_level(0), grey_level(13)], abs=2)
    train = VideoDataset(records, num_frames=8, stride=1, num_classes=2,
                         transform=ClipTransform(24, *IDENTITY, train=True))
    assert train[1]["video"].shape == (3, 8, 24, 24)
    stream = VideoDataset(records, num_frames=1, stride=3, transform=eval_transform(),
                          mode="stream", num_classes=2)
    assert stream[1]["video"].shape[1] == 4  # frames 0, 3, 6, 9 of 12
    with pytest.raises(ValueError, match="sampled by stride"):
        VideoDataset(records, num_frames=4, fps=10, transform=eval_transform(), mode="test",
                     num_classes=2)


CHARADES_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions," \
                  "actions,length\n"


def test_charades_multi_label_and_frame_labels(tmp_path, h264_mp4, copy_video):
    copy_video(h264_mp4, "AAAA.mp4")
    copy_video(h264_mp4, "BBBB.mp4")
    (tmp_path / "Charades_v1_train.csv").write_text(
        CHARADES_HEADER
        + 'AAAA,S1,Kitchen,6,7,Yes,"A person cooks.",food,"cooks","c092 0.60 1.20;c147 0.00 0.60",'
          "2.0\n"
        + "BBBB,S2,Bedroom,5,7,Yes,sleeps,bed,sleeps,,2.0\n"
    )
    records, classes = build_records("charades", root=tmp_path,
                                     annotation=tmp_path / "Charades_v1_train.csv")
    assert len(classes) == 157 and classes[92] == "c092"
    assert records[0].label == (92, 147) and records[1].label == ()
    assert records[0].segments == ((92, 0.6, 1.2), (147, 0.0, 0.6))
    train = VideoDataset(records, num_frames=4, fps=10, multi_label=True, num_classes=157,
                         transform=ClipTransform(32, *IDENTITY, train=True))
    target = train[0]["label"]
    assert target.dtype == torch.float32 and target.shape == (157,)
    assert target.nonzero().flatten().tolist() == [92, 147]
    assert train[1]["label"].sum() == 0
    stream = VideoDataset(records, num_frames=1, fps=5, multi_label=True, num_classes=157,
                          transform=eval_transform(), mode="stream")
    item = stream[0]
    assert item["video"].shape == (3, 10, 32, 32)  # 2 s at 5 fps
    frame_labels = item["frame_labels"]
    assert frame_labels.shape == (10, 157) and frame_labels.sum(1).gt(0).sum() == 7
    assert frame_labels[:, 147].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]  # t <= 0.6
    assert frame_labels[:, 92].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]  # 0.6 <= t <= 1.2
    assert stream[1]["frame_labels"].sum() == 0
    (tmp_path / "classes.txt").write_text(
        "\n".join(f"c{i:03d} action {i}" for i in range(157)))
    _, classes = build_records("charades", root=tmp_path, labels=tmp_path / "classes.txt",
                               annotation=tmp_path / "Charades_v1_train.csv")
    assert classes[92] == "action 92"


def test_hmdb51_official_splits(tmp_path, shared_videos, copy_video):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for name in load_labels("hmdb51"):
        (splits / f"{name}_test_split1.txt").write_text("")
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "wave_test_split1.txt").write_text("w.avi 1 \n")
    for relative in ("brush_hair/a.avi", "brush_hair/b.avi", "w.avi"):  # nested or flat
        copy_video(shared_videos / "test.avi", f"videos/{relative}")
    train, classes = build_records("hmdb51", root=tmp_path / "videos", annotation=splits)
    test, _ = build_records("hmdb51", root=tmp_path / "videos", annotation=splits, train=False)
    assert [(r.path.split("videos/")[1], r.label) for r in train] == [
        ("brush_hair/a.avi", 0), ("w.avi", classes.index("wave"))]
    assert [r.path.split("videos/")[1] for r in test] == ["brush_hair/b.avi"]
    with pytest.raises(FileNotFoundError, match="brush_hair_test_split2.txt"):
        build_records("hmdb51", root=tmp_path, annotation=splits, split=2)
    dataset = VideoDataset(train, num_frames=8, fps=12.5, transform=eval_transform(),
                           mode="test", num_classes=51)
    assert dataset[0]["video"].shape == (3, 8, 32, 32)  # mpeg4 avi with an mp3 stream


def test_ucf101_official_splits(tmp_path, h264_mp4, copy_video):
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    names = load_labels("ucf101")
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(names)))
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g01_c01.avi 101\n")
    (splits / "testlist01.txt").write_text("HandstandPushups/v_HandStandPushups_g01_c01.avi\n")
    train, classes = build_records("ucf101", root=tmp_path, annotation=splits)
    test, _ = build_records("ucf101", root=tmp_path, annotation=splits, train=False)
    assert classes == names
    assert [r.label for r in train] == [0, 100]
    assert [r.label for r in test] == [names.index("HandstandPushups")]
    assert test[0].path == str(tmp_path / "HandstandPushups/v_HandStandPushups_g01_c01.avi")
    # without classInd.txt the shipped list (same order) is used
    (splits / "classInd.txt").unlink()
    assert build_records("ucf101", root=tmp_path, annotation=splits)[1] == names


def test_shipped_label_sets_are_the_shared_copies_in_official_order(shared_dir):
    for name in LABEL_SETS:
        shared = (shared_dir / "data" / "labels" / f"{name}.txt").read_text().split("\n")
        assert list(load_labels(name)) == [line.strip() for line in shared if line.strip()]
    # HMDB-51 and Kinetics index classes alphabetically; UCF-101's classInd.txt ignores case
    for name in ("hmdb51", "kinetics400", "kinetics600"):
        assert list(load_labels(name)) == sorted(load_labels(name))
    assert list(load_labels("ucf101")) == sorted(load_labels("ucf101"), key=str.lower)


def test_unknown_kind_and_missing_annotation(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset kind 'imagenet'") as err:
        build_records("imagenet", root=tmp_path)
    assert all(kind in str(err.value) for kind in RECORD_KINDS)
    with pytest.raises(ValueError, match="needs annotation="):
        build_records("kinetics", root=tmp_path)


def test_missing_files_are_named_dropped_or_rejected(tmp_path, h264_mp4):
    records = [VideoRecord(str(h264_mp4), 0)]
    records += [VideoRecord(str(tmp_path / f"gone_{i:02d}.mp4"), 0) for i in range(25)]
    with pytest.warns(UserWarning) as caught:
        kept = check_files(records)
    assert len(caught) == 1 and kept == records[:1]
    message = str(caught[0].message)
    assert "25 video(s)" in message and "gone_19.mp4" in message and "and 5 more" in message
    assert "gone_20.mp4" not in message
    with pytest.raises(FileNotFoundError, match="gone_00.mp4"):
        check_files(records, strict=True)
    with pytest.warns(UserWarning, match="gone_00.mp4"):
        dataset = VideoDataset(records, num_frames=4, transform=eval_transform(),
                               mode="test", num_classes=1)
    assert len(dataset) == 1


# ---------------------------------------------------------------- datasets


def test_train_items_are_deterministic_per_seed_epoch_index(shared_videos, h264_mp4):
    records = [VideoRecord(str(shared_videos / "demo.mp4"), 3), VideoRecord(str(h264_mp4), 1)]
    dataset = VideoDataset(records, num_frames=4, fps=6, num_classes=5, seed=7,
                           transform=ClipTransform(48, *IDENTITY, train=True))
    first = dataset[0]
    assert first["video"].shape == (3, 4, 48, 48)
    assert first["label"].dtype == torch.int64 and first["label"].item() == 3
    assert (first["index"], first["view"]) == (0, 0)
    backwards = [dataset[i] for i in (1, 0)]
    assert torch.equal(backwards[1]["video"], first["video"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["video"], first["video"])
    dataset.set_epoch(0)
    assert torch.equal(dataset[0]["video"], first["video"])


def test_test_views_are_uniform_clips_times_crops(shared_videos, h264_mp4, grey_level):
    records = [VideoRecord(str(h264_mp4), 0), VideoRecord(str(shared_videos / "demo.mp4"), 1)]
    dataset = VideoDataset(records, num_frames=4, transform=eval_transform(), mode="test",
                           num_clips=3, num_crops=3, num_classes=2)
    assert len(dataset) == 18
    # 2 s at 20 fps, 4-frame clips: starts 0, 0.9, 1.8 s = frames 0, 18, 36
    for clip, frame in enumerate((0, 18, 36)):
        item = dataset[clip * 3 + 1]
        assert (item["index"], item["view"]) == (0, clip * 3 + 1)
        assert frame_levels(item["video"]) == pytest.approx(
            [grey_level(frame + k) for k in range(4)], abs=2)
    crops = [dataset[9 + 3 + crop]["video"] for crop in range(3)]  # demo.mp4, clip 1
    assert dataset[12]["index"] == 1
    assert not torch.equal(crops[0], crops[1]) and not torch.equal(crops[1], crops[2])


def test_stream_mode_gives_every_frame(h264_mp4, grey_level):
    dataset = VideoDataset([VideoRecord(str(h264_mp4), 0)], num_frames=1, fps=10,
                           transform=eval_transform(), mode="stream", num_classes=1)
    item = dataset[0]
    assert item["video"].shape == (3, 20, 32, 32)
    assert frame_levels(item["video"]) == pytest.approx([grey_level(2 * k) for k in range(20)],
                                                        abs=2)
    assert "frame_labels" not in item
    with pytest.raises(ValueError, match="needs an eval transform"):
        VideoDataset([VideoRecord(str(h264_mp4), 0)], num_frames=1, mode="stream",
                     transform=ClipTransform(32, *IDENTITY, train=True), num_classes=1)


def test_multigrid_index_overrides_frames_and_size(h264_mp4, grey_level):
    dataset = VideoDataset([VideoRecord(str(h264_mp4), 0)], num_frames=8, fps=10,
                           transform=eval_transform(64), mode="test", num_classes=1)
    base, small = dataset[0]["video"], dataset[(0, 4, 32)]["video"]
    assert base.shape == (3, 8, 64, 64) and small.shape == (3, 4, 32, 32)
    steps = [b - a for a, b in zip(frame_levels(small)[:-1], frame_levels(small)[1:],
                                   strict=True)]
    assert steps == pytest.approx([2 * (grey_level(1) - grey_level(0))] * 3, abs=2)


BROKEN = ["empty_file", "audio_only", "truncated_mp4", "random_bytes_mp4"]


def test_broken_videos_become_failures_and_collate_keeps_the_good(request, h264_mp4):
    broken = [request.getfixturevalue(name) for name in BROKEN]
    records = [VideoRecord(str(h264_mp4), 0)] + [VideoRecord(str(p), 1) for p in broken]
    dataset = VideoDataset(records, num_frames=4, num_classes=2, mode="test",
                           transform=ClipTransform(32, *IDENTITY, train=False))
    items = [dataset[i] for i in range(len(dataset))]
    assert not isinstance(items[0], Failure)
    failures = items[1:]
    assert all(isinstance(f, Failure) for f in failures)
    assert [(f.index, f.path) for f in failures] == [(i + 1, str(p)) for i, p in
                                                      enumerate(broken)]
    assert "empty file" in failures[0].reason and "no video stream" in failures[1].reason
    loader = DataLoader(dataset, batch_size=5, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["video"].shape == (1, 3, 4, 32, 32)
    assert batch["label"].tolist() == [0] and batch["index"].tolist() == [0]
    assert [path for path, _ in batch["failures"]] == [str(p) for p in broken]
    assert collate_clips(failures)["failures"] == [(f.path, f.reason) for f in failures]


def test_training_replaces_a_broken_video_and_reports_it(request, h264_mp4):
    broken = [request.getfixturevalue(name) for name in BROKEN]
    for path in broken:
        dataset = VideoDataset([VideoRecord(str(h264_mp4), 0), VideoRecord(str(path), 1)],
                               num_frames=4, num_classes=2,
                               transform=ClipTransform(32, *IDENTITY, train=True))
        batch = collate_clips([dataset[0], dataset[1]])
        assert batch["video"].shape == (2, 3, 4, 32, 32)  # the batch keeps its size
        assert batch["label"].tolist() == [0, 0] and batch["index"].tolist() == [0, 0]
        assert [p for p, _ in batch["failures"]] == [str(path)]
    only_broken = VideoDataset([VideoRecord(str(p), 1) for p in broken], num_frames=4,
                               num_classes=2, transform=ClipTransform(32, *IDENTITY, train=True))
    assert isinstance(only_broken[0], Failure)


def test_too_short_video_is_a_failure(h264_mp4):
    dataset = VideoDataset([VideoRecord(str(h264_mp4), 0)], num_frames=100, num_classes=1,
                           transform=eval_transform(), mode="test")
    failure = dataset[0]
    assert isinstance(failure, Failure)
    assert "too short: 40 frames" in failure.reason and "clip needs 100" in failure.reason


def test_labels_are_checked_at_construction(h264_mp4):
    with pytest.raises(ValueError, match=r"indexed.mp4: label \[5\] outside \[0, 3\)"):
        VideoDataset([VideoRecord(str(h264_mp4), 5)], num_frames=4, num_classes=3,
                     transform=eval_transform(), mode="test")
    with pytest.raises(ValueError, match="multi_label=True"):
        VideoDataset([VideoRecord(str(h264_mp4), (1, 2))], num_frames=4, num_classes=3,
                     transform=eval_transform(), mode="test")


def test_worker_processes_give_the_same_batches(shared_videos, h264_mp4):
    records = [VideoRecord(str(h264_mp4), 0), VideoRecord(str(shared_videos / "part_0.mp4"), 1)]
    dataset = VideoDataset(records * 2, num_frames=4, stride=2, num_classes=2, seed=3,
                           transform=ClipTransform(32, *IDENTITY, train=True))

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(dataset, batch_size=2, num_workers=workers,
                            collate_fn=collate_clips)
        return [batch["video"] for batch in loader]

    for serial, parallel in zip(batches(0), batches(2), strict=True):
        assert torch.equal(serial, parallel)
