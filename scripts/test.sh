#!/usr/bin/env bash
# Sets up a fresh machine for dalab's tests and runs them: the README's test command.
# Data root: $DALAB_DATA, else ../shared/datasets beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
export DALAB_DATA="${DALAB_DATA:-$(cd .. && pwd)/shared/datasets}"
export DALAB_CACHE="${DALAB_CACHE:-$PWD/.dalab-cache}"   # generated MNIST-M sets, reused between runs
[ -f .venv/bin/activate ] || python3 -m venv --clear .venv   # a half-made .venv is made again
. .venv/bin/activate
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test,ray,analysis,svhn,tensorboard,mlflow,pretrained]"   # their tests run too
bash scripts/setup-browser.sh || echo "setup-browser failed: the report's browser test will be skipped" >&2
# one test file per worker, up to 4 workers (CI's two cores: two)
workers=$(( $(nproc) < 4 ? $(nproc) : 4 ))
python -m pytest -q -n "$workers" --dist loadfile "$@"
