"""Shared test helpers."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
import torch
from torch import nn

# One intra-op thread: small test tensors gain nothing from more, and a busy second
# core makes OpenMP barriers spin.
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give a model non-trivial weights: random BN statistics and affine parameters,
    non-zero ReZero / positional-encoding scales and biases (defaults hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(torch.empty(()).uniform_(0.3, 1.0, generator=g))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.empty(m.num_features).uniform_(0.5, 2.0, generator=g))
                m.weight.copy_(torch.empty(m.num_features).uniform_(0.5, 1.5, generator=g))
    return model.eval()


def missing_reference(message: str) -> NoReturn:
    """A reference (official code, runtime, shared data) is missing: a failure in CI
    (``VIDNETS_REQUIRE_REFERENCE=1``), a skip elsewhere."""
    if os.environ.get("VIDNETS_REQUIRE_REFERENCE") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str) -> ModuleType:
    """Import an optional package the test needs (see :func:`missing_reference`)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing_reference(f"{name} does not import: {exc}")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        missing_reference(f"shared data (real videos, label maps) not found at {SHARED}")
    return SHARED


@pytest.fixture
def http_server():
    """Factory: serve a directory (or use a request-handler class) over HTTP on 127.0.0.1;
    returns the base URL."""
    import functools
    import http.server
    import threading

    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def serve(target: Path | type) -> str:
        handler = functools.partial(Quiet, directory=str(target)) \
            if isinstance(target, Path) else target
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
