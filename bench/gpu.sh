#!/usr/bin/env bash
# The GPU path, measured on a CUDA machine within 10 minutes: make the C kernels, run the
# GPU-marked tests (tests/test_gpu.py), then print distill's tokens/s for the small LSTM and
# the medium Transformer in fp32 and bf16, next to a plain PyTorch LSTM loop
# (bench/bench_gpu.py).
#
# The device machine has no network. Its python3 holds torch, numpy, typer, rich,
# sentencepiece, transformers, matplotlib, hypothesis and pytest; what else the project needs
# travels as wheels in .whl/, and the corpus as a file. Here, once (needs ../shared/corpora):
#   bash bench/gpu.sh --prepare
# then, with the device tool:
#   run(command="bash bench/gpu.sh", carry=[".whl", "bench/data/corpus-2000000-s0.txt"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=bench/data/corpus-2000000-s0.txt

if [ "${1:-}" = "--prepare" ]; then
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  for package in marisa-trie==1.3.1 pydivsufsort==0.0.20; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$package"
  done
  [ -f "$CORPUS" ] || .venv/bin/python bench/make_corpus.py --tokens 2M --seed 0 --out "$CORPUS"
  ls -l .whl "$CORPUS"
  exit 0
fi

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
python3 setup.py -q build_ext --inplace
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py
python3 bench/bench_gpu.py --corpus "$CORPUS"
