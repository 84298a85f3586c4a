"""student: ranks -> a trained language model (the last stage of ngteach).

:mod:`student.losses` holds the losses (usable from any training loop), :mod:`student.model`
the LSTM and Transformer students, :mod:`student.data` the batching of token streams and
teacher rows, :mod:`student.train` the training loop of ``ngteach distill``, and
:mod:`student.significance` the paired tests of ``ngteach compare``. Importing it adds the
neural teachers (:mod:`student.neural_teachers`) to the teacher specs of
:func:`ngram_teacher.load_teacher`.
"""
import os
from pathlib import Path

from ngram_teacher.teachers import TEACHER_KINDS, TeacherKind

# MKL, under torch's CPU matrix products, by default uses fewer threads when the machine is
# busy: another summation order, other last bits. Fixed, the same run gives the same numbers
# however loaded the machine is (read when MKL starts, at the first product).
os.environ.setdefault("MKL_DYNAMIC", "FALSE")


def _neural(kind: str):
    """The loader of a neural teacher kind; torch is imported when one is loaded, not before."""
    def load(path: Path, model, k: int, device=None, **options):
        from .neural_teachers import load_neural_teacher

        return load_neural_teacher(kind, path, model, device)
    return load


# The neural teachers join the teacher specs of ngram_teacher.load_teacher.
TEACHER_KINDS.update({"born-again": TeacherKind(_neural("born-again"), "run directory"),
                      "hf-causal": TeacherKind(_neural("hf-causal"), "Hugging Face model directory"),
                      "hf-masked": TeacherKind(_neural("hf-masked"), "Hugging Face model directory")})
