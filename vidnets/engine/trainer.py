"""The training loop: plain, streaming (causal models) and Multigrid; DDP; exact resume."""

from __future__ import annotations

import contextlib
import datetime
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..layers.norm import (
    aggregate_sub_batch_stats,
    convert_to_batch_norm,
    convert_to_distributed_batch_norm,
    convert_to_sub_batch_norm,
)
from ..models.base import VideoClassifier
from ..registry import create_model, model_config
from . import checkpoint as ckpt
from .config import Config, ModelSection, save_config
from .data import build_datasets, clip_shape
from .distributed import DistEnv, all_gather_objects, barrier, init_distributed
from .logging import MetricsLog
from .metrics import ClassificationMeter, mean_average_precision
from .multigrid import MultigridBatchSampler, MultigridSchedule, apply_bn_splits, per_rank
from .optim import autocast_context, build_optimizer, lr_factor, make_grad_scaler, scaled_lr
from .sampler import ShardedBatchSampler


class RunDirError(RuntimeError):
    """A run directory that exists (and is not being resumed) or is not a run."""


def build_model(section: ModelSection, num_classes: int) -> VideoClassifier:
    """The model of ``section`` with ``num_classes`` outputs; pretrained ``weights`` load
    first, and the classifier is replaced when their class count differs (fine-tuning)."""
    if section.weights:
        model = create_model(section.name, weights=section.weights, **section.options)
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
    else:
        model = create_model(section.name, num_classes=num_classes, **section.options)
    return model.train()


def set_bn_momentum(model: nn.Module, momentum: float) -> int:
    """Set the running-statistics momentum of every BatchNorm; returns how many."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def checkpoint_metadata(cfg: Config, class_names: Iterable[str], num_classes: int
                        ) -> dict[str, Any]:
    """What a trained checkpoint carries so inference guesses nothing: the model and its
    builder options, the class names, and the preprocessing it was trained with."""
    mcfg = model_config(cfg.model.name)
    frames, size = clip_shape(cfg.data, mcfg)
    return {
        "model": mcfg.name, "family": mcfg.family, "options": dict(cfg.model.options),
        "num_classes": num_classes, "labels": list(class_names), "label_set": None,
        "mean": mcfg.mean, "std": mcfg.std, "input_range": mcfg.input_range,
        "frames": frames, "size": size, "fps": cfg.data.fps, "stride": cfg.data.stride,
        "test_scale": cfg.data.test_scale, "format": "vidnets-trained",
    }


def new_run_dir(cfg: Config) -> Path:
    """``run.out_dir / run.name`` (default ``{model}-{timestamp}``); never an existing one."""
    name = cfg.run.name or f"{cfg.model.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    path = Path(cfg.run.out_dir) / name
    if path.exists():
        raise RunDirError(f"run directory {path} already exists; resume it with "
                          f"`vidnets train --resume {path}` or choose another run.name")
    return path


@dataclass
class Progress:
    """Where a run is: completed ``epoch``s, batches done in the current one, optimizer
    steps in total; skipped videos per epoch."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    failures: dict[str, str] = field(default_factory=dict)


