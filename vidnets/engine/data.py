"""Datasets of a training configuration: the ``data`` section plus the model's config."""

from __future__ import annotations

from torch.utils.data import Dataset

from ..config import ModelConfig
from ..registry import model_config
from .config import Config, DataSection


def clip_shape(data: DataSection, mcfg: ModelConfig) -> tuple[int, int]:
    """``(frames, size)`` of a training clip: the data section's, else the model's."""
    return data.frames or mcfg.frames, data.size or mcfg.size


def _transform(cfg: Config, mcfg: ModelConfig, *, train: bool):
    from ..data.transforms import ClipTransform

    data = cfg.data
    return ClipTransform.from_config(mcfg, train=train, size=clip_shape(data, mcfg)[1],
                                     scale_mode=data.scale_mode, jitter=tuple(data.jitter),
                                     rrc_area=tuple(data.rrc_area), flip=data.flip,
                                     test_scale=data.test_scale)


def _synthetic(cfg: Config, mcfg: ModelConfig, split: str, seed: int) -> Dataset:
    from ..data.synthetic import SyntheticMotionDataset

    frames, size = clip_shape(cfg.data, mcfg)
    count = cfg.data.synthetic_train if split == "train" else cfg.data.synthetic_val
    return SyntheticMotionDataset(count, frames=frames, size=size, seed=seed, split=split,
                                  mean=mcfg.mean, std=mcfg.std)


def _records(cfg: Config, *, train: bool):
    from ..data.datasets import build_records

    data = cfg.data
    annotation = data.train if train else data.val
    return build_records(data.dataset, root=data.root, annotation=annotation or None,
                         labels=data.labels, split=data.split, train=train)


def build_datasets(cfg: Config, *, seed: int = 0
                   ) -> tuple[Dataset, Dataset | None, tuple[str, ...]]:
    """``(train, val, class_names)``; ``val`` is single-view clips (``None`` without a
    validation split)."""
    mcfg = model_config(cfg.model.name)
    if cfg.data.dataset == "synthetic":
        train = _synthetic(cfg, mcfg, "train", seed)
        val = _synthetic(cfg, mcfg, "val", seed) if cfg.data.synthetic_val else None
        return train, val, tuple(train.classes)
    train = _video_dataset(cfg, mcfg, train=True, mode="train", seed=seed)
    val = None
    if cfg.data.val or cfg.data.dataset in ("hmdb51", "ucf101"):
        val = _video_dataset(cfg, mcfg, train=False, mode="test", seed=seed)
    return train, val, tuple(train.class_names)


def build_eval_dataset(cfg: Config, *, mode: str = "test", num_clips: int = 1,
                       num_crops: int = 1, seed: int = 0) -> tuple[Dataset, tuple[str, ...]]:
    """The validation split for evaluation: ``mode="test"`` with ``num_clips`` ×
    ``num_crops`` views per video, or ``mode="stream"`` (every frame of each video)."""
    mcfg = model_config(cfg.model.name)
    if cfg.data.dataset == "synthetic":
        if mode != "test" or num_clips * num_crops != 1:
            raise ValueError("the in-memory synthetic dataset has single views only; write it "
                             "with `vidnets data synth --out DIR` for multi-view or streaming "
                             "evaluation (data.dataset=csv)")
        ds = _synthetic(cfg, mcfg, "val", seed)
        return ds, tuple(ds.classes)
    ds = _video_dataset(cfg, mcfg, train=False, mode=mode, num_clips=num_clips,
                        num_crops=num_crops, seed=seed)
    return ds, tuple(ds.class_names)


def _video_dataset(cfg: Config, mcfg: ModelConfig, *, train: bool, mode: str, seed: int,
                   num_clips: int = 1, num_crops: int = 1):
    from ..data.datasets import VideoDataset

    records, class_names = _records(cfg, train=train)
    frames, _ = clip_shape(cfg.data, mcfg)
    ds = VideoDataset(records, num_frames=frames, transform=_transform(cfg, mcfg, train=train),
                      fps=cfg.data.fps, stride=cfg.data.stride, mode=mode, num_clips=num_clips,
                      num_crops=num_crops, num_classes=len(class_names),
                      multi_label=cfg.data.multi_label, seed=seed,
                      strict=cfg.data.strict_files)
    ds.class_names = class_names
    return ds
