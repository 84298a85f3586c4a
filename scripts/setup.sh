#!/usr/bin/env bash
# Create .venv and install ngteach with its test extras and the optional Hugging Face teachers.
# torch is pinned to the version this project is developed against: the development machine
# installs its CPU build from a local wheel, where an unpinned torch would pull the newest
# multi-GB CUDA build. kenlm compiles from source, which takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev,hf]"
echo "ngteach installed in .venv (activate with: . .venv/bin/activate)"
