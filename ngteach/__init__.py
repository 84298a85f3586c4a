"""ngteach, the application: the ``ngteach`` command line over the library's layers.

The layers import one way: :mod:`corpora` (text -> token ids and vocabulary, and the
helpers every layer shares: errors, files, progress, provenance) imports nothing of the
project; :mod:`ngram_teacher` (ids -> counts -> ranks, the teachers) imports corpora;
:mod:`student` (ranks -> a trained model) imports both; :mod:`ngteach.cli` imports all
of them and none imports it.
"""
import os

# numpy's OpenBLAS starts a thread per core at import, and they spin for a while before they
# sleep; the command line's numpy work is not matrix algebra (training's is torch's), so one
# thread leaves the cores to the work that uses them (kernels, hashing, torch).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
