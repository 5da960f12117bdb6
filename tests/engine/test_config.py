"""Recipes: YAML -> typed dataclasses, validation errors, overrides, paths, _base_."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidnets.engine.config import (
    Config,
    ConfigError,
    OptimSection,
    config_to_dict,
    load_config,
    parse_views,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.train.optim == OptimSection()
    assert cfg.train.multigrid.long_cycle_factors[0] == (0.25, 0.5 ** 0.5)


def test_values_are_typed(tmp_path):
    cfg = load_config(write(tmp_path / "r.yaml", """
model: {name: x3d_s, num_classes: 10, options: {dropout: 0.3}}
data: {dataset: csv, jitter: [1, 1.5], frames: 8}
train:
  epochs: 3
  grad_clip: 2
  optim: {lr: 1, weight_decay: 5e-5, steps: [2, 4], schedule: steps}
  multigrid: {long_cycle_factors: [[0.5, 0.5], [1, 1]]}
"""))
    assert cfg.model.options == {"dropout": 0.3}
    assert cfg.data.jitter == (1.0, 1.5) and all(type(v) is float for v in cfg.data.jitter)
    assert type(cfg.train.optim.lr) is float and cfg.train.optim.lr == 1.0
    assert cfg.train.optim.weight_decay == 5e-5  # YAML 1.1 would read "5e-5" as a string
    assert cfg.train.optim.steps == [2.0, 4.0]
    assert cfg.train.grad_clip == 2.0
    assert cfg.train.multigrid.long_cycle_factors == [(0.5, 0.5), (1.0, 1.0)]
    assert cfg.train.epochs == 3 and cfg.data.frames == 8


def test_unknown_top_level_key_lists_valid_keys(tmp_path):
    path = write(tmp_path / "r.yaml", "trian: {epochs: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "'trian'" in msg and "did you mean 'train'" in msg
    for key in ("model", "data", "train", "eval", "run"):
        assert key in msg


def test_unknown_nested_key_names_its_section_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "r.yaml", "train:\n  optim:\n    lrr: 0.1\n"))
    msg = str(err.value)
    assert "'train.optim.lrr'" in msg and "did you mean 'train.optim.lr'" in msg
    assert "valid keys in train.optim:" in msg
    for key in ("weight_decay", "warmup_epochs", "base_batch_size", "gamma"):
        assert key in msg


@pytest.mark.parametrize(("text", "fragments"), [
    ("train: {epochs: ten}", ["train.epochs", "'ten'", "int"]),
    ("train: {epochs: true}", ["train.epochs", "True", "int"]),
    ("train: {epochs: 2.5}", ["train.epochs", "2.5", "int"]),
    ("train: {optim: {lr: fast}}", ["train.optim.lr", "'fast'", "float"]),
    ("data: {flip: 1}", ["data.flip", "1", "true/false"]),
    ("data: {jitter: [1.0]}", ["data.jitter", "[1.0]", "list of 2"]),
    ("data: {jitter: 1.2}", ["data.jitter", "1.2", "list of 2"]),
    ("model: {options: [1, 2]}", ["model.options", "mapping"]),
    ("train: 5", ["train", "must be a mapping", "epochs"]),
    ("train: {epochs: 0}", ["train.epochs", "0", ">= 1"]),
    ("data: {jitter: [1.3, 1.1]}", ["data.jitter", "min <= max"]),
    ("train: {optim: {steps: [30, 10], schedule: steps}}", ["train.optim.steps", "increasing"]),
])
def test_bad_values_name_key_and_value(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "r.yaml", text + "\n"))
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize(("text", "key", "value", "choices"), [
    ("data: {dataset: kinetcs}", "data.dataset", "'kinetcs'", "charades"),
    ("train: {amp: fp8}", "train.amp", "'fp8'", "bf16"),
    ("train: {optim: {name: rmsprop}}", "train.optim.name", "'rmsprop'", "adamw"),
    ("train: {optim: {schedule: linear}}", "train.optim.schedule", "'linear'", "cosine"),
    ("data: {scale_mode: crop}", "data.scale_mode", "'crop'", "random_resized_crop"),
])
def test_bad_enum_values_list_the_allowed_ones(tmp_path, text, key, value, choices):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path / "r.yaml", text + "\n"))
    msg = str(err.value)
    assert key in msg and value in msg and "expected one of" in msg and choices in msg


def test_unknown_model_and_bad_views(tmp_path):
    with pytest.raises(ConfigError, match=r"model.name = 'x3d_mm'.*did you mean x3d_m"):
        load_config(None, ["model.name=x3d_mm"])
    with pytest.raises(ConfigError, match=r"eval.views = '10x2'.*'TxS'"):
        load_config(None, ["eval.views=10x2"])
    assert parse_views("10x3") == (10, 3) and parse_views("1X1") == (1, 1)


def test_overrides(tmp_path):
    path = write(tmp_path / "r.yaml", """
