"""Evaluation on real mp4 files: single/multi-view, streaming, localisation, the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from tests.conftest import randomize
from vidnets import create_model
from vidnets.data.synthetic import CLASSES, write_dataset
from vidnets.data.video import read_video
from vidnets.engine.config import load_config
from vidnets.engine.data import build_eval_dataset
from vidnets.engine.evaluate import evaluate, stream_video
from vidnets.weights.safetensors_io import save_weights


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, num_train=10, num_val=10, frames=8, size=32, fps=8, seed=1)
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize(create_model("movinet_a0_stream", num_classes=len(CLASSES)), seed=4)


def config(tmp_path, synth, val="val.csv", **data):
    values = {"dataset": "csv", "root": str(synth), "train": str(synth / "train.csv"),
              "val": str(synth / val), "labels": str(synth / "classes.txt"), "frames": 8,
              "size": 32, "num_workers": 0, **data}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "movinet_a0_stream"}, "data": values,
                                    "eval": {"batch_size": 4}}))
    return path


def test_single_view_equals_the_model_on_each_decoded_video(tmp_path, synth, model):
    cfg = load_config(config(tmp_path, synth))
    result = evaluate(model, cfg, views="1x1", out_dir=tmp_path, progress=False)
    dataset, _ = build_eval_dataset(cfg)
    correct = 0
    with torch.no_grad():
        for i, record in enumerate(dataset.records):
            video = read_video(record.path).permute(3, 0, 1, 2).float() / 255  # 32x32 already
            correct += int(model(video[None]).argmax()) == int(dataset.video_label(i))
    assert result["videos"] == 10 and result["skipped"] == 0
    assert result["top1"] == pytest.approx(100 * correct / 10)
    assert (tmp_path / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multi_view_averages_softmax_over_clips_and_crops(tmp_path, synth, model):
    cfg = load_config(config(tmp_path, synth))
    result = evaluate(model, cfg, views="2x3", progress=False)
    dataset, _ = build_eval_dataset(cfg, num_clips=2, num_crops=3)
    with torch.no_grad():
        probs = torch.stack([model(dataset[i]["video"][None])[0].softmax(-1)
                             for i in range(len(dataset))]).view(10, 6, -1).mean(1)
    labels = torch.stack([dataset.video_label(i) for i in range(10)])
    assert result["views"] == 6 and result["videos"] == 10
    assert result["top1"] == pytest.approx(100 * (probs.argmax(1) == labels).float().mean())
    top5 = (probs.topk(5).indices == labels[:, None]).any(1).float().mean()
    assert result["top5"] == pytest.approx(100 * top5)


def test_streaming_evaluation_gives_the_whole_clip_prediction(tmp_path, synth, model):
    cfg = load_config(config(tmp_path, synth))
    clip = evaluate(model, cfg, views="1x1", progress=False)
    stream = evaluate(model, cfg, streaming=True, chunk=3, progress=False)
    assert stream["mode"] == "streaming" and stream["videos"] == 10
    assert stream["top1"] == clip["top1"]
    assert stream["per_class"] == clip["per_class"]


def test_per_frame_streaming_equals_the_clip_up_to_each_frame(model):
    video = torch.rand(3, 6, 32, 32)
    per_frame = stream_video(model, video, per_frame=True)
    with torch.no_grad():
        for t in (0, 2, 5):
            torch.testing.assert_close(per_frame[t], model(video[None, :, :t + 1])[0],
                                       atol=1e-4, rtol=1e-4)


def test_a_corrupt_video_is_skipped_and_named(tmp_path, synth, model):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    rows = (synth / "val.csv").read_text().splitlines()
    (tmp_path / "val_broken.csv").write_text("\n".join(rows + [f"{broken},{CLASSES[0]}"]))
    cfg = load_config(config(tmp_path, synth, val=str(tmp_path / "val_broken.csv")))
    for kwargs in ({"views": "1x3"}, {"streaming": True}):
        result = evaluate(model, cfg, progress=False, **kwargs)
        assert result["videos"] == 10 and result["skipped"] == 1
        assert list(result["skipped_files"]) == [str(broken)]


def test_charades_style_localisation_scores_every_frame(tmp_path, synth):
    # Multi-label annotations over the synthetic videos (1 s each at 8 fps): class c000 in
    # the first half of every video, c001 in the second half of odd ones.
    lines = ["id,actions"]
    for i in range(4):
        actions = "c000 0.00 0.50" + (";c001 0.50 1.00" if i % 2 else "")
        shutil.copy(synth / "val" / f"{i:05d}.mp4", tmp_path / f"v{i}.mp4")
        lines.append(f"v{i},{actions}")
    (tmp_path / "charades.csv").write_text("\n".join(lines) + "\n")
    cfg = load_config(config(tmp_path, synth, dataset="charades", root=str(tmp_path),
                             val=str(tmp_path / "charades.csv"), labels=None,
                             multi_label=True, train=""))
    model = randomize(create_model("movinet_a0_stream", num_classes=157), seed=2)
    result = evaluate(model, cfg, localisation=True, progress=False)
    assert result["videos"] == 4
    assert 0 < result["frame_mAP"] <= 100 and 0 < result["mAP"] <= 100
    dataset, _ = build_eval_dataset(cfg, mode="stream")
    item = dataset[1]
    assert item["frame_labels"].shape == (8, 157)
    assert item["frame_labels"][:4, 0].all() and item["frame_labels"][4:, 1].all()
    assert not item["frame_labels"][5:, 0].any()  # frame 4 (t = 0.5 s) ends the segment


def test_cli_data_synth_and_eval(tmp_path, model):
    out = tmp_path / "synth"
    run = subprocess.run([sys.executable, "-m", "vidnets.cli", "data", "synth", "--out",
                          str(out), "--train", "4", "--val", "6", "--frames", "8", "--size",
                          "32"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(list((out / "val").glob("*.mp4"))) == 6
    weights = save_weights(model.state_dict(), tmp_path / "w.safetensors",
                           {"model": "movinet_a0_stream", "num_classes": len(CLASSES)})
    cfg = config(tmp_path, out)
    run = subprocess.run([sys.executable, "-m", "vidnets.cli", "eval", "--config", str(cfg),
                          "--weights", str(weights), "--views", "1x3", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["videos"] == 6 and result["views"] == 3 and 0 <= result["top1"] <= 100
    run = subprocess.run([sys.executable, "-m", "vidnets.cli", "eval", "--config", str(cfg),
                          "--weights", str(weights), "--views", "2x2"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "2x2" in run.stderr
