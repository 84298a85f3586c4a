"""student: ranks -> a trained language model (the last stage of ngteach).

:mod:`student.losses` holds the losses (usable from any training loop), :mod:`student.model`
the LSTM and Transformer students, :mod:`student.data` the batching of token streams and
teacher rows, :mod:`student.train` the training loop of ``ngteach distill``, and
:mod:`student.significance` the paired tests of ``ngteach compare``.
"""
