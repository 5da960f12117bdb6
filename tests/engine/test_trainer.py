"""The trainer with real processes: SIGKILL + resume, 2-process DDP, streaming training."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vidnets import create_model
from vidnets.engine.config import load_config
from vidnets.engine.trainer import RunDirError, Trainer

TINY = {
    "model": {"name": "movinet_a0_stream"},
    "data": {"dataset": "synthetic", "frames": 4, "size": 32, "synthetic_train": 24,
             "synthetic_val": 8, "num_workers": 0},
    "train": {"epochs": 2, "batch_size": 4, "seed": 3, "deterministic": True, "threads": 1,
              "log_every": 1, "label_smoothing": 0.1,
              "optim": {"name": "sgd", "lr": 0.05, "warmup_epochs": 0.5}},
    "eval": {"batch_size": 8},
}


def write_config(tmp_path: Path, name: str, **sections) -> Path:
    cfg = json.loads(json.dumps(TINY))
    for section, values in sections.items():
        cfg[section].update(values)
    cfg["run"] = {"out_dir": str(tmp_path / "runs"), "name": name}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vidnets.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def test_run_dir_is_never_reused(tmp_path):
    path = write_config(tmp_path, "once", train={"epochs": 1})
    Trainer(load_config(path), progress_bar=False).fit()
    with pytest.raises(RunDirError, match="already exists"):
        Trainer(load_config(path), progress_bar=False)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    # 12 steps (2 epochs of 6); a checkpoint every 2 steps.
    ref_cfg = write_config(tmp_path, "reference", train={"checkpoint_every": 2})
    Trainer(load_config(ref_cfg), progress_bar=False).fit()
    reference = weights(tmp_path / "runs" / "reference")

    cfg = write_config(tmp_path, "killed", train={"checkpoint_every": 2})
    run = tmp_path / "runs" / "killed"
    pointer = run / "checkpoints" / "last.json"
    proc = subprocess.Popen(cli("train", "--config", str(cfg), "--quiet"), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if pointer.is_file() and json.loads(pointer.read_text())["step"] >= 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()
    step = json.loads(pointer.read_text())["step"]
    assert 2 <= step < 12 and not (run / "model.safetensors").exists()

    out = subprocess.run(cli("train", "--resume", str(run), "--quiet"), env=env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"step {step}" in out.stdout
    resumed = weights(run)
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"]
    assert steps == list(range(1, 13))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # 3 SGD steps of a global batch of 4: one process with 4 clips, or two with 2 each
    # (BatchNorm statistics over the global batch through DistributedBatchNorm).
    sections = {"train": {"epochs": 1, "sync_bn": True, "optim": {"name": "sgd", "lr": 0.01}},
                "model": {"options": {"dropout": 0.0}}, "data": {"synthetic_train": 12}}
    trainer = Trainer(load_config(write_config(tmp_path, "single", **sections)),
                      progress_bar=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    ddp = write_config(tmp_path, "ddp", **sections)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    out = subprocess.run(torchrun + ["-m", "vidnets.cli", "train", "--config", str(ddp),
                                     "--quiet"], env=env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    one, two = weights(tmp_path / "runs" / "single"), weights(tmp_path / "runs" / "ddp")
    assert one.keys() == two.keys()
    moved = 0
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=2e-5, msg=key)
        moved += value.is_floating_point() and (value - initial[key]).abs().max() > 1e-4
    assert moved > 100  # trained weights are compared, not initial ones


def test_streaming_training_gradients_match_a_hand_written_loop(tmp_path):
    cfg = load_config(write_config(tmp_path, "stream", train={"streaming": {"n_clips": 2}}),
                      ["model.options={dropout: 0.0}"])
    trainer = Trainer(cfg, progress_bar=False)
    model = trainer.model
    video, target = torch.rand(2, 3, 4, 32, 32), torch.tensor([1, 3])
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    loss = trainer._backward(video, target)
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.load_state_dict(snapshot)
    model.zero_grad(set_to_none=True)
    state, expected_loss = model.init_state(2, 32, 32), 0.0
    for i in range(2):
        logits, state = model.stream_step(video[:, :, 2 * i:2 * i + 2], state)
        part = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1) / 2
        part.backward()
        expected_loss += part.item()
        state = {k: v.detach() for k, v in state.items()}
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    for name, param in model.named_parameters():
        torch.testing.assert_close(got[name], param.grad, msg=name)

    # Without the detach the first sub-clip would also get the second one's gradient.
    model.load_state_dict(snapshot)
    model.zero_grad(set_to_none=True)
    whole, _ = model.stream_step(video, model.init_state(2, 32, 32))
    torch.nn.functional.cross_entropy(whole, target, label_smoothing=0.1).backward()
    assert any(not torch.allclose(got[n], p.grad) for n, p in model.named_parameters())


def test_streaming_training_refuses_a_non_causal_model(tmp_path):
    cfg = load_config(write_config(tmp_path, "base", train={"streaming": {"n_clips": 2}},
                                   model={"name": "movinet_a0_base"}))
    with pytest.raises(ValueError, match="causal"):
        Trainer(cfg, progress_bar=False).fit()


def test_multigrid_run_changes_shapes_and_saves_a_plain_model(tmp_path):
    path = write_config(tmp_path, "multigrid", train={
        "epochs": 4, "batch_size": 4, "multigrid": {"enabled": True, "bn_base_size": 2}},
        data={"frames": 8, "size": 64, "synthetic_train": 64},
        model={"options": {"conv_type": "3d_2plus1d"}})
    trainer = Trainer(load_config(path), progress_bar=False)
    schedule = trainer.multigrid
    assert trainer.total_epochs == schedule.total_epochs == 6  # epoch_factor 1.5
    shapes = {(s.frames, s.size) for e in range(6) for s in schedule.iteration_shapes(e)}
    assert len(shapes) > 3 and (8, 64) in shapes
    trainer.fit()
    batches = {r["batch_size"] for r in trainer.log.records() if r["kind"] == "train"}
    assert len(batches) > 2  # long- and short-cycle batch sizes
    saved = weights(tmp_path / "runs" / "multigrid")
    assert not any("split_running" in k for k in saved)
    plain = create_model("movinet_a0_stream", num_classes=10, weights=tmp_path / "runs" /
                         "multigrid" / "model.safetensors", conv_type="3d_2plus1d")
    assert plain(torch.rand(1, 3, 8, 64, 64)).shape == (1, 10)


def test_bf16_autocast_tensorboard_and_the_saved_config(tmp_path):
    # In a subprocess: TensorBoard imports TensorFlow when it is installed, and the
    # official-checkpoint tests assert that loading never does.
    path = write_config(tmp_path, "bf16", train={"epochs": 1, "amp": "bf16",
                                                 "tensorboard": True, "grad_clip": 1.0})
    out = subprocess.run(cli("train", "--config", str(path), "--quiet", "train.optim.lr=0.02"),
                         env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    run = tmp_path / "runs" / "bf16"
    saved = load_config(run / "config.yaml")
    assert saved.train.optim.lr == 0.02 and saved.train.amp == "bf16"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 6 and all(0 < x < 10 for x in losses)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
