"""``python -m ngram_teacher`` is ``ngteach`` (what torchrun needs: ``torchrun -m ngram_teacher distill``)."""
from .cli import main

main()
