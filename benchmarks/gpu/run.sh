#!/usr/bin/env bash
# The GPU benchmark from nothing: on a machine with one NVIDIA GPU, a driver and Python 3.11+, this
# installs the pinned stack (kubeformer[gpu]: TensorRT and CUDA of versions.SERVING) into its own
# venv, runs the `gpu`-marked tests, then benchmarks/gpu/run.py. Budget: under 8 minutes.
#
#   bash benchmarks/gpu/run.sh [run.py arguments, e.g. --models roberta-base --budget 1]
#
# Writes benchmarks/gpu/results/<gpu>.json (the GPU's name in the file name) and prints the timings.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-gpu}
TORCH=$(sed -n 's/^TORCH_VERSION := //p' Makefile)
# PyTorch's CUDA 12.9 build, the serving stack's CUDA (one driver for all); the registry's default
# wheel when that index has no build of this version.
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu129}
# ONNX Runtime with CUDA: the GPU build of the builder's onnxruntime range, in place of the CPU one
# (both write the module `onnxruntime`; never the two at once). 1.23.x is a CUDA 12 build.
ORT_GPU=${ORT_GPU:-onnxruntime-gpu[cuda,cudnn]==1.23.2}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/pip install --quiet --disable-pip-version-check"
$PIP --upgrade pip
$PIP "torch==$TORCH" --index-url "$TORCH_INDEX" || $PIP "torch==$TORCH"
$PIP -e '.[gpu,dev]'
"$VENV/bin/pip" uninstall --quiet --yes onnxruntime
$PIP "$ORT_GPU"

export PYTHONPATH="$PWD/builder_image:$PWD/operator:$PWD"
# The GPU tests: TensorRT builds through the real pipeline, the stage's API against the installed
# TensorRT, the pins against versions.SERVING.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
    tests/integration/test_tensorrt.py tests/unit/test_tensorrt_api.py tests/unit/test_versions.py
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -c 'A-Za-z0-9\n' '-' | tr 'A-Z' 'a-z')
"$VENV/bin/python" benchmarks/gpu/run.py --output "benchmarks/gpu/results/${GPU_NAME}.json" "$@"
