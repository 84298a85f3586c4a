"""Builds the C kernels of the N-gram teacher; everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ngram_teacher._kernels",
            ["ngram_teacher/_kernels.c"],
            extra_compile_args=["-O3", "-std=c99"],
        )
    ]
)