class _Forward(nn.Module):
    """What DDP wraps: a whole-clip forward, or a streaming step when a state is given
    (DDP synchronises gradients only for calls that go through ``forward``)."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, state: dict[str, torch.Tensor] | None = None):
        if state is None:
            return self.model(x)
        return self.model.stream_step(x, state)


class Trainer:
    """Trains ``cfg`` into ``run_dir`` (new) or continues the run in ``run_dir``
    (``resume=True``: configuration, weights, optimizer, sampler position and RNG states
    come from its last checkpoint)."""

    def __init__(self, cfg: Config, *, run_dir: str | Path | None = None, resume: bool = False,
                 progress_bar: bool = True) -> None:
        self.env: DistEnv = init_distributed()
        self.cfg = cfg
        self.progress_bar = progress_bar and self.env.is_main
        self.run_dir = self._prepare_run_dir(run_dir, resume)
        self._setup_determinism()
        self.train_set, self.val_set, self.class_names = build_datasets(cfg, seed=cfg.train.seed)
        self.num_classes = cfg.model.num_classes or len(self.class_names)
        self.model = build_model(cfg.model, self.num_classes).to(self.env.device)
        if cfg.train.bn_momentum is not None:
            set_bn_momentum(self.model, cfg.train.bn_momentum)
        self.multigrid = self._setup_multigrid()
        if self.env.distributed and cfg.train.sync_bn:
            convert_to_distributed_batch_norm(self.model)
        self.forward = _Forward(self.model)
        if self.env.distributed:
            self.forward = nn.parallel.DistributedDataParallel(
                self.forward, device_ids=[self.env.device] if self.env.device.type == "cuda"
                else None)
        if cfg.train.compile:
            self.forward = torch.compile(self.forward)
        self.global_batch = cfg.train.batch_size
        self.optimizer = build_optimizer(self.model, cfg.train.optim,
                                         global_batch=self.global_batch)
        self.base_lr = scaled_lr(cfg.train.optim, self.global_batch)
        self.scaler = make_grad_scaler(cfg.train.amp, self.env.device)
        self.metadata = checkpoint_metadata(cfg, self.class_names, self.num_classes)
        self.progress = Progress()
        self.log = MetricsLog(self.run_dir, tensorboard=cfg.train.tensorboard) \
            if self.env.is_main else None
        if resume:
            self._resume()

    # -- setup ---------------------------------------------------------------------------
    def _prepare_run_dir(self, run_dir: str | Path | None, resume: bool) -> Path:
        """Rank 0 picks and creates the directory (never reusing one by accident) and
        saves the resolved config; every rank gets rank 0's path."""
        path = None
        if self.env.is_main:
            path = Path(run_dir) if run_dir is not None else new_run_dir(self.cfg)
            if not resume:
                if path.exists() and any(path.iterdir()):
                    raise RunDirError(f"run directory {path} is not empty; resume it with "
                                      f"--resume or choose another run.name")
                path.mkdir(parents=True, exist_ok=True)
                save_config(self.cfg, path / "config.yaml")
        return Path(all_gather_objects(str(path), self.env)[0])

    def _setup_determinism(self) -> None:
        train = self.cfg.train
        if train.threads:
            torch.set_num_threads(train.threads)
        torch.manual_seed(train.seed + self.env.rank)
        if train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    def _setup_multigrid(self) -> MultigridSchedule | None:
        section = self.cfg.train.multigrid
        if not section.enabled:
            return None
        optim = self.cfg.train.optim
        frames, size = clip_shape(self.cfg.data, model_config(self.cfg.model.name))
        steps = "cosine" if optim.schedule == "cosine" else list(optim.steps)
        schedule = MultigridSchedule(self.cfg.train.batch_size, frames, size,
                                     self.cfg.train.epochs, steps, section)
        convert_to_sub_batch_norm(self.model, 1)
        if self.env.is_main:
            print(schedule.describe(), flush=True)
        return schedule

    @property
    def total_epochs(self) -> int:
        return self.multigrid.total_epochs if self.multigrid else self.cfg.train.epochs

    # -- data ----------------------------------------------------------------------------
    def _batch_sampler(self, epoch: int, start_batch: int):
        env, train = self.env, self.cfg.train
        if self.multigrid is not None:
            order = DistributedSampler(self.train_set, num_replicas=env.world_size,
                                       rank=env.rank, seed=train.seed, shuffle=True)
            sampler = MultigridBatchSampler(order, self.multigrid, drop_last=True,
                                            world_size=env.world_size)
            sampler.set_epoch(epoch)
            sampler.skip(start_batch)
            shape = per_rank(self.multigrid.shape_at(epoch), env.world_size)
            apply_bn_splits(self.model, shape, train.multigrid.bn_base_size)
            return sampler
        sampler = ShardedBatchSampler(len(self.train_set), train.batch_size, rank=env.rank,
                                      world_size=env.world_size, seed=train.seed)
        sampler.set_epoch(epoch, start_batch)
        return sampler

    def _loader(self, batch_sampler) -> DataLoader:
        from ..data.datasets import collate_clips

        workers = self.cfg.data.num_workers
        return DataLoader(self.train_set, batch_sampler=batch_sampler, num_workers=workers,
                          collate_fn=collate_clips, persistent_workers=False,
                          generator=torch.Generator().manual_seed(self.cfg.train.seed),
                          pin_memory=self.env.device.type == "cuda")

    # -- one optimisation step -------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.cfg.data.multi_label:
            return F.binary_cross_entropy_with_logits(logits, target.float())
        return F.cross_entropy(logits, target, label_smoothing=self.cfg.train.label_smoothing)

    def _step(self, video: torch.Tensor, target: torch.Tensor) -> float:
        """Forward/backward of one batch and one optimizer step; returns the loss."""
        loss = self._backward(video, target)
        train = self.cfg.train
        if train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _backward(self, video: torch.Tensor, target: torch.Tensor) -> float:
        """Accumulate the gradients of one batch (whole clips, or ``n_clips`` streamed
        sub-clips); returns the loss."""
        n_clips = self.cfg.train.streaming.n_clips
        autocast = autocast_context(self.cfg.train.amp, self.env.device)
        if n_clips > 1:
            return self._stream_backward(video, target, n_clips, autocast)
        with autocast:
            loss = self._loss(self.forward(video), target)
        self.scaler.scale(loss).backward()
        return loss.item()

    def _stream_backward(self, video: torch.Tensor, target: torch.Tensor, n_clips: int,
                         autocast) -> float:
        """Streaming training (MoViNet-pytorch's recipe): the clip is cut into ``n_clips``
        sub-clips fed in order with the state carried and detached between them; each
        sub-clip's logits (the running prediction) get ``loss / n_clips``."""
        if not self.model.causal:
            raise ValueError(f"train.streaming.n_clips={n_clips} needs a causal model; "
                             f"{self.cfg.model.name} is not (use a *_stream model)")
        b, _, t, h, w = video.shape
        if t % n_clips:
            raise ValueError(f"clip of {t} frames does not split into "
                             f"train.streaming.n_clips={n_clips} equal sub-clips")
        step = t // n_clips
        state = self.model.init_state(b, h, w, dtype=video.dtype, device=video.device)
        total = 0.0
        for i in range(n_clips):
            sync = (contextlib.nullcontext() if i == n_clips - 1 or not self.env.distributed
                    else self.forward.no_sync())
            with sync:
                with autocast:
                    logits, state = self.forward(video[:, :, i * step:(i + 1) * step], state)
                    loss = self._loss(logits, target) / n_clips
                self.scaler.scale(loss).backward()
            state = {k: v.detach() for k, v in state.items()}
            total += loss.item()
        return total

    def _set_lr(self, epoch_progress: float) -> float:
        optim = self.cfg.train.optim
        if self.multigrid is not None:
            # Multigrid's own stages and batch multipliers, under the usual linear warm-up.
            factor = self.multigrid.lr_factor(epoch_progress)
            if epoch_progress < optim.warmup_epochs:
                start = optim.warmup_start_factor
                factor *= start + (1 - start) * epoch_progress / optim.warmup_epochs
        else:
            factor = lr_factor(optim, epoch_progress, self.total_epochs)
        lr = self.base_lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # -- epochs ----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the end; returns the final validation metrics."""
        final: dict[str, Any] = {}
        start = self._fit_start = time.perf_counter()
        while self.progress.epoch < self.total_epochs:
            self._train_epoch()
            epoch = self.progress.epoch
            self.progress.epoch += 1
            self.progress.batch = 0
            last = self.progress.epoch == self.total_epochs
            if last or (self.cfg.train.eval_every and epoch % self.cfg.train.eval_every
                        == self.cfg.train.eval_every - 1):
                final = self.validate(epoch)
            self._save()
        self._finish(final, time.perf_counter() - start)
        return final

    def _train_epoch(self) -> None:
        epoch = self.progress.epoch
        cfg = self.cfg
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        sampler = self._batch_sampler(epoch, self.progress.batch)
        steps = len(sampler) + self.progress.batch
        self.model.train()
        bar = None
        if self.progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.progress.batch, desc=f"epoch {epoch + 1}/"
                       f"{self.total_epochs}", unit="it", dynamic_ncols=True, leave=False)
        epoch_failures: dict[str, str] = {}
        loss_sum, seen, data_time, step_time = 0.0, 0, 0.0, 0.0
        tick = time.perf_counter()
        for batch in self._loader(sampler):
            loaded = time.perf_counter()
            self._note_failures(batch["failures"], epoch_failures)
            if "video" not in batch:
                tick = time.perf_counter()
                continue
            video = batch["video"].to(self.env.device, non_blocking=True)
            target = batch["label"].to(self.env.device, non_blocking=True)
            lr = self._set_lr(epoch + self.progress.batch / steps)
            loss = self._step(video, target)
            done = time.perf_counter()
            self.progress.batch += 1
            self.progress.step += 1
            n = video.shape[0] * self.env.world_size
            loss_sum += loss * n
            seen += n
            data_time += loaded - tick
            step_time += done - loaded
            tick = done
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}",
                                clips_s=f"{seen / max(data_time + step_time, 1e-9):.1f}")
                bar.update()
            if self.log is not None and self.progress.step % max(cfg.train.log_every, 1) == 0:
                self.log.write({"kind": "train", "step": self.progress.step, "epoch": epoch,
                                "loss": loss, "lr": lr, "batch_size": n,
                                "clips_per_s": seen / max(data_time + step_time, 1e-9)})
            if cfg.train.checkpoint_every and self.progress.step % cfg.train.checkpoint_every == 0 \
                    and self.progress.batch < steps:
                self._save()
        if bar is not None:
            bar.close()
        self._epoch_summary(epoch, epoch_failures, loss_sum / max(seen, 1), seen, data_time,
                            step_time)

    def _note_failures(self, failures: list[tuple[str, str]], epoch_failures: dict[str, str]
                       ) -> None:
        for path, reason in failures:
            if path not in epoch_failures:
                epoch_failures[path] = reason
                warnings.warn(f"skipped video {path}: {reason}", stacklevel=2)

    def _epoch_summary(self, epoch: int, failures: dict[str, str], loss: float, seen: int,
                       data_time: float, step_time: float) -> None:
        gathered = all_gather_objects(failures, self.env)
        merged = {k: v for part in gathered for k, v in part.items()}
        self.progress.failures.update(merged)
        if not self.env.is_main:
            return
        wall = data_time + step_time
        record = {"kind": "epoch", "step": self.progress.step, "epoch": epoch, "loss": loss,
                  "clips": seen, "clips_per_s": seen / max(wall, 1e-9),
                  "data_wait_s": data_time, "compute_s": step_time,
                  "skipped_videos": len(merged),
                  "elapsed_s": time.perf_counter() - self._fit_start}
        self.log.write(record)
        line = (f"epoch {epoch + 1}/{self.total_epochs}: loss {loss:.4f}, {seen} clips, "
                f"{record['clips_per_s']:.1f} clips/s (waiting for data {data_time:.1f} s, "
                f"compute {step_time:.1f} s)")
        if merged:
            names = ", ".join(f"{Path(p).name} ({r})" for p, r in list(merged.items())[:10])
            line += f"; skipped {len(merged)} unusable videos: {names}"
        print(line, flush=True)

    # -- validation, checkpoints ------------------------------------------------------------
    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, Any]:
        """Single-view accuracy on the validation split (rank 0; the others wait)."""
        metrics: dict[str, Any] = {}
        if self.env.is_main and self.val_set is not None:
            metrics = evaluate_clips(self.model, self.val_set, num_classes=self.num_classes,
                                     batch_size=self.cfg.eval.batch_size,
                                     num_workers=self.cfg.data.num_workers,
                                     multi_label=self.cfg.data.multi_label,
                                     device=self.env.device)
            self.log.write({"kind": "val", "step": self.progress.step, "epoch": epoch,
                            "elapsed_s": time.perf_counter() - self._fit_start,
                            **{k: v for k, v in metrics.items() if k != "confusion"}})
            summary = ", ".join(f"{k} {metrics[k]:.2f}" for k in ("top1", "top5", "mAP")
                                if k in metrics)
            print(f"epoch {epoch + 1}/{self.total_epochs}: val {summary}", flush=True)
        barrier(self.env)
        self.model.train()
        return metrics

    def _trainer_state(self) -> dict[str, Any]:
        return {"epoch": self.progress.epoch, "batch": self.progress.batch,
                "step": self.progress.step, "failures": dict(self.progress.failures),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": ckpt.rng_state(), "world_size": self.env.world_size}

    def _save(self) -> None:
        if self.env.is_main:
            ckpt.save_checkpoint(self.run_dir / "checkpoints", self.progress.step,
                                 self.model.state_dict(), self._trainer_state(), self.metadata)
        barrier(self.env)

    def _resume(self) -> None:
        loaded = ckpt.load_checkpoint(self.run_dir / "checkpoints")
        if loaded is None:
            raise RunDirError(f"{self.run_dir} has no checkpoint to resume from")
        weights, state, _ = loaded
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if state["world_size"] == self.env.world_size:
            ckpt.set_rng_state(state["rng"])
        self.progress = Progress(state["epoch"], state["batch"], state["step"],
                                 dict(state["failures"]))
        if self.log is not None:
            self.log.resume_from(self.progress.step)
        if self.env.is_main:
            print(f"resumed {self.run_dir} at epoch {self.progress.epoch + 1}, batch "
                  f"{self.progress.batch}, step {self.progress.step}", flush=True)

    def _finish(self, final: dict[str, Any], seconds: float) -> None:
        if self.multigrid is not None:
            aggregate_sub_batch_stats(self.model)
            convert_to_batch_norm(self.model)
        if not self.env.is_main:
            return
        from ..weights.safetensors_io import save_weights
        from .plots import plot_confusion, plot_curves

        save_weights(self.model.state_dict(), self.run_dir / "model.safetensors",
                     {**self.metadata, "train_seconds": round(seconds, 1),
                      **{k: final[k] for k in ("top1", "top5", "mAP") if k in final}})
        self.log.close()
        plot_curves(self.log.records(), self.run_dir / "curves.png")
        if "confusion" in final:
            plot_confusion(final["confusion"], self.class_names, self.run_dir / "confusion.png")
        if self.progress.failures:
            print(f"{len(self.progress.failures)} videos were skipped during training: "
                  + ", ".join(sorted(Path(p).name for p in self.progress.failures)), flush=True)


@torch.no_grad()
def evaluate_clips(model: VideoClassifier, dataset, *, num_classes: int, batch_size: int,
                   num_workers: int, multi_label: bool = False,
                   device: torch.device | None = None) -> dict[str, Any]:
    """One clip per item (single view): top-1/top-5 (or mAP for multi-label)."""
    from ..data.datasets import collate_clips

    model.eval()
    aggregate_sub_batch_stats(model)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=collate_clips)
    meter = ClassificationMeter(num_classes)
    scores, targets = [], []
    skipped = 0
    for batch in loader:
        skipped += len(batch["failures"])
        if "video" not in batch:
            continue
        logits = model(batch["video"].to(device or "cpu")).float().cpu()
        if multi_label:
            scores.append(torch.sigmoid(logits))
            targets.append(batch["label"])
        else:
            meter.update(logits, batch["label"])
    if multi_label:
        return {"mAP": mean_average_precision(torch.cat(scores), torch.cat(targets)),
                "videos": sum(len(s) for s in scores), "skipped": skipped}
    result = meter.compute()
    result["skipped"] = skipped
    return result
