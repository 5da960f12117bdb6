#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
pip() { python -m pip install -q "$@"; }
# torch==2.13.0 resolves to the local CPU build; install it first so that nothing
# later pulls a CUDA build.
pip torch==2.13.0
pip -e ".[test,tf-reference,deploy-reference,deploy,litert]"
# the litert-torch converter without its pins (see the litert extra in pyproject.toml)
pip --no-deps litert-torch==0.10.0 litert-converter==0.5.0 ai-edge-quantizer==0.10.0
# the official TF MoViNet (reference for the checkpoint tests), without its heavy pins
pip --no-deps tf-keras==2.20.1 tf-models-official==2.20.0
# pytorchvideo 0.1.5 (reference for the X3D tests) and the pure-Python packages its import
# needs, without its other pins; its torchvision import is stubbed by the test
pip --no-deps pytorchvideo==0.1.5 fvcore==0.1.5.post20221221 iopath==0.1.10 portalocker \
    tabulate termcolor
python -c "import torch; assert torch.__version__.startswith('2.13.0') and not torch.version.cuda"
ruff check vidnets tests benchmarks tools
# reference checks must run here, not be skipped
VIDNETS_REQUIRE_REFERENCE=1 python -m pytest -q
