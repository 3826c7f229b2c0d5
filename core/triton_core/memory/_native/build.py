"""cffi (API mode) build of triton-core's C layer.

setup.py names ``ffibuilder`` in ``cffi_modules``, so ``pip install ./core``
compiles it with the machine's C compiler. For a development build in place:

    cd core && python triton_core/memory/_native/build.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
MODULE = "triton_core.memory._native._triton_native"


def _rel(path: Path) -> str:
    # setuptools wants source paths relative to where the build runs.
    return os.path.relpath(path, os.getcwd())


def _cdef() -> str:
    # native.h is the one source of truth; cdef cannot read preprocessor lines.
    lines = (HERE / "native.h").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def check_compiler() -> None:
    """Compile an empty C file; fail with a plain message when that is impossible.

    Without this, a missing compiler shows up deep in setuptools' output as a
    "command 'gcc' failed" line that does not say what to install.
    """
    try:
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler
    except ImportError:
        # pip's build (setup.py) always has setuptools (build-system.requires); an
        # in-place build may not: since Python 3.12 a venv no longer ships
        # setuptools and the stdlib has no distutils, and cffi's compile needs it too.
        raise SystemExit(
            "triton-core: building the C layer needs setuptools (Python 3.12+ venvs do "
            "not include it): pip install setuptools"
        ) from None

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text("int tc_probe(void) { return 0; }\n")
        try:
            compiler.compile([str(src)], output_dir=tmp)
        # Any failure counts: depending on setuptools' version the errors come
        # from setuptools._distutils or from the stdlib's distutils.
        except Exception as exc:  # noqa: BLE001
            cc = getattr(compiler, "compiler", None) or os.environ.get("CC", "cc")
            raise SystemExit(
                "triton-core: no working C compiler found (tried "
                f"{' '.join(cc) if isinstance(cc, list) else cc!r}): {exc}\n"
                "triton-core compiles a small C library at install time. Install one: "
                "'xcode-select --install' on macOS, 'apt-get install build-essential' "
                "(Debian/Ubuntu) or 'dnf install gcc' (Fedora/RHEL), or set CC."
            ) from None


def make_ffi(absolute_paths: bool = False) -> FFI:
    ffi = FFI()
    ffi.cdef(_cdef())
    source = HERE / "native.c"
    ffi.set_source(
        MODULE,
        '#include "native.h"',
        # ffi.compile() works in its own folder, so it needs absolute paths.
        sources=[str(source) if absolute_paths else _rel(source)],
        include_dirs=[str(HERE)],
        # glibc < 2.34 keeps shm_open in librt.
        libraries=["rt"] if sys.platform.startswith("linux") else [],
        extra_compile_args=["-O2"],
    )
    return ffi


ffibuilder = make_ffi()

# setuptools imports this module (through cffi_modules) only to build.
if os.environ.get("TRITON_CORE_SKIP_COMPILER_CHECK") != "1":
    check_compiler()


def build_in_place() -> Path:
    """Compile into a temporary folder and copy the extension next to this file."""
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(make_ffi(absolute_paths=True).compile(tmpdir=tmp, verbose=False))
        target = HERE / built.name
        shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    print(build_in_place())
