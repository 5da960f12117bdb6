"""Top-k, confusion, multi-view aggregation, (frame) mAP and the run's PNG figures."""

from __future__ import annotations

import json

import pytest
import torch

from vidnets.engine.metrics import (
    ClassificationMeter,
    ViewAggregator,
    frame_map,
    mean_average_precision,
    per_class_average_precision,
    topk_correct,
)
from vidnets.engine.plots import plot_confusion, plot_curves, read_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_topk_correct_by_hand():
    logits = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.0, 0.3],   # ranks: 3, 1, 5, 2, 0, 4
                           [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],   # ranks: 0..5
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])  # ranks: 5..0
    labels = torch.tensor([1, 5, 5])
    assert topk_correct(logits, labels, (1, 2, 5, 6)) == {1: 1, 2: 2, 5: 2, 6: 3}
    assert topk_correct(logits[:, :3], torch.tensor([1, 2, 0]), (1, 5)) == {1: 1, 5: 3}
    with pytest.raises(ValueError, match="labels"):
        topk_correct(logits, torch.tensor([0, 6, 1]))


def test_classification_meter_by_hand():
    meter = ClassificationMeter(4)
    scores = torch.tensor([[5.0, 1, 0, 0],   # true 0 -> 0
                           [0.0, 5, 1, 0],   # true 1 -> 1
                           [0.0, 5, 1, 0],   # true 2 -> 1 (2nd)
                           [1.0, 0, 5, 0],   # true 0 -> 2 (2nd)
                           [0.0, 0, 5, 1]])  # true 3 -> 2 (2nd)
    labels = torch.tensor([0, 1, 2, 0, 3])
    meter.update(scores[:2], labels[:2])
    meter.update(scores[2:], labels[2:])
    out = meter.compute()
    assert out["count"] == 5
    assert out["top1"] == pytest.approx(40.0)
    assert out["top5"] == pytest.approx(100.0)  # top-4 with 4 classes
    assert out["per_class"] == pytest.approx([50.0, 100.0, 0.0, 0.0])
    assert out["mean_class_accuracy"] == pytest.approx(37.5)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for true, pred in ((0, 0), (1, 1), (2, 1), (0, 2), (3, 2)):
        expected[true, pred] += 1
    assert torch.equal(out["confusion"], expected) and out["confusion"].dtype == torch.int64


def test_classification_meter_top5_and_absent_classes():
    torch.manual_seed(0)
    scores, labels = torch.randn(40, 10), torch.randint(0, 5, (40,))  # classes 5-9 absent
    meter = ClassificationMeter(10)
    meter.update(scores, labels)
    out = meter.compute()
    ranks = (scores > scores.gather(1, labels[:, None])).sum(1)
    assert out["top1"] == pytest.approx(100.0 * (ranks == 0).float().mean().item())
    assert out["top5"] == pytest.approx(100.0 * (ranks < 5).float().mean().item())
    assert out["per_class"][5:] == [None] * 5
    present = [v for v in out["per_class"] if v is not None]
    assert out["mean_class_accuracy"] == pytest.approx(sum(present) / len(present))
    with pytest.raises(ValueError, match="no samples"):
        ClassificationMeter(3).compute()
    with pytest.raises(ValueError, match="10 classes"):
        ClassificationMeter(3).update(scores, labels)


def test_view_aggregator_averages_softmax_over_views():
    torch.manual_seed(0)
    num_videos, num_classes, num_views = 5, 6, 3
    logits = torch.randn(num_videos, num_views, num_classes) * 3
    agg = ViewAggregator(num_videos, num_classes, num_views)
    pairs = [(v, k) for v in range(num_videos) for k in range(num_views) if (v, k) != (4, 1)]
    order = torch.randperm(len(pairs)).tolist()
    pairs = [pairs[i] for i in order]
    for start in range(0, len(pairs), 4):  # batches of 4 views in shuffled order
        chunk = pairs[start:start + 4]
        agg.add(torch.tensor([v for v, _ in chunk]), torch.tensor([k for _, k in chunk]),
                torch.stack([logits[v, k] for v, k in chunk]))
    agg.add(torch.tensor([0]), torch.tensor([2]), logits[0, 2][None] + 100)  # duplicate
    expected = logits.softmax(-1).mean(1)
    expected[4] = (logits[4, 0].softmax(-1) + logits[4, 2].softmax(-1)) / 2
    assert torch.allclose(agg.video_scores(), expected, atol=1e-6)
    assert agg.view_counts().tolist() == [3, 3, 3, 3, 2]
    assert agg.complete().tolist() == [True, True, True, True, False]
    with pytest.raises(ValueError, match="view 3"):
        agg.add(torch.tensor([0]), torch.tensor([3]), logits[0, :1])


