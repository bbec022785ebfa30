"""Build script: the pybind11 extension ``pytts._core`` (C++17) and the Cython extension
``pytts._answers`` (its .pyx is cythonized here, at build time: Cython is a build requirement,
not a run-time one).

The extensions are optional at install time so that a machine without a compiler (or without
Cython) still gets a working package (``pytts.kernels`` then falls back to the other compiled
module or to the NumPy reference). Set ``PYTTS_REQUIRE_EXTENSION=1`` (CI does) to make a failed
build an error instead.
``PYTTS_SANITIZE=1`` builds with ``-fsanitize=address,undefined`` for the sanitizer CI job;
``PYTTS_NATIVE=1`` adds ``-march=native`` (off by default so wheels stay portable).
The flags chosen here are compiled into the module as ``pytts._core.BUILD_FLAGS`` so that
``pytts doctor`` can tell a native build from a portable one.
"""

import glob
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import Extension, setup


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

# CFLAGS from the environment reach the compiler too, so they belong in the record.
build_flags = " ".join(compile_args + os.environ.get("CFLAGS", "").split())

ext_modules = [
    Pybind11Extension(
        "pytts._core",
        ["csrc/bindings.cpp", "csrc/bind_simulate.cpp"],
        include_dirs=["csrc"],
        # The kernels live in headers: list them so that editing one triggers a rebuild.
        depends=sorted(glob.glob("csrc/*.hpp")),
        cxx_std=17,
        define_macros=[("PYTTS_BUILD_FLAGS", f'"{build_flags}"')],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
]


def _cython_extensions() -> list:
    """``pytts._answers`` cythonized to C++ (empty, with a message, where that cannot be done)."""
    try:
        import numpy
        from Cython.Build import cythonize

        return cythonize(
            [Extension("pytts._answers", ["pytts/_answers.pyx"],
                       include_dirs=["csrc", numpy.get_include()],
                       define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                       depends=sorted(glob.glob("csrc/*.hpp")), language="c++",
                       extra_compile_args=compile_args + ["-std=c++17"],
                       extra_link_args=link_args)],
            compiler_directives={"language_level": 3}, quiet=True)
    except Exception as exc:  # Cython missing, or the .pyx does not translate
        OptionalBuildExt._give_up(exc)
        return []


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
        print(f"pytts: building a compiled extension failed ({exc}); pytts.kernels will use "
              "the other compiled module or the NumPy reference instead.", file=sys.stderr)


setup(ext_modules=ext_modules + _cython_extensions(), cmdclass={"build_ext": OptionalBuildExt})
