import json
import subprocess
import sys

import pytest
import torch

import vidnets
from vidnets.flops import count_macs


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vidnets.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_models_table_lists_every_model():
    out = run_cli("models")
    assert out.returncode == 0, out.stderr
    for name in vidnets.list_models():
        assert name in out.stdout
    assert "3,111,799" in out.stdout and "50 x 172 x 172 @ 5" in out.stdout


def test_flops_command_measures():
    out = run_cli("flops", "movinet_a0_base", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["params"] == 3_111_799 and result["bn_statistics"] == 14_272
    assert 2.5 < result["gflops"] < 2.8
    small = json.loads(run_cli("flops", "movinet_a0_base", "--frames", "8", "--json").stdout)
    assert small["gflops"] == pytest.approx(result["gflops"] * 8 / 50, rel=0.01)


def test_flops_command_unknown_model_is_a_clear_error():
    out = run_cli("flops", "movinet_a9_base")
    assert out.returncode == 2
    assert "unknown model 'movinet_a9_base'" in out.stderr


# Measured multiply-adds vs the paper's "GFLOPs". The paper's A2 figure (10.3 at
# 50x224x224) is 12% below what its own architecture costs at that size.
@pytest.mark.parametrize(("name", "tolerance"), [
    ("movinet_a0_base", 0.05), ("movinet_a1_base", 0.05), ("movinet_a2_base", 0.17),
    ("movinet_a3_base", 0.05), ("movinet_a4_base", 0.07), ("movinet_a5_base", 0.05),
])
def test_base_gflops_match_paper(name, tolerance):
    cfg = vidnets.model_config(name)
    with torch.device("meta"):
        model = vidnets.create_model(name)
    gmacs = count_macs(model, (1, *cfg.input_shape)) / 1e9
    assert gmacs == pytest.approx(cfg.gflops, rel=tolerance)
