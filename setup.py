"""Build of anbo's one compiled part; everything else is declared in pyproject.toml.

probes/_kernels.c is a one-pass audio block kernel: numpy needs a pass over the samples
per statistic (and strided passes to split stereo channels), this reads each sample
once (see docs/performance.md). Declared here because setuptools' pyproject.toml form
for extension modules is still experimental.

The runbooks (docs/runbooks/*.md) are written where people read docs, and the console
serves them: a build copies them into the package (monitor/console/runbooks/), so an
installed anbo serves them too (an editable install reads docs/runbooks directly).
"""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


class BuildWithRunbooks(build_py):
    def run(self) -> None:
        super().run()
        src = Path(__file__).resolve().parent / "docs" / "runbooks"
        dest = Path(self.build_lib) / "monitor" / "console" / "runbooks"
        dest.mkdir(parents=True, exist_ok=True)
        for md in sorted(src.glob("*.md")):
            shutil.copyfile(md, dest / md.name)


setup(
    cmdclass={"build_py": BuildWithRunbooks},
    ext_modules=[
        Extension(
            "probes._kernels",
            sources=["probes/_kernels.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror"],
        )
    ],
)
