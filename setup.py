"""Build script: the pybind11 extension ``pytts._core`` (C++17).

The extension is optional at install time so that a machine without a compiler still gets a
working package (``pytts.kernels`` then falls back to the NumPy reference). Set
``PYTTS_REQUIRE_EXTENSION=1`` (CI does) to make a failed build an error instead.
``PYTTS_SANITIZE=1`` builds with ``-fsanitize=address,undefined`` for the sanitizer CI job;
``PYTTS_NATIVE=1`` adds ``-march=native`` (off by default so wheels stay portable).
"""

import glob
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "False")


compile_args = ["-O3", "-fno-math-errno"]
link_args: list[str] = []
if _flag("PYTTS_NATIVE"):
    compile_args.append("-march=native")
if _flag("PYTTS_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    compile_args = ["-O1"] + san
    link_args += san

ext_modules = [
    Pybind11Extension(
        "pytts._core",
        ["csrc/bindings.cpp", "csrc/bind_simulate.cpp"],
        include_dirs=["csrc"],
        # The kernels live in headers: list them so that editing one triggers a rebuild.
        depends=sorted(glob.glob("csrc/*.hpp")),
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]


class OptionalBuildExt(build_ext):
    """Builds the extension, but lets the install succeed without it unless required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing
            self._give_up(exc)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    @staticmethod
    def _give_up(exc: Exception) -> None:
        if _flag("PYTTS_REQUIRE_EXTENSION"):
            raise exc
        print(f"pytts: building the C++ extension failed ({exc}); the NumPy reference kernels "
              "will be used.", file=sys.stderr)


setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
