"""Training / evaluation configuration: typed dataclasses loaded from YAML.

A recipe is a YAML file whose sections mirror :class:`Config`. Every key is checked
against the dataclasses (an unknown key is an error that lists the valid ones), every
value against its type and, for enum-like strings, its allowed values. ``key=value``
overrides (``train.optim.lr=0.05``) apply on top, and ``_base_: other.yaml`` lets a
recipe extend another one.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

DATASETS = ("synthetic", "csv", "folder", "kinetics", "ssv2", "ssv1", "charades", "hmdb51",
            "ucf101")
BASE_KEY = "_base_"
_VIEWS_FORMAT = "'TxS', T >= 1 temporal clips times S = 1 or 3 spatial crops, e.g. '10x3'"
# Annotation paths of the data section: relative ones are taken from the YAML file's folder.
PATH_KEYS = ("root", "train", "val", "labels")


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _at_least(low: float) -> dict[str, Any]:
    return {"min": low}


@dataclass
class ModelSection:
    """The network: a registered name, its class count and optional pretrained weights."""

    name: str = "movinet_a0_stream"
    num_classes: int | None = field(default=None, metadata=_at_least(1))  # None: dataset's
    weights: str | None = None  # pretrained; the head is replaced when class counts differ
    options: dict[str, Any] = field(default_factory=dict)  # extra builder kwargs


@dataclass
class DataSection:
    """Dataset, clip sampling and augmentation."""

    dataset: str = field(default="synthetic", metadata=_choices(*DATASETS))
    root: str = ""
    train: str = ""
    val: str = ""
    labels: str | None = None  # label-set name or class-list file
    split: int = field(default=1, metadata=_at_least(1))
    frames: int | None = field(default=None, metadata=_at_least(1))  # None: model config's
    fps: float | None = field(default=None, metadata=_at_least(0.0))
    stride: int = field(default=1, metadata=_at_least(1))
    size: int | None = field(default=None, metadata=_at_least(1))  # None: model config's
    scale_mode: str = field(default="short_side",
                            metadata=_choices("short_side", "random_resized_crop"))
    jitter: tuple[float, float] = (1.0, 1.25)  # short side / crop size, min and max
    rrc_area: tuple[float, float] = (0.08, 1.0)
    test_scale: float = field(default=1.0, metadata=_at_least(1.0))
    flip: bool = True
    multi_label: bool = False
    num_workers: int = field(default=2, metadata=_at_least(0))
    synthetic_train: int = field(default=1000, metadata=_at_least(1))
    synthetic_val: int = field(default=200, metadata=_at_least(1))
    strict_files: bool = False


@dataclass
class OptimSection:
    """Optimiser and learning-rate schedule (``lr`` is for ``base_batch_size`` clips)."""

    name: str = field(default="sgd", metadata=_choices("sgd", "adamw"))
    lr: float = field(default=0.1, metadata=_at_least(0.0))
    base_batch_size: int | None = field(default=None, metadata=_at_least(1))
    momentum: float = field(default=0.9, metadata=_at_least(0.0))
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = field(default=5e-5, metadata=_at_least(0.0))
    no_decay_norm_bias: bool = True
    warmup_epochs: float = field(default=0.0, metadata=_at_least(0.0))
    warmup_start_factor: float = field(default=0.01, metadata=_at_least(0.0))
    min_lr_factor: float = field(default=0.0, metadata=_at_least(0.0))
    schedule: str = field(default="cosine", metadata=_choices("cosine", "constant", "steps"))
    steps: list[float] = field(default_factory=list)  # epochs where lr *= gamma ("steps")
    gamma: float = field(default=0.1, metadata=_at_least(0.0))


@dataclass
class StreamingSection:
    """Streaming training of causal models: each clip split into ``n_clips`` sub-clips."""

    n_clips: int = field(default=1, metadata=_at_least(1))


@dataclass
class MultigridSection:
    """Multigrid training (Wu et al., CVPR 2020), PySlowFast's defaults."""

    enabled: bool = False
    long_cycle: bool = True
    short_cycle: bool = True
    long_cycle_factors: list[tuple[float, float]] = field(default_factory=lambda: [
        (0.25, 0.5 ** 0.5), (0.5, 0.5 ** 0.5), (0.5, 1.0), (1.0, 1.0)])  # (time, space)
    short_cycle_factors: tuple[float, float] = (0.5, 0.5 ** 0.5)  # space
    bn_base_size: int = field(default=8, metadata=_at_least(1))
    epoch_factor: float = field(default=1.5, metadata=_at_least(0.0))


