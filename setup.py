"""Builds the C kernels (the word scanner of corpora, the N-gram teacher's loops); everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ngram_teacher._kernels",
            ["ngram_teacher/_kernels.c"],
            extra_compile_args=["-O3", "-std=c99"],
            libraries=["m"],
        ),
        Extension("corpora._words", ["corpora/_words.c"], extra_compile_args=["-O3", "-std=c99"]),
    ]
)
