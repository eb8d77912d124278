#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, and the right build: PyPI's Linux wheel of torch 2.13.0 is the CUDA build (several GB
# of CUDA libraries), so a machine without an NVIDIA GPU takes the CPU build from PyTorch's own index
# (or a local CPU wheel, where pip is configured with one). TORCH_INDEX_URL picks any other build.
if ! .venv/bin/python -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    .venv/bin/python -m pip install -q torch==2.13.0 --index-url "$TORCH_INDEX_URL"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q torch==2.13.0
  else
    .venv/bin/python -m pip install -q --retries 1 --timeout 15 torch==2.13.0 \
      --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple 2>/dev/null \
      || .venv/bin/python -m pip install -q torch==2.13.0
  fi
fi
# The distribution was called mrpc-pipeline before it took any dataset: drop that name from old venvs.
.venv/bin/python -m pip uninstall -q -y mrpc-pipeline >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]'
# dvc plots pages load vega from a CDN by default; inline it from npm so they render offline too.
if command -v npm >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack -q vega@5 vega-lite@5 vega-embed@6 >/dev/null 2>&1); then
    .venv/bin/python tools/plot_template.py "$tmp"/*.tgz .dvc/offline_plots.html
    .venv/bin/dvc config --local plots.html_template offline_plots.html
  else
    echo "setup: npm pack failed; dvc plots pages will load vega from its CDN" >&2
  fi
  rm -rf "$tmp"
else
  echo "setup: no npm; dvc plots pages will load vega from its CDN" >&2
fi
echo "setup: done. Activate with: . .venv/bin/activate"
