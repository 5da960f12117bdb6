"""`vidnets predict`: single view, TxS views, streaming; metadata-driven preprocessing;
unreadable files reported and skipped."""

from __future__ import annotations

import json

import pytest
import torch

from tests.deploy.conftest import LABELS
from vidnets import create_model, model_config
from vidnets.cli import main
from vidnets.data.transforms import ClipTransform
from vidnets.data.video import clip_starts, probe_video, read_clip, read_video
from vidnets.deploy.loading import class_names, load_inference_model
from vidnets.deploy.preprocess import Preprocessing

VIDEOS = ("test.mp4", "test.avi", "part_0.mp4", "demo.mp4")
# The metadata's preprocessing (tests/deploy/conftest.py), written out independently.
TRANSFORM = ClipTransform(64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=False)


def _model(weights, name="movinet_a0_stream"):
    return create_model(name, weights=weights)


def _predict_json(capsys, *args) -> tuple[int, list[dict], str]:
    code = main(["predict", *map(str, args), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def _probabilities(entry: dict) -> torch.Tensor:
    """The full probability vector from a top-k list that names every class."""
    probabilities = torch.zeros(len(LABELS))
    for item in entry["top_k"]:
        assert item["label"] == LABELS[item["index"]]
        probabilities[item["index"]] = item["probability"]
    return probabilities


@torch.no_grad()
def test_predicts_good_videos_and_names_the_bad_one(shared_dir, stream_weights, tmp_path,
                                                    capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    paths = [shared_dir / "data" / "videos" / v for v in VIDEOS]
    code, results, err = _predict_json(capsys, *paths[:2], broken, *paths[2:], "--model",
                                       "movinet_a0_stream", "--weights", stream_weights,
                                       "--top-k", "5")
    assert code == 1
    assert [r["video"] for r in results] == list(map(str, [*paths[:2], broken, *paths[2:]]))
    assert results[2]["top_k"] == [] and "cannot open as a video" in results[2]["error"]
    assert f"skipped {broken}: cannot open as a video" in err and "1 of 5 videos" in err
    model = _model(stream_weights)
    for path, result in zip(paths, results[:2] + results[3:], strict=True):
        assert result["error"] is None
        probabilities = [item["probability"] for item in result["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)
        # direct: the centred clip of 8 frames at 8 fps, 64 px (the metadata's, not the
        # registry's 172 px)
        start = clip_starts(probe_video(path).duration, 1.0, mode="uniform")[0]
        clip = TRANSFORM(read_clip(path, start=start, num_frames=8, fps=8))
        expected = model(clip[None])[0].softmax(-1)
        torch.testing.assert_close(_probabilities(result), expected, atol=1e-5, rtol=0)


def test_text_output_lists_top_k_per_video(shared_dir, stream_weights, tmp_path, capsys):
    missing = tmp_path / "missing.mp4"
    video = shared_dir / "data" / "videos" / "part_0.mp4"
    code = main(["predict", str(video), str(missing), "--model", "movinet_a0_stream",
                 "--weights", str(stream_weights), "--top-k", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("movinet_a0_stream: 8 frames at 8 fps, 64 x 64, 1x1 views")
    assert lines[1] == str(video) and len(lines) == 4
    assert all(line.strip().split("%  ")[1] in LABELS for line in lines[2:])
    assert f"skipped {missing}: file not found" in err


@torch.no_grad()
def test_streaming_equals_the_whole_video_as_one_clip(shared_dir, stream_weights, capsys):
    video = shared_dir / "data" / "videos" / "test.avi"  # 6.6 s: 53 frames, 4 chunks
    code, results, _ = _predict_json(capsys, video, "--model", "movinet_a0_stream",
                                     "--weights", stream_weights, "--streaming",
                                     "--top-k", "5")
    assert code == 0
    frames = read_video(video, fps=8)
    assert len(frames) > 48
    expected = _model(stream_weights)(TRANSFORM(frames)[None])[0].softmax(-1)
    torch.testing.assert_close(_probabilities(results[0]), expected, atol=1e-5, rtol=0)


@torch.no_grad()
def test_views_average_the_softmax_of_every_clip_and_crop(shared_dir, base_weights, capsys):
    video = shared_dir / "data" / "videos" / "test.mp4"
    code, results, _ = _predict_json(capsys, video, "--model", "movinet_a0_base",
                                     "--weights", base_weights, "--views", "2x3",
                                     "--top-k", "5")
    assert code == 0
    model = _model(base_weights, "movinet_a0_base")
    views = []
    for start in clip_starts(probe_video(video).duration, 1.0, mode="uniform", num_clips=2):
        frames = read_clip(video, start=start, num_frames=8, fps=8)
        views += [model(TRANSFORM(frames, crop=crop)[None])[0].softmax(-1) for crop in range(3)]
    torch.testing.assert_close(_probabilities(results[0]), torch.stack(views).mean(0),
                               atol=1e-5, rtol=0)


def test_bad_flag_combinations_are_clear_errors(shared_dir, stream_weights, base_weights,
                                                capsys):
    video = str(shared_dir / "data" / "videos" / "part_0.mp4")
    assert main(["predict", video, "--model", "movinet_a0_stream", "--weights",
                 str(stream_weights), "--views", "2x1", "--streaming"]) == 2
    assert "--views or --streaming, not both" in capsys.readouterr().err
    assert main(["predict", video, "--model", "movinet_a0_base", "--weights",
                 str(base_weights), "--streaming"]) == 2
    assert "cannot stream" in capsys.readouterr().err


def test_metadata_decides_and_the_registry_fills_gaps():
    cfg = model_config("movinet_a0_stream")
    prep = Preprocessing.from_metadata({"size": 96, "fps": None, "stride": 2,
                                        "test_scale": 1.25}, cfg)
    assert (prep.frames, prep.size, prep.fps, prep.stride) == (cfg.frames, 96, None, 2)
    assert (prep.mean, prep.std, prep.test_scale) == (cfg.mean, cfg.std, 1.25)
    assert Preprocessing.from_metadata({}, cfg).fps == cfg.fps  # no fps key: the registry's
    assert prep.transform()(torch.zeros(2, 120, 160, 3, dtype=torch.uint8)).shape == \
        (3, 2, 96, 96)


def test_class_names_come_from_metadata_then_flag_then_label_sets(stream_weights):
    cfg = model_config("movinet_a0_stream")
    assert class_names({"labels": ["x", "y"]}, cfg, 2, labels="hmdb51") == ("x", "y")
    assert class_names({"label_set": "kinetics600"}, cfg, 51, labels="hmdb51")[0] == \
        "brush_hair"
    assert class_names({"label_set": "kinetics400"}, cfg, 400)[0] == "abseiling"
    assert len(class_names({}, cfg, 600)) == 600  # the registry's kinetics600
    assert class_names({}, cfg, 3) == ("0", "1", "2")
    with pytest.raises(ValueError, match="--labels hmdb51 has 51 class names but the model "
                                         "has 3"):
        class_names({}, cfg, 3, labels="hmdb51")
    assert load_inference_model("movinet_a0_stream", stream_weights).class_names == \
        tuple(LABELS)
