"""Sub-batch BatchNorm (Multigrid training) against a computation by hand."""

import pytest
import torch
from torch import nn

import vidnets
from tests.conftest import randomize
from vidnets.layers import (
    SubBatchNorm3d,
    aggregate_sub_batch_stats,
    convert_to_batch_norm,
    convert_to_sub_batch_norm,
    set_num_splits,
)

C, SPLITS, MOMENTUM, EPS = 3, 4, 0.3, 1e-3
PLAIN_KEYS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def make_layer(seed: int = 0) -> SubBatchNorm3d:
    g = torch.Generator().manual_seed(seed)
    layer = SubBatchNorm3d(C, SPLITS, eps=EPS, momentum=MOMENTUM)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(C, generator=g) + 0.5)
        layer.bias.copy_(torch.randn(C, generator=g))
        layer.split_running_mean.copy_(torch.randn(SPLITS, C, generator=g))
        layer.split_running_var.copy_(torch.rand(SPLITS, C, generator=g) + 0.5)
    return layer


def by_hand(x, weight, bias, split_mean, split_var):
    """Sample i in split i % SPLITS; each split normalised by its own statistics."""
    y = torch.empty_like(x)
    split_mean, split_var = split_mean.clone(), split_var.clone()
    dims = (0, 2, 3, 4)
    for k in range(SPLITS):
        group = x[k::SPLITS]
        if len(group) == 0:
            continue
        mean = group.mean(dims)
        var = group.var(dims, correction=0)
        shape = (1, C, 1, 1, 1)
        normed = (group - mean.view(shape)) / (var.view(shape) + EPS).sqrt()
        y[k::SPLITS] = normed * weight.view(shape) + bias.view(shape)
        unbiased = group.var(dims, correction=1).detach()
        split_mean[k] = (1 - MOMENTUM) * split_mean[k] + MOMENTUM * mean.detach()
        split_var[k] = (1 - MOMENTUM) * split_var[k] + MOMENTUM * unbiased
    return y, split_mean, split_var


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 8])
def test_training_matches_by_hand(batch):
    layer = make_layer().train()
    weight = layer.weight.detach().clone().requires_grad_()
    bias = layer.bias.detach().clone().requires_grad_()
    split_mean, split_var = layer.split_running_mean.clone(), layer.split_running_var.clone()
    torch.manual_seed(batch)
    for step in range(2):  # running statistics accumulate over steps
        x = (torch.randn(batch, C, 2, 3, 4) * 2 + 1).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y = layer(x)
        y_ref, split_mean, split_var = by_hand(x_ref, weight, bias, split_mean, split_var)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer.split_running_mean, split_mean)
        torch.testing.assert_close(layer.split_running_var, split_var)
        assert layer.num_batches_tracked.item() == step + 1

        g = torch.randn_like(y)
        layer.zero_grad()
        weight.grad = bias.grad = None
        (y * g).sum().backward()
        (y_ref * g).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(layer.weight.grad, weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(layer.bias.grad, bias.grad, atol=1e-5, rtol=1e-4)

    # splits beyond a batch smaller than SPLITS never saw data: unchanged
    untouched = slice(min(batch, SPLITS), SPLITS)
    torch.testing.assert_close(layer.split_running_mean[untouched],
                               make_layer().split_running_mean[untouched])

    layer.aggregate_stats()
    mean = split_mean.mean(0)
    var = split_var.mean(0) + ((split_mean - mean) ** 2).mean(0)
    torch.testing.assert_close(layer.running_mean, mean)
    torch.testing.assert_close(layer.running_var, var)


def test_inference_is_plain_batch_norm_with_aggregated_stats():
    layer = make_layer().train()
    layer(torch.randn(8, C, 2, 3, 3))
    assert aggregate_sub_batch_stats(layer) == 1
    layer.eval()
    x = torch.randn(3, C, 2, 3, 3)
    expected = nn.functional.batch_norm(x, layer.running_mean, layer.running_var, layer.weight,
                                        layer.bias, False, 0.0, EPS)
    torch.testing.assert_close(layer(x), expected)


def test_state_dict_from_and_to_plain_batch_norm():
    plain = randomize(nn.BatchNorm3d(C, eps=EPS, momentum=MOMENTUM))
    x = torch.randn(2, C, 2, 3, 3)

    sub = SubBatchNorm3d(C, SPLITS, eps=EPS, momentum=MOMENTUM)
    sub.load_state_dict(plain.state_dict())  # strict: the split statistics come from it
    assert set(sub.state_dict()) == PLAIN_KEYS | {"split_running_mean", "split_running_var"}
    assert sub.split_running_mean.shape == (SPLITS, C)
    torch.testing.assert_close(sub.split_running_mean, plain.running_mean.expand(SPLITS, C))
    torch.testing.assert_close(sub.split_running_var, plain.running_var.expand(SPLITS, C))
    torch.testing.assert_close(sub.eval()(x), plain(x))

    sub.train()(torch.randn(4, C, 2, 3, 3))
    back = sub.to_batch_norm()
    assert type(back) is nn.BatchNorm3d and set(back.state_dict()) == PLAIN_KEYS
    assert back.weight is sub.weight and back.training  # same parameters, same mode
    fresh = nn.BatchNorm3d(C, eps=EPS, momentum=MOMENTUM)
    fresh.load_state_dict(back.state_dict())
    torch.testing.assert_close(fresh.eval()(x), sub.eval()(x))

    resumed = SubBatchNorm3d(C, SPLITS, eps=EPS, momentum=MOMENTUM)
    resumed.load_state_dict(sub.state_dict())  # a sub-batch checkpoint keeps its splits
    for k, v in sub.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


def test_changing_splits_keeps_the_aggregate():
    layer = make_layer().train()
    layer(torch.randn(8, C, 2, 3, 3))
    layer.aggregate_stats()
    mean, var = layer.running_mean.clone(), layer.running_var.clone()
    layer.set_num_splits(2)
    assert layer.num_splits == 2 and layer.split_running_mean.shape == (2, C)
    torch.testing.assert_close(layer.split_running_mean, mean.expand(2, C))
    layer.aggregate_stats()
    torch.testing.assert_close(layer.running_mean, mean)
    torch.testing.assert_close(layer.running_var, var)
    layer(torch.randn(3, C, 2, 3, 3))  # uneven: splits of 2 and 1 samples
    with pytest.raises(ValueError, match="positive integer"):
        layer.set_num_splits(0)


def test_convert_a_model_and_back():
    model = randomize(vidnets.create_model("movinet_a0_base"))
    names = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm3d)}
    params = {id(p) for p in model.parameters()}
    x = torch.rand(3, 3, 5, 40, 48)
    with torch.no_grad():
        before = model(x)

    convert_to_sub_batch_norm(model, 2)
    subs = {n for n, m in model.named_modules() if isinstance(m, SubBatchNorm3d)}
    assert subs == names and {id(p) for p in model.parameters()} == params
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # eval: the same statistics

    model.train()
    model(x).sum().backward()  # 3 samples in 2 splits
    assert set_num_splits(model, 3) == len(names)
    assert all(m.num_splits == 3 for m in model.modules() if isinstance(m, SubBatchNorm3d))
    convert_to_sub_batch_norm(model, 1)  # already converted: only the split count changes
    assert all(m.num_splits == 1 for m in model.modules() if isinstance(m, SubBatchNorm3d))
    assert aggregate_sub_batch_stats(model) == len(names)

    convert_to_batch_norm(model.eval())
    assert not any(isinstance(m, SubBatchNorm3d) for m in model.modules())
    plain = vidnets.create_model("movinet_a0_base")
    plain.load_state_dict(model.state_dict())  # strict: plain BatchNorm keys only
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x))


def test_convert_refuses_other_batch_norms():
    with torch.device("meta"):
        stream = vidnets.create_model("movinet_a0_stream")  # 2plus1d: BatchNorm2d on frames
    with pytest.raises(ValueError, match="3d_2plus1d"):
        convert_to_sub_batch_norm(stream, 2)
    with pytest.raises(ValueError, match="convert_to_sub_batch_norm"):
        set_num_splits(stream, 2)