@dataclass
class TrainSection:
    """The training loop."""

    epochs: int = field(default=10, metadata=_at_least(1))
    batch_size: int = field(default=8, metadata=_at_least(1))  # global, over all processes
    label_smoothing: float = field(default=0.0, metadata=_at_least(0.0))
    grad_clip: float | None = field(default=None, metadata=_at_least(0.0))
    amp: str = field(default="none", metadata=_choices("none", "bf16", "fp16"))
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = field(default=0, metadata=_at_least(0))  # steps; 0: epoch end
    eval_every: int = field(default=1, metadata=_at_least(0))  # epochs
    log_every: int = field(default=10, metadata=_at_least(1))  # steps
    tensorboard: bool = False
    threads: int | None = field(default=None, metadata=_at_least(1))
    sync_bn: bool = False  # BN statistics over the global batch of all DDP processes
    # BatchNorm momentum while training (PyTorch convention); None keeps the model's. The
    # MoViNets' TF value (0.01) suits hundreds of thousands of steps; short runs need ~0.1
    # or their eval-mode statistics lag far behind the weights.
    bn_momentum: float | None = field(default=None, metadata=_at_least(0.0))
    streaming: StreamingSection = field(default_factory=StreamingSection)
    multigrid: MultigridSection = field(default_factory=MultigridSection)
    optim: OptimSection = field(default_factory=OptimSection)


@dataclass
class EvalSection:
    """Evaluation: ``views`` is ``"TxS"``, T temporal clips times S spatial crops."""

    views: str = "1x1"
    streaming: bool = False
    batch_size: int = field(default=8, metadata=_at_least(1))
    localisation: bool = False


@dataclass
class RunSection:
    """Where a run writes: ``{out_dir}/{name}``; name ``None``: ``{model}-{timestamp}``."""

    out_dir: str = "runs"
    name: str | None = None


