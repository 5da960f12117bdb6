"""Run logs: ``metrics.jsonl`` (one JSON object per line), optional TensorBoard."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` (and TensorBoard scalars if asked).

    ``resume_from(step)`` drops records written after the checkpoint a run resumes from,
    so the file of a resumed run reads like that of an uninterrupted one.
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError("train.tensorboard needs the tensorboard package "
                                   "(pip install tensorboard)") from exc
            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def resume_from(self, step: int) -> None:
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")
        if self.writer is not None:
            kind = record.get("kind", "train")
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{kind}/{key}", value, record.get("step", 0))

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
