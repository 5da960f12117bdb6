#!/usr/bin/env bash
# Set up a fresh machine and run the whole test suite (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
# torch==2.13.0 resolves to the local CPU build; install it first so that nothing
# later pulls a CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
ruff check vidnets tests benchmarks tools
python -m pytest -q