def test_view_aggregator_without_num_views_and_multi_label():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 4)  # [video, view, class]
    agg = ViewAggregator(3, 4)  # the number of views: the highest view index seen + 1
    agg.add(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]), logits[:, 0])
    assert agg.complete().all()
    agg.add(torch.tensor([0, 2]), torch.tensor([1, 1]), logits[[0, 2], 1])
    assert agg.complete().tolist() == [True, False, True]
    assert torch.allclose(agg.video_scores()[0], logits[0].softmax(-1).mean(0), atol=1e-6)
    multi = ViewAggregator(3, 4, 2, multi_label=True)  # Charades: mean of sigmoids
    multi.add(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1] * 3), logits.reshape(6, 4))
    assert torch.allclose(multi.video_scores(), logits.sigmoid().mean(1), atol=1e-6)


def test_average_precision_by_hand():
    # class 0: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2
    # class 1: tie 0.5/0.5 (one positive, one negative) -> one threshold:
    #          thresholds 0.9 (P 0), 0.5 (tp 1, fp 2: P 1/3, R 1/2), 0.1 (P 2/4, R 1)
    #          AP = 1/2 * 1/3 + 1/2 * 1/2
    # class 2: no positive -> excluded
    scores = torch.tensor([[0.9, 0.9, 0.3], [0.8, 0.5, 0.2], [0.7, 0.5, 0.1], [0.6, 0.1, 0.0]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    ap = per_class_average_precision(scores, targets)
    assert ap[0].item() == pytest.approx((1 + 2 / 3) / 2)
    assert ap[1].item() == pytest.approx(1 / 6 + 1 / 4)
    assert ap[2].isnan()
    assert mean_average_precision(scores, targets) == pytest.approx(
        100 * ((1 + 2 / 3) / 2 + 1 / 6 + 1 / 4) / 2)
    swapped = scores[[0, 2, 1, 3]], targets[[0, 2, 1, 3]]  # tied rows in the other order
    assert per_class_average_precision(*swapped)[1].item() == pytest.approx(1 / 6 + 1 / 4)
    perfect = torch.tensor([[0.9], [0.8], [0.1]]), torch.tensor([[1], [1], [0]])
    assert mean_average_precision(*perfect) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="no class"):
        mean_average_precision(torch.rand(3, 2), torch.zeros(3, 2))


def test_frame_map_concatenates_or_samples_25_frames():
    torch.manual_seed(1)
    lengths = (50, 30, 10)
    scores = [torch.rand(t, 4) for t in lengths]
    targets = [(torch.rand(t, 4) > 0.6).float() for t in lengths]
    everything = frame_map(scores, targets)
    assert everything == pytest.approx(
        mean_average_precision(torch.cat(scores), torch.cat(targets)))
    sampled = frame_map(scores, targets, frames_per_video=25)
    # frame floor(j * T / 25) at time j / 25 of each video, j = 0..24
    picks = [[j * t // 25 for j in range(25)] for t in lengths]
    assert picks[0][:3] == [0, 2, 4] and picks[2][:5] == [0, 0, 0, 1, 1]
    kept = [(s[p], t[p]) for s, t, p in zip(scores, targets, picks, strict=True)]
    expected = mean_average_precision(torch.cat([s for s, _ in kept]),
                                      torch.cat([t for _, t in kept]))
    assert sampled == pytest.approx(expected)
    assert sampled != pytest.approx(everything)
    with pytest.raises(ValueError, match="video 1"):
        frame_map(scores, [targets[0], targets[1][:5], targets[2]])


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_plot_curves_from_metrics_jsonl(tmp_path):
    records = [{"kind": "train", "epoch": s / 10, "step": s, "loss": 2.0 / (1 + s / 20),
                "lr": 0.1 * min(1.0, s / 10)} for s in range(60)]
    records += [{"kind": "val", "epoch": e, "top1": 20.0 * e, "top5": 30 + 10.0 * e,
                 "loss": 1.5 / e} for e in range(1, 7)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert read_metrics(path) == records
    assert_png(plot_curves(path, tmp_path / "curves.png"))
    assert_png(plot_curves(records[:60], tmp_path / "train_only.png"))
    with_steps = [{**r, "step": r.get("step", 10 * r["epoch"])} for r in records]
    assert_png(plot_curves(with_steps, tmp_path / "by_step.png"))
    with pytest.raises(ValueError, match="no metrics"):
        plot_curves([], tmp_path / "empty.png")


@pytest.mark.parametrize("num_classes", [5, 60])
def test_plot_confusion(tmp_path, num_classes):
    torch.manual_seed(0)
    confusion = torch.randint(0, 5, (num_classes, num_classes)) + 20 * torch.eye(
        num_classes, dtype=torch.int64)
    names = [f"class {i}" for i in range(num_classes)]
    out = plot_confusion(confusion, names, tmp_path / "sub" / "confusion.png")
    assert_png(out)
    with pytest.raises(ValueError, match="class names"):
        plot_confusion(confusion, names[:-1], tmp_path / "bad.png")
