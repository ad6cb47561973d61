"""Build of anbo's one compiled part; everything else is declared in pyproject.toml.

probes/_kernels.c is a one-pass audio block kernel: numpy needs a pass over the samples
per statistic (and strided passes to split stereo channels), this reads each sample
once (see docs/performance.md). Declared here because setuptools' pyproject.toml form
for extension modules is still experimental.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "probes._kernels",
            sources=["probes/_kernels.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror"],
        )
    ]
)
