"""PNG figures: training curves, confusion matrices and class probabilities over the time
of a stream (matplotlib, Agg backend).

``metrics.jsonl`` records are dicts; the curves use these keys when present:
``kind`` (``"train"`` per logged step, ``"val"`` per evaluation; other kinds are plotted
under their own name), ``step`` for the x axis when every record has one (else
``epoch``), ``loss``, ``lr`` (train) and ``top1`` / ``top5`` / ``mAP`` (accuracy panel).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

ACCURACY_KEYS = ("top1", "top5", "mAP")
MAX_CELL_TEXT = 20  # write the value in every cell up to this many classes
MAX_TICK_LABELS = 100  # name every class up to this many


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (blank lines skipped)."""
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON record: {err}") from None
    return records


def _series(records: Iterable[dict[str, Any]], kind: str, key: str,
            x_key: str) -> tuple[list, list]:
    xs, ys = [], []
    for r in records:
        if r.get("kind", "train") == kind and r.get(key) is not None and x_key in r:
            xs.append(r[x_key])
            ys.append(r[key])
    return xs, ys


def plot_curves(metrics: str | Path | Sequence[dict[str, Any]], out_png: str | Path) -> Path:
    """Loss (per logged step / epoch, every kind) with the learning rate on a twin axis,
    and accuracy per evaluation, side by side; returns ``out_png``."""
    records = read_metrics(metrics) if isinstance(metrics, str | Path) else list(metrics)
    if not records:
        raise ValueError("plot_curves: no metrics records to plot")
    kinds = list(dict.fromkeys(r.get("kind", "train") for r in records))
    x_key = "step" if all("step" in r for r in records) else "epoch"
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
    for kind in kinds:
        xs, ys = _series(records, kind, "loss", x_key)
        if xs:
            ax_loss.plot(xs, ys, label=f"{kind} loss", marker="" if kind == "train" else "o")
    ax_loss.set(xlabel=x_key, ylabel="loss", title="loss")
    xs, ys = _series(records, "train", "lr", x_key)
    if xs:
        ax_lr = ax_loss.twinx()
        ax_lr.plot(xs, ys, color="tab:gray", linestyle="--", label="lr")
        ax_lr.set_ylabel("learning rate")
        ax_lr.legend(loc="upper center")
    if ax_loss.lines:
        ax_loss.legend(loc="upper right")
    for kind in kinds:
        for key in ACCURACY_KEYS:
            xs, ys = _series(records, kind, key, x_key)
            if xs:
                ax_acc.plot(xs, ys, marker="o", label=f"{kind} {key}")
    ax_acc.set(xlabel=x_key, ylabel="%", title="accuracy")
    if ax_acc.lines:
        ax_acc.legend(loc="lower right")
    else:
        ax_acc.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
                    transform=ax_acc.transAxes)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    return _save(plt, fig, out_png)


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str] | None,
                   out_png: str | Path, *, title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows: true class) as a heat map; cell values up to
    20 classes, class names on the axes up to 100; returns ``out_png``."""
    confusion = torch.as_tensor(confusion).double()
    c = confusion.shape[0]
    if confusion.ndim != 2 or confusion.shape[1] != c or c == 0:
        raise ValueError(f"plot_confusion: expected a square [C, C] matrix, got shape "
                         f"{tuple(confusion.shape)}")
    if class_names is not None and len(class_names) != c:
        raise ValueError(f"plot_confusion: {len(class_names)} class names for {c} classes")
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    rows = confusion / confusion.sum(dim=1, keepdim=True).clamp(min=1)
    plt = _pyplot()
    side = min(4 + 0.25 * c, 30)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if c <= MAX_TICK_LABELS:
        font = 9 if c <= MAX_CELL_TEXT else max(4, 9 - c // 20)
        ax.set_xticks(range(c), names, rotation=90, fontsize=font)
        ax.set_yticks(range(c), names, fontsize=font)
    if c <= MAX_CELL_TEXT:
        for i in range(c):
            for j in range(c):
                value = float(rows[i, j])
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(plt, fig, out_png)


def plot_stream_probabilities(times: Sequence[float] | torch.Tensor,
                              probabilities: torch.Tensor, class_names: Sequence[str],
                              out_png: str | Path, *, title: str = "predictions over time"
                              ) -> Path:
    """One line per class: ``probabilities [N, K]`` at stream ``times [N]`` (seconds),
    the legend naming the ``K`` classes; returns ``out_png``."""
    probabilities = torch.as_tensor(probabilities).float()
    times = torch.as_tensor(times).double()
    if probabilities.ndim != 2 or probabilities.shape[0] != len(times):
        raise ValueError(f"plot_stream_probabilities: expected probabilities [N, K] for "
                         f"{len(times)} times, got shape {tuple(probabilities.shape)}")
    if len(class_names) != probabilities.shape[1]:
        raise ValueError(f"plot_stream_probabilities: {len(class_names)} class names for "
                         f"{probabilities.shape[1]} classes")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    marker = "o" if len(times) == 1 else ""
    for column, name in enumerate(class_names):
        ax.plot(times.numpy(), probabilities[:, column].numpy(), marker=marker, label=name)
    ax.set(xlabel="time (s)", ylabel="probability", title=title, ylim=(0.0, 1.0))
    ax.grid(alpha=0.3)
    if class_names:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    return _save(plt, fig, out_png)


def _save(plt: Any, fig: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
