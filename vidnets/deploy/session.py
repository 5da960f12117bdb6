"""``vidnets stream``: a stream's predictions to the console (text or JSON lines), a plot
and an overlay video. When the source fails or the user stops it, what was seen is kept:
the plot and overlay are written and the summary printed, with a distinct exit code."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..engine.plots import plot_stream_probabilities
from .history import ProbabilityHistory
from .loading import InferenceModel
from .overlay import OverlayWriter
from .predict import top_k
from .runner import FramePrediction, StreamerLike, run_stream
from .sources import SourceDroppedError, SourceOpenError, display_name

EXIT_CANNOT_OPEN = 2
EXIT_DROPPED = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class StreamOptions:
    """What ``vidnets stream`` writes and how it reads the source."""

    top_k: int = 3
    every: int = 1  # print every N-th model frame
    json: bool = False  # JSON lines instead of text
    plot: Path | None = None
    plot_classes: int = 5
    overlay: Path | None = None
    realtime: bool = False
    input_format: str | None = None
    timeout: float = 10.0


def stream_session(source: str, streamer: StreamerLike, inference: InferenceModel,
                   options: StreamOptions, *, out: TextIO | None = None,
                   err: TextIO | None = None) -> int:
    """Run ``source`` through ``streamer`` and write the outputs ``options`` asks for
    (to ``out``/``err``, default stdout/stderr); returns the exit code: 0, 2 (cannot
    open), 3 (dropped mid-stream), 130 (Ctrl-C)."""
    out, err = out or sys.stdout, err or sys.stderr
    names = inference.class_names
    history = ProbabilityHistory(len(names))
    latest: FramePrediction | None = None
    best: list[dict[str, Any]] = []  # top-k of the latest prediction
    status, error, code, decoded = "complete", None, 0, 0
    overlay = OverlayWriter(options.overlay) if options.overlay else None
    try:
        for step in run_stream(source, streamer, inference.preprocessing,
                               realtime=options.realtime, input_format=options.input_format,
                               timeout=options.timeout):
            for prediction in step.predictions:
                history.add(prediction.time, prediction.probabilities)
                latest = prediction
                best = top_k(prediction.probabilities, names, options.top_k)
                if prediction.index % options.every == 0:
                    _print_frame(prediction, best, options.json, out)
            if step.frame is not None:
                decoded += 1
                if overlay is not None:
                    overlay.write(step.frame, step.time,
                                  [(b["label"], b["probability"]) for b in best])
    except SourceOpenError as exc:
        status, error, code = "cannot_open", str(exc), EXIT_CANNOT_OPEN
    except SourceDroppedError as exc:
        status, error, code = "dropped", str(exc), EXIT_DROPPED
    except KeyboardInterrupt:
        status, code = "interrupted", EXIT_INTERRUPTED
        error = f"{display_name(source)}: stopped by the user"
    finally:
        if overlay is not None:
            overlay.close()
    if error is not None:
        print(f"vidnets stream: {error}", file=err, flush=True)
    plot = None
    if options.plot and history.frames:
        plot = _plot(history, names, options, display_name(source))
    summary = {
        "type": "end", "source": display_name(source), "status": status, "error": error,
        "source_frames": decoded, "frames": history.frames,
        "seconds": None if latest is None else latest.time, "top_k": best,
        "plot": None if plot is None else str(plot),
        "overlay": str(overlay.path) if overlay is not None and overlay.frames else None,
    }
    _print_summary(summary, options.json, out)
    return code


def _print_frame(prediction: FramePrediction, best: list[dict[str, Any]], as_json: bool,
                 out: TextIO) -> None:
    if as_json:
        record = {"type": "frame", "frame": prediction.index, "time": prediction.time,
                  "top_k": best}
        print(json.dumps(record), file=out, flush=True)
        return
    shown = "  ".join(f"{b['label']} {b['probability']:.3f}" for b in best)
    print(f"{prediction.time:9.2f}s  #{prediction.index:<6d} {shown}", file=out, flush=True)


def _plot(history: ProbabilityHistory, names: tuple[str, ...], options: StreamOptions,
          source: str) -> Path:
    classes = history.top_classes(options.plot_classes)
    times, probabilities = history.series(classes)
    return plot_stream_probabilities(times, probabilities, [names[c] for c in classes],
                                     options.plot, title=f"{source}: top classes over time")


def _print_summary(summary: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(summary), file=out, flush=True)
        return
    if summary["status"] == "cannot_open":
        return  # the error line says it all
    seconds = "-" if summary["seconds"] is None else f"{summary['seconds']:.2f} s"
    print(f"{summary['source']}: {summary['status']}, {summary['source_frames']} frames "
          f"decoded, {summary['frames']} model frames ({seconds})", file=out)
    if summary["top_k"]:
        print("  final    " + "  ".join(f"{b['label']} {b['probability']:.3f}"
                                        for b in summary["top_k"]), file=out)
    for key in ("plot", "overlay"):
        if summary[key]:
            print(f"  {key:<8} {summary[key]}", file=out)
    out.flush()
