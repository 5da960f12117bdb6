import pytest
import torch
import torch.nn.functional as F

from vidnets.layers import HardSigmoid, HardSwish, Swish, make_activation, same_padding


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (172, 3, 2, (0, 1)),  # even size: TF puts the extra pad after
        (43, 3, 2, (1, 1)),
        (172, 5, 2, (1, 2)),
        (22, 5, 2, (1, 2)),
        (11, 5, 2, (2, 2)),
        (6, 3, 1, (1, 1)),
        (8, 1, 2, (0, 0)),
        (7, 5, 1, (2, 2)),
    ],
)
def test_same_padding_matches_tf_rule(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    out = (size + sum(expected) - kernel) // stride + 1
    assert out == -(-size // stride)  # TF "same": ceil(size / stride)


def test_activations_match_official_formulas():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(Swish()(x), x * torch.sigmoid(x))
    torch.testing.assert_close(HardSwish()(x), x * F.relu6(x + 3) / 6)
    # the official hard sigmoid uses the rounded constant 0.16667, not 1/6
    assert torch.equal(HardSigmoid()(x), F.relu6(x + 3) * 0.16667)
    assert not torch.equal(HardSigmoid()(x), F.hardsigmoid(x))


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="hard_swish"):
        make_activation("gelu2")
