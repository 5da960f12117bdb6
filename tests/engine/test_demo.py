"""The main job end to end, at toy size: mp4 dataset -> train -> evaluate -> per-frame."""

from __future__ import annotations

import json
import subprocess
import sys

from safetensors import safe_open

from vidnets.data.synthetic import CLASSES


def test_demo_runs_end_to_end_on_real_mp4_files(tmp_path):
    out = tmp_path / "demo"
    overrides = ["data.synthetic_train=16", "data.synthetic_val=6", "data.frames=8",
                 "data.size=32", "train.epochs=1", "train.batch_size=8", "data.num_workers=1",
                 "train.threads=1"]
    run = subprocess.run([sys.executable, "-m", "vidnets.cli", "demo", "--out", str(out),
                          *overrides], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(list((out / "data" / "train").glob("*.mp4"))) == 16
    lines = run.stdout.splitlines()
    assert sum(line.lstrip().startswith("frame ") for line in lines) == 8  # one per frame
    assert "val top-1" in lines[-1] and "streaming" in lines[-1] and "wall time" in lines[-1]
    run_dir = out / "run"
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "confusion.png"):
        assert (run_dir / name).is_file(), name
    with safe_open(str(run_dir / "model.safetensors"), "pt") as f:
        metadata = json.loads(f.metadata()["vidnets"])
    assert metadata["labels"] == list(CLASSES) and metadata["frames"] == 8

    again = subprocess.run([sys.executable, "-m", "vidnets.cli", "demo", "--out", str(out)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "not empty" in again.stderr