@dataclass
class Config:
    """A whole recipe."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    run: RunSection = field(default_factory=RunSection)

    def to_yaml(self) -> str:
        """The resolved config as YAML text (loads back to an equal :class:`Config`)."""
        return yaml.safe_dump(config_to_dict(self), sort_keys=False)


def parse_views(views: str) -> tuple[int, int]:
    """``"10x3"`` -> ``(10, 3)``: temporal clips, spatial crops (1 or 3)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(views))
    if not match or int(match[1]) < 1 or int(match[2]) not in (1, 3):
        raise ConfigError(f"views {views!r}: expected {_VIEWS_FORMAT}")
    return int(match[1]), int(match[2])


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a recipe (``None``: the defaults) and apply ``key=value`` overrides.

    Relative annotation paths (``data.root/train/val/labels``) are taken from the YAML
    file's folder; those given as overrides from the current directory.
    """
    source = "defaults"
    raw: dict[str, Any] = {}
    if path is not None:
        source = str(path)
        raw = _read_recipe(Path(path), ())
    if overrides:
        source += " + overrides"
    for text in overrides:
        _apply_override(raw, text)
    return _build_section(Config, raw, (), source)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of ``cfg`` (tuples as lists): YAML- and JSON-friendly."""
    return _plain(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path


# --- YAML ----------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``5e-5`` as a float (YAML 1.1 wants ``5.0e-5``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None


def _read_recipe(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """One YAML file with its ``_base_`` files merged under it, paths resolved."""
    path = path.expanduser().resolve()
    if path in chain:
        raise ConfigError(f"{path}: _base_ cycle: {' -> '.join(map(str, (*chain, path)))}")
    if not path.is_file():
        where = f" (the _base_ of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file not found: {path}{where}")
    raw = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    _resolve_paths(raw, path.parent)
    bases = raw.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of them, "
                          f"got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        _deep_merge(merged, _read_recipe(path.parent / base, (*chain, path)))
    return _deep_merge(merged, raw)


def _deep_merge(into: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
    return into


def _looks_like_path(value: str) -> bool:
    """A class-list file rather than a label-set name such as ``kinetics400``."""
    return "/" in value or "\\" in value or value.startswith("~") or bool(Path(value).suffix)


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for key in PATH_KEYS:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            continue
        if key == "labels" and not _looks_like_path(value):
            continue
        data[key] = str((base_dir / Path(value).expanduser()).resolve())


# --- overrides -----------------------------------------------------------------------------

def _apply_override(raw: dict[str, Any], text: str) -> None:
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.optim.lr=0.05")
    keys = key.split(".")
    target_type = _field_type(keys, text)
    value = _parse_yaml(value_text, f"override {text!r}")
    if value is not None and not isinstance(value, str) and str in _member_types(target_type):
        value = value_text.strip()  # run.name=001 stays the string "001"
    nested: Any = value
    for name in reversed(keys):
        nested = {name: nested}
    _resolve_paths(nested, Path.cwd())
    _deep_merge(raw, nested)


def _field_type(keys: list[str], text: str) -> Any:
    """Type of the field named by dotted ``keys``; unknown keys raise ConfigError."""
    tp: Any = Config
    for depth, name in enumerate(keys):
        if get_origin(tp) is dict or tp is Any:
            return Any
        if not _is_section(tp):
            raise ConfigError(f"override {text!r}: {'.'.join(keys[:depth])} is a value, "
                              "not a section")
        hints = get_type_hints(tp)
        if name not in hints:
            raise _unknown_key(tp, name, tuple(keys[:depth]), f"override {text!r}")
        tp = hints[name]
    return tp


def _member_types(tp: Any) -> tuple[Any, ...]:
    return get_args(tp) if _is_union(tp) else (tp,)


# --- validation ----------------------------------------------------------------------------

def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<top level>"


def _unknown_key(section: type, key: str, path: tuple[str, ...], source: str) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(section)]
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    hint = f" (did you mean {_dotted((*path, close[0]))!r}?)" if close else ""
    return ConfigError(f"{source}: unknown key {_dotted((*path, str(key)))!r}{hint}; "
                       f"valid keys in {_dotted(path)}: {', '.join(valid)}")


def _build_section(section: type, raw: Any, path: tuple[str, ...], source: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {_dotted(path)} must be a mapping of "
                          f"{', '.join(f.name for f in dataclasses.fields(section))}; "
                          f"got {raw!r}")
    hints = get_type_hints(section)
    fields = {f.name: f for f in dataclasses.fields(section)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown_key(section, key, path, source)
        tp = hints[key]
        key_path = (*path, key)
        if _is_section(tp):
            values[key] = _build_section(tp, value, key_path, source)
        else:
            values[key] = _convert(value, tp, key_path, source)
            _check_value(values[key], fields[key].metadata, key_path, source)
    built = section(**values)
    _check_section(built, path, source)
    return built


def _convert(value: Any, tp: Any, path: tuple[str, ...], source: str) -> Any:
    """``value`` as type ``tp``; ConfigError naming ``path`` when it is not one."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        for member in (a for a in args if a is not type(None)):
            try:
                return _convert(value, member, path, source)
            except ConfigError:
                continue
    elif tp in (bool, int, str) and type(value) is tp:  # type(): no bool for an int
        return value
    elif tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif origin is tuple and isinstance(value, list | tuple):
        if args[-1] is Ellipsis:
            return tuple(_convert(v, args[0], (*path, str(i)), source)
                         for i, v in enumerate(value))
        if len(value) == len(args):
            return tuple(_convert(v, a, (*path, str(i)), source)
                         for i, (v, a) in enumerate(zip(value, args, strict=True)))
    elif origin is list and isinstance(value, list | tuple):
        return [_convert(v, args[0], (*path, str(i)), source) for i, v in enumerate(value)]
    elif origin is dict and isinstance(value, dict):
        return {_convert(k, args[0], path, source): _convert(v, args[1], (*path, str(k)), source)
                for k, v in value.items()}
    raise ConfigError(f"{source}: {_dotted(path)} = {value!r}: expected {_type_name(tp)}")


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        if args[-1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} values [{', '.join(_type_name(a) for a in args)}]"
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return "a mapping"
    return {int: "int", float: "float (or int)", bool: "true/false", str: "str"}.get(
        tp, str(tp))


def _check_value(value: Any, meta: Mapping[str, Any], path: tuple[str, ...],
                 source: str) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        close = difflib.get_close_matches(value, meta["choices"], n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: {_dotted(path)} = {value!r}: expected one of "
                          f"{', '.join(meta['choices'])}{hint}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{source}: {_dotted(path)} = {value!r}: expected >= {meta['min']}")


def _check_section(section: Any, path: tuple[str, ...], source: str) -> None:
    """Checks that span a field's structure (ranges, order, formats)."""
    def fail(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{source}: {_dotted((*path, key))} = {getattr(section, key)!r}: "
                           f"expected {expected}")

    if isinstance(section, DataSection):
        if not 0 < section.jitter[0] <= section.jitter[1]:
            raise fail("jitter", "[min, max] short-side / crop-size ratios with 0 < min <= max")
        if not 0 < section.rrc_area[0] <= section.rrc_area[1] <= 1:
            raise fail("rrc_area", "[min, max] area fractions with 0 < min <= max <= 1")
    elif isinstance(section, OptimSection):
        if list(section.steps) != sorted(section.steps):
            raise fail("steps", "epochs in increasing order")
        if any(b < 0 or b >= 1 for b in section.betas):
            raise fail("betas", "two values in [0, 1)")
    elif isinstance(section, MultigridSection):
        if not section.long_cycle_factors:
            raise fail("long_cycle_factors", "at least one (time, space) factor pair")
    elif isinstance(section, ModelSection):
        from ..registry import list_models

        if section.name not in list_models():
            close = difflib.get_close_matches(section.name, list_models(), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise fail("name", f"a registered model{hint}; vidnets.list_models() lists them")
    elif isinstance(section, TrainSection) and section.label_smoothing >= 1:
        raise fail("label_smoothing", "a value in [0, 1)")
    elif isinstance(section, EvalSection):
        try:
            parse_views(section.views)
        except ConfigError:
            raise fail("views", _VIEWS_FORMAT) from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