model: {weights: /w.safetensors}
train: {epochs: 7, optim: {lr: 0.5, momentum: 0.8}}
""")
    cfg = load_config(path, [
        "train.optim.lr=0.05", "data.jitter=[1.0,1.3]", "model.weights=null",
        "train.grad_clip=1", "run.name=001", "model.options.dropout=0.2",
        "train.multigrid.enabled=true", "train.optim.steps=[10, 20]",
    ])
    assert cfg.train.optim.lr == 0.05 and cfg.train.optim.momentum == 0.8
    assert cfg.train.epochs == 7
    assert cfg.data.jitter == (1.0, 1.3)
    assert cfg.model.weights is None
    assert cfg.train.grad_clip == 1.0
    assert cfg.run.name == "001"  # a str field keeps the text
    assert cfg.model.options == {"dropout": 0.2}
    assert cfg.train.multigrid.enabled is True
    assert cfg.train.optim.steps == [10.0, 20.0]
    # a whole section as a mapping merges into the file's values
    merged = load_config(path, ["train.optim={lr: 0.2, name: adamw}"])
    assert (merged.train.optim.lr, merged.train.optim.name) == (0.2, "adamw")
    assert merged.train.optim.momentum == 0.8


@pytest.mark.parametrize(("override", "fragments"), [
    ("train.optim.lrr=0.1", ["'train.optim.lrr'", "did you mean 'train.optim.lr'", "momentum"]),
    ("trian.epochs=3", ["'trian'", "did you mean 'train'"]),
    ("train.epochs.x=1", ["train.epochs is a value"]),
    ("train.epochs", ["expected key=value"]),
    ("train.epochs=ten", ["train.epochs", "'ten'", "overrides"]),
])
def test_bad_overrides(override, fragments):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    for fragment in fragments:
        assert fragment in str(err.value)


def test_save_and_load_round_trip(tmp_path):
    cfg = load_config(None, ["model.name=x3d_s", "model.options={dropout: 0.1}",
                             "data.jitter=[1.1, 1.4]", "train.optim.weight_decay=3e-5",
                             "train.multigrid.enabled=true", "data.train=/abs/train.csv"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(path)
    assert again == cfg
    assert load_config(None).to_yaml() == Config().to_yaml()
    assert json.loads(json.dumps(config_to_dict(cfg))) == config_to_dict(cfg)
    assert config_to_dict(cfg)["data"]["jitter"] == [1.1, 1.4]


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path, monkeypatch):
    recipe = write(tmp_path / "recipes" / "r.yaml", """
data:
  root: videos
  train: ann/train.csv
  val: /abs/val.csv
  labels: kinetics400
""")
    cfg = load_config(recipe)
    assert cfg.data.root == str(tmp_path / "recipes" / "videos")
    assert cfg.data.train == str(tmp_path / "recipes" / "ann" / "train.csv")
    assert cfg.data.val == "/abs/val.csv"
    assert cfg.data.labels == "kinetics400"  # a label-set name, not a path
    cfg = load_config(write(tmp_path / "recipes" / "r2.yaml", "data: {labels: classes.txt}\n"))
    assert cfg.data.labels == str(tmp_path / "recipes" / "classes.txt")
    monkeypatch.chdir(tmp_path)  # command-line paths are relative to the current folder
    cfg = load_config(recipe, ["data.val=other/val.csv"])
    assert cfg.data.val == str(tmp_path / "other" / "val.csv")
    assert cfg.data.train == str(tmp_path / "recipes" / "ann" / "train.csv")
    cfg = load_config(recipe, ["data={train: t.csv, labels: names.txt}"])
    assert cfg.data.train == str(tmp_path / "t.csv")
    assert cfg.data.labels == str(tmp_path / "names.txt")
    assert cfg.data.root == str(tmp_path / "recipes" / "videos")


def test_base_recipes_merge(tmp_path):
    write(tmp_path / "common" / "base.yaml", """
model: {name: x3d_s, options: {dropout: 0.5}}
data: {train: train.csv}
train: {epochs: 50, optim: {lr: 0.5, momentum: 0.8}}
""")
    child = write(tmp_path / "child.yaml", """
_base_: common/base.yaml
model: {options: {drop_path: 0.1}}
train: {optim: {lr: 0.1}}
""")
    cfg = load_config(child)
    assert cfg.model.name == "x3d_s"
    assert cfg.model.options == {"dropout": 0.5, "drop_path": 0.1}
    assert cfg.train.epochs == 50 and cfg.train.optim.momentum == 0.8
    assert cfg.train.optim.lr == 0.1
    assert cfg.data.train == str(tmp_path / "common" / "train.csv")  # relative to base.yaml


def test_base_errors(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(write(tmp_path / "c.yaml", "_base_: missing.yaml\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path / "bad.yaml", "train: {epochs: [1\n"))


def test_every_recipe_loads():
    recipes = sorted(CONFIGS.glob("*.yaml"))
    names = {p.stem for p in recipes}
    assert {"synthetic_demo", "kinetics600_movinet_a0_base", "kinetics600_movinet_a0_stream",
            "kinetics400_x3d_m", "kinetics400_x3d_m_multigrid", "ssv2_vov3d_l",
            "hmdb51_finetune", "ucf101_finetune"} <= names
    loaded = {}
    for path in recipes:
        assert path.read_text().startswith("#"), f"{path.name}: no comment header"
        loaded[path.stem] = load_config(path)
    assert loaded["kinetics600_movinet_a0_stream"].train.streaming.n_clips > 1
    assert loaded["kinetics600_movinet_a0_stream"].train.epochs == 240  # from its _base_
    assert loaded["kinetics400_x3d_m_multigrid"].train.multigrid.enabled
    assert loaded["ssv2_vov3d_l"].data.flip is False
    for name, classes in (("hmdb51_finetune", 51), ("ucf101_finetune", 101)):
        assert loaded[name].model.num_classes == classes and loaded[name].model.weights
