#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
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
