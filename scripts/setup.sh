#!/usr/bin/env bash
# Create .venv and install ngteach with its test extras and the optional Hugging Face teachers. torch is pinned to the CPU build
# that this project is developed against (an unpinned torch pulls a multi-GB CUDA build);
# kenlm compiles from source, which takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,hf]"
echo "ngteach installed in .venv (activate with: . .venv/bin/activate)"
