"""Optimiser parameter groups, linear scaling, warm-up + cosine schedule, mixed precision."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

import vidnets
from vidnets.engine.config import OptimSection
from vidnets.engine.optim import (
    autocast_context,
    build_optimizer,
    build_scheduler,
    lr_factor,
    make_grad_scaler,
    param_groups,
    scaled_lr,
    set_lr_factor,
)
from vidnets.layers.norm import SubBatchNorm3d, convert_to_sub_batch_norm

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def ids(params) -> set[int]:
    return {id(p) for p in params}


def groups_by_name(groups) -> dict[str, list]:
    return {g["name"]: g["params"] for g in groups}


@pytest.mark.parametrize("name", ["x3d_xs", "movinet_a0_stream"])
def test_only_conv_and_linear_weights_decay(name):
    model = vidnets.create_model(name, num_classes=7)
    if name == "x3d_xs":
        convert_to_sub_batch_norm(model, 2)
        assert any(isinstance(m, SubBatchNorm3d) for m in model.modules())
    groups = groups_by_name(param_groups(model, 1e-4))
    weights = [m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    assert len(groups["decay"]) == len(weights) > 50
    assert ids(groups["decay"]) == ids(weights)
    norms = [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for p in m.parameters(recurse=False)]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    scales = [p for n, p in model.named_parameters() if n.endswith("scale")]
    assert norms and biases
    assert (name == "movinet_a0_stream") == bool(scales)  # ReZero scales of MoViNet
    assert ids(norms) | ids(biases) | ids(scales) <= ids(groups["no_decay"])
    assert len(groups["decay"]) + len(groups["no_decay"]) == len(list(model.parameters()))


def test_norm_layers_shared_and_frozen_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Conv1d(8, 8, 1, bias=False),
                          nn.GroupNorm(2, 8), nn.Linear(8, 3))
    tied = nn.Sequential(model, nn.Linear(8, 3))
    tied[1].weight = model[4].weight  # shared parameter: listed once
    model[2].weight.requires_grad_(False)  # frozen: left out
    groups = groups_by_name(param_groups(tied, 0.1))
    assert ids(groups["decay"]) == ids([model[0].weight, model[4].weight])
    assert ids(groups["no_decay"]) == ids([model[0].bias, model[1].weight, model[1].bias,
                                           model[3].weight, model[3].bias, model[4].bias,
                                           tied[1].bias])
    everything = param_groups(tied, 0.1, no_decay_norm_bias=False)
    assert len(everything) == 1 and everything[0]["weight_decay"] == 0.1
    assert len(everything[0]["params"]) == 9


def test_linear_scaling_rule_and_optimizers():
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4))
    section = OptimSection(name="sgd", lr=0.1, base_batch_size=128, momentum=0.9,
                           nesterov=True, weight_decay=5e-5)
    assert scaled_lr(section, 256) == pytest.approx(0.2)
    assert scaled_lr(section, 16) == pytest.approx(0.0125)
    assert scaled_lr(OptimSection(lr=0.3), 999) == 0.3  # no base batch: no scaling
    opt = build_optimizer(model, section, global_batch=32)
    assert isinstance(opt, torch.optim.SGD)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.025])
    assert [g["initial_lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.025])
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-5, 0.0]
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    adamw = build_optimizer(model, OptimSection(name="adamw", lr=3e-3, betas=(0.8, 0.99),
                                                weight_decay=0.05), global_batch=16)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["betas"] == (0.8, 0.99) and adamw.param_groups[0]["lr"] == 3e-3


def test_lr_factor_warmup_and_cosine():
    s = OptimSection(warmup_epochs=5, warmup_start_factor=0.1, min_lr_factor=0.0)
    cos = lambda e: 0.5 * (1 + math.cos(math.pi * e / 50))  # noqa: E731
    assert lr_factor(s, 0, 50) == pytest.approx(0.1)
    assert lr_factor(s, 2.5, 50) == pytest.approx((0.1 + cos(5)) / 2)  # linear ramp
    assert lr_factor(s, 5, 50) == pytest.approx(cos(5))  # joins the cosine, continuous
    assert lr_factor(s, 5 - 1e-9, 50) == pytest.approx(cos(5))
    assert lr_factor(s, 25, 50) == pytest.approx(0.5)
    assert lr_factor(s, 50, 50) == pytest.approx(0.0, abs=1e-12)
    floor = OptimSection(min_lr_factor=0.1)
    assert lr_factor(floor, 50, 50) == pytest.approx(0.1)
    assert lr_factor(floor, 25, 50) == pytest.approx(0.55)
    assert lr_factor(floor, 0, 50) == pytest.approx(1.0)


def test_lr_factor_constant_and_steps():
    assert lr_factor(OptimSection(schedule="constant"), 7.3, 10) == 1.0
    const = OptimSection(schedule="constant", warmup_epochs=2, warmup_start_factor=0.0)
    assert lr_factor(const, 0.5, 10) == pytest.approx(0.25)
    s = OptimSection(schedule="steps", steps=[3, 6], gamma=0.1)
    values = [lr_factor(s, e, 10) for e in (0, 2.99, 3, 5.5, 6, 9.9)]
    assert values == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def make_schedule(steps_per_epoch=4, epochs=5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    section = OptimSection(name="sgd", lr=0.4, base_batch_size=8, warmup_epochs=1.5,
                           warmup_start_factor=0.1, min_lr_factor=0.05)
    opt = build_optimizer(model, section, global_batch=4)
    sched = build_scheduler(opt, section, steps_per_epoch=steps_per_epoch, epochs=epochs)
    return model, section, opt, sched


def train_steps(model, opt, sched, n, lrs):
    for _ in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        model(torch.randn(2, 3)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()


def test_scheduler_steps_per_iteration():
    model, section, opt, sched = make_schedule(steps_per_epoch=4, epochs=5)
    lrs: list = []
    train_steps(model, opt, sched, 20, lrs)
    expected = [0.2 * lr_factor(section, k / 4, 5) for k in range(20)]
    assert [row[0] for row in lrs] == pytest.approx(expected)
    assert all(row[0] == row[1] for row in lrs)  # every group follows the schedule
    assert lrs[0][0] == pytest.approx(0.02)  # warm-up start: 0.1 x scaled lr 0.2


def test_scheduler_resume_gives_the_same_sequence():
    model, _, opt, sched = make_schedule()
    reference: list = []
    train_steps(model, opt, sched, 20, reference)
    assert len({row[0] for row in reference}) == 20  # the rate changes at every step

    model, _, opt, sched = make_schedule()
    resumed: list = []
    train_steps(model, opt, sched, 7, resumed)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain numbers and tensors only
    model, _, opt, sched = make_schedule()  # a fresh process: new optimiser and schedule
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    train_steps(model, opt, sched, 13, resumed)
    assert len(resumed) == 20
    assert sum(resumed, []) == pytest.approx(sum(reference, []), rel=1e-12)


def test_set_lr_factor_for_multigrid():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, OptimSection(lr=0.5), global_batch=1)
    assert set_lr_factor(opt, 0.25) == pytest.approx(0.125)
    assert set_lr_factor(opt, 1.0) == pytest.approx(0.5)  # relative to the peak, not compound
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.5])


def test_autocast_and_grad_scaler_on_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast_context("bf16", torch.device("cpu")):
        assert (a @ b).dtype == torch.bfloat16
    with autocast_context("none", "cpu"):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(ValueError, match="fp16.*bf16"):
        autocast_context("fp16", "cpu")
    with pytest.raises(ValueError, match="fp8"):
        autocast_context("fp8", "cpu")
    for amp in ("none", "bf16", "fp16"):
        assert not make_grad_scaler(amp, "cpu").is_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_and_grad_scaler_on_cuda():
    a = torch.randn(4, 4, device="cuda")
    for amp, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        with autocast_context(amp, "cuda"):
            assert (a @ a).dtype == dtype
    assert make_grad_scaler("fp16", "cuda").is_enabled()
    assert not make_grad_scaler("bf16", "cuda").is_enabled()
