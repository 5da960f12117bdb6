import pytest
import torch

import vidnets
from tests.conftest import randomize
from vidnets.weights import read_metadata, save_weights


def test_create_model_loads_saved_weights_and_metadata(tmp_path):
    model = randomize(vidnets.create_model("movinet_a0_stream", num_classes=5))
    path = save_weights(model.state_dict(), tmp_path / "a0.safetensors",
                        {"model": "movinet_a0_stream", "num_classes": 5})
    assert read_metadata(path) == {"model": "movinet_a0_stream", "num_classes": 5}
    loaded = vidnets.create_model("movinet_a0_stream", weights=path)
    assert loaded.num_classes == 5  # taken from the checkpoint's metadata
    clip = torch.rand(1, 3, 4, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip), model(clip))


def test_weights_of_another_variant_are_rejected_with_names(tmp_path):
    a1 = vidnets.create_model("movinet_a1_base")
    path = save_weights(a1.state_dict(), tmp_path / "a1.safetensors", {})
    with pytest.raises(ValueError, match=r"(?s)a1.safetensors does not fit MoViNet.*unexpected"):
        vidnets.create_model("movinet_a0_base", weights=path)


def test_corrupt_or_missing_weights_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors file"):
        vidnets.create_model("movinet_a0_base", weights=bad)
    with pytest.raises(FileNotFoundError, match="nothere.safetensors"):
        vidnets.create_model("movinet_a0_base", weights=tmp_path / "nothere.safetensors")
