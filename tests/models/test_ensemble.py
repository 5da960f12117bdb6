"""Temporal ensembles: probability averaging, per-member resampling, streaming state."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vidnets
from tests.conftest import randomize
from vidnets.flops import count_macs
from vidnets.layers import GlobalAvgPool
from vidnets.models import Ensemble, MemberInput, VideoClassifier, create_ensemble
from vidnets.weights import save_weights

H, W = 40, 56


class Probe(VideoClassifier):
    """Causal toy member: logits from the running mean colour; records every input."""

    causal = True
    min_size = 1

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.pool = GlobalAvgPool("probe")
        self.fc = nn.Linear(3, num_classes)
        self.seen: list[torch.Tensor] = []

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(3, num_classes)

    def init_state(self, batch_size, height, width, *, dtype=None, device=None):
        return self.pool.init_state(batch_size, 3, dtype=dtype or torch.float32, device=device)

    def _run(self, x, state):
        self.seen.append(x.clone())
        pooled, new_state = self.pool(x, state)
        return self.fc(pooled.flatten(1)), new_state


def per_frame_resize(x, size):
    """Reference resize, one frame at a time."""
    frames = [F.interpolate(x[:, :, t], size=size, mode="bilinear", align_corners=False)
              for t in range(x.shape[2])]
    return torch.stack(frames, dim=2)


def stream(model, clip, chunks):
    state = model.init_state(clip.shape[0], *clip.shape[3:])
    start = 0
    for size in chunks:
        logits, state = model.stream_step(clip[:, :, start:start + size], state)
        start += size
    return logits, state


def a0_pair(**inputs):
    torch.manual_seed(0)
    members = {name: randomize(vidnets.create_model("movinet_a0_stream"), seed=i)
               for i, name in enumerate(inputs)}
    return Ensemble(members, inputs, source_fps=10, source_size=64).eval()


def test_probabilities_are_averaged():
    model = a0_pair(fast=MemberInput(10, 64), slow=MemberInput(5, 56))
    torch.manual_seed(1)
    clip = torch.rand(2, 3, 6, H, W)
    with torch.no_grad():
        out = model(clip)
        fast = model.members["fast"](clip).softmax(1)
        # 5 of 10 fps: source frames 0, 2, 4; 56/64 of 40 x 56 is 35 x 49
        slow = model.members["slow"](per_frame_resize(clip[:, :, ::2], (35, 49))).softmax(1)
    expected = ((fast + slow) / 2).log()
    assert out.shape == (2, 600)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.softmax(1).sum(1), torch.ones(2))
    assert torch.equal(out.argmax(1), (fast + slow).argmax(1))

    with torch.no_grad():
        for chunks in ([1] * 6, [3, 3], [2, 3, 1]):
            logits, _ = stream(model, clip, chunks)
            assert (logits - out).abs().max().item() < 1e-4, chunks


def test_each_member_gets_its_frames():
    probes = {"fast": Probe(), "slow": Probe()}
    model = Ensemble(probes, {"fast": MemberInput(12, 64), "slow": MemberInput(8, 48)},
                     source_fps=12, source_size=64)
    clip = torch.rand(1, 3, 10, H, W)
    # 8 of 12 fps: member frame j is source frame ceil(1.5 j); 48/64 of 40 x 56 is 30 x 42
    slow_expected = per_frame_resize(clip[:, :, [0, 2, 3, 5, 6, 8, 9]], (30, 42))
    with torch.no_grad():
        whole = model(clip)
    assert torch.equal(probes["fast"].seen[0], clip)
    torch.testing.assert_close(probes["slow"].seen[0], slow_expected)

    for chunks, slow_calls in (([1] * 10, 7), ([1, 2, 3, 4], 4), ([10], 1)):
        for probe in probes.values():
            probe.seen.clear()
        with torch.no_grad():
            logits, state = stream(model, clip, chunks)
        assert len(probes["fast"].seen) == len(chunks)
        # not called for chunks that hold none of its frames
        assert len(probes["slow"].seen) == slow_calls
        assert torch.equal(torch.cat(probes["fast"].seen, dim=2), clip)
        torch.testing.assert_close(torch.cat(probes["slow"].seen, dim=2), slow_expected)
        torch.testing.assert_close(logits, whole)
        assert state["source_frame_count"].tolist() == [10.0]


def test_state_keys_are_prefixed_and_pure():
    model = a0_pair(fast=MemberInput(10, 64), slow=MemberInput(5, 56))
    state = model.init_state(2, H, W)
    member = vidnets.create_model("movinet_a0_stream")
    fast_keys = member.init_state(2, H, W)
    slow_keys = member.init_state(2, 35, 49)
    expected = {"source_frame_count": (2,), "logits_fast": (2, 600), "logits_slow": (2, 600),
                **{f"fast/{k}": tuple(v.shape) for k, v in fast_keys.items()},
                **{f"slow/{k}": tuple(v.shape) for k, v in slow_keys.items()}}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected

    frames = torch.rand(2, 3, 2, H, W)
    before = {k: v.clone() for k, v in state.items()}
    with torch.no_grad():
        a, new_state = model.stream_step(frames, state)
        b, _ = model.stream_step(frames, state)
    assert torch.equal(a, b)
    assert all(torch.equal(before[k], state[k]) for k in state)
    assert set(new_state) == set(state)

    new_state["source_frame_count"] = torch.tensor([2.0, 3.0])
    with pytest.raises(ValueError, match="same source frame"):
        model.stream_step(frames, new_state)


def test_class_counts_must_match_and_reset_resets_all():
    with torch.device("meta"):
        five = vidnets.create_model("movinet_a0_base", num_classes=5)
        seven = vidnets.create_model("movinet_a0_base", num_classes=7)
    inputs = {"a": MemberInput(5, 172), "b": MemberInput(5, 172)}
    with pytest.raises(ValueError, match="same classes.*'a': 5, 'b': 7"):
        Ensemble({"a": five, "b": seven}, inputs, source_fps=5, source_size=172)

    probes = {"a": Probe(5), "b": Probe(5)}
    model = Ensemble(probes, inputs, source_fps=5, source_size=172)
    model.reset_classifier(3)
    assert model.num_classes == 3 and all(p.num_classes == 3 for p in probes.values())


def test_bad_ensembles_are_refused():
    inputs = {"a": MemberInput(30, 64)}
    with pytest.raises(ValueError, match="only subsample"):
        Ensemble({"a": Probe()}, inputs, source_fps=12, source_size=64)
    with pytest.raises(ValueError, match="identifiers"):
        Ensemble({"a/b": Probe()}, {"a/b": MemberInput(12, 64)}, source_fps=12, source_size=64)
    with torch.device("meta"):
        base = create_ensemble({"a": "movinet_a0_base", "b": "movinet_a0_stream"},
                               source_fps=5, source_size=172)
    assert not base.causal
    with pytest.raises(ValueError, match="cannot stream"):
        base.init_state(1, H, W)
    others = [n for n in vidnets.list_models() if vidnets.model_config(n).mean != (0, 0, 0)]
    if others:  # a family with mean/std input normalisation
        with pytest.raises(ValueError, match="normalisation"), torch.device("meta"):
            create_ensemble({"a": "movinet_a0_base", "b": others[0]}, source_fps=30,
                            source_size=172)


def test_member_weights(tmp_path):
    source = randomize(vidnets.create_model("movinet_a0_stream"), seed=3)
    path = save_weights(source.state_dict(), tmp_path / "a0.safetensors", {"num_classes": 600})
    model = create_ensemble({"a": "movinet_a0_stream", "b": "movinet_a0_stream"},
                            source_fps=5, source_size=172, member_weights={"a": path})
    loaded = model.members["a"].state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in source.state_dict().items())
    with pytest.raises(ValueError, match="unknown members"):
        create_ensemble({"a": "movinet_a0_stream"}, source_fps=5, source_size=172,
                        member_weights={"z": path})


def test_a6_is_a4_plus_a5_each_at_its_own_input():
    cfg = vidnets.model_config("movinet_a6")
    a4, a5 = vidnets.model_config("movinet_a4_base"), vidnets.model_config("movinet_a5_base")
    assert (cfg.frames, cfg.size, cfg.fps, cfg.top1) == (120, 320, 12, 84.8)
    assert cfg.params == a4.params + a5.params and cfg.gflops == a4.gflops + a5.gflops == 390
    assert not cfg.causal and vidnets.model_config("movinet_a6_stream").causal

    with torch.device("meta"):
        a6 = vidnets.create_model("movinet_a6")
        a4_model, a5_model = vidnets.create_model(a4.name), vidnets.create_model(a5.name)
        inputs = a6.member_inputs(torch.empty(1, 3, 120, 320, 320))
    assert inputs["a4"].shape == (1, 3, 80, 290, 290)
    assert inputs["a5"].shape == (1, 3, 120, 320, 320)
    assert type(a6.members["a4"]) is type(a4_model) and not a6.members["a4"].causal
    # multiply-adds add up, each member at its own input (a small source: counting is slow;
    # 12 frames of 64 x 64 give A4 8 frames of 58 x 58)
    assert count_macs(a6, (1, 3, 12, 64, 64)) == (
        count_macs(a4_model, (1, 3, 8, 58, 58)) + count_macs(a5_model, (1, 3, 12, 64, 64)))
