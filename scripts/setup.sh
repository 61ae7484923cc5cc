#!/usr/bin/env bash
# Installs wmsim into ./.venv with everything the main job and the tests use. Safe to run again.
#  - system libraries for headless MuJoCo rendering (EGL), when missing and apt-get can install them
#  - torch 2.13.0 (CPU build) first, when the venv has no torch, and a constraints file that keeps
#    whatever torch is installed from being upgraded by any later install
#  - the project itself (editable) with all its extras and the dev tools
#  - a second venv, .venv-onnx, with only wmsim[onnx] (numpy, gymnasium, onnxruntime, no torch), in which
#    tests/wmsim/test_install.py runs a shipped dream: the torch-free install the README promises
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing EGL libraries for headless MuJoCo rendering"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 >/dev/null
  else
    echo "setup: warning: libEGL not found; install libegl1 + libgl1-mesa-dri for DeepMind Control pixels" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch 2.13.0 (CPU build)"
  "$VPY" -m pip install -q torch==2.13.0
fi
"$VPY" -c "import torch; print('torch==' + torch.__version__)" > .venv/constraints.txt
"$VPY" -m pip install -q -c .venv/constraints.txt -e ".[all,dev]"

if [ ! -x .venv-onnx/bin/python ]; then
  "$PY" -m venv .venv-onnx
fi
.venv-onnx/bin/python -m pip install -q -e ".[onnx]"
if .venv-onnx/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "setup: .venv-onnx has torch; it must hold wmsim[onnx] only: rm -rf .venv-onnx and run again" >&2
  exit 1
fi
echo "setup: ready ($(cat .venv/constraints.txt); .venv-onnx: wmsim[onnx], no torch)"
