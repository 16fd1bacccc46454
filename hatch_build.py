"""Build hook: compiles provex's native correlation core (exporter/correlate/native/_core.pyx)
and its native encoder (exporter/emit/native/_encode.pyx) with Cython and the system C
compiler, for every wheel and editable install.

The wheel then carries the extension (and is tagged for this interpreter and platform); an
editable install finds it beside its source. `python hatch_build.py` rebuilds it in place
for a development checkout. The source digest is compiled into the module, so an extension
older than its source is refused at import (exporter.correlate.native), never run.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
NATIVE = ROOT / "exporter" / "correlate" / "native"
SOURCES = ("_core.pyx",)
MODULE = "exporter.correlate.native._core"
ENCODER_SOURCES = ("_encode.pyx",)
ENCODER_MODULE = "exporter.emit.native._encode"


def source_digest(folder: Path = NATIVE, sources: tuple[str, ...] = SOURCES) -> str:
    """What the extension was built from: its Cython sources, in order."""
    digest = hashlib.sha256()
    for name in sources:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:16]


def build_core(root: Path = ROOT) -> Path:
    """Compile the core in place (next to its source); the built file's path."""
    return _build(root, MODULE, SOURCES, "PROVEX_CORE_SOURCE")


def build_encoder(root: Path = ROOT) -> Path:
    """Compile the native encoder in place; the built file's path."""
    return _build(root, ENCODER_MODULE, ENCODER_SOURCES, "PROVEX_ENCODE_SOURCE")


def _build(root: Path, module: str, sources: tuple[str, ...], digest_macro: str) -> Path:
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    folder = Path(*module.split(".")[:-1])
    digest = source_digest(root / folder, sources)
    ext = Extension(
        module,
        [str(folder / name) for name in sources],
        define_macros=[(digest_macro, f'"{digest}"')],
        extra_compile_args=["-O2", "-Wno-unused-function"],
    )
    cwd = os.getcwd()
    os.chdir(root)
    try:
        modules = cythonize(
            [ext],
            quiet=True,
            compiler_directives={"language_level": "3"},
        )
        dist = Distribution({"name": "provex-core", "ext_modules": modules})
        cmd = dist.get_command_obj("build_ext")
        cmd.inplace = True
        cmd.force = True  # compile flags or headers may have changed: never reuse an old build
        cmd.ensure_finalized()
        cmd.run()
        return Path(cmd.get_ext_fullpath(module)).resolve()
    finally:
        os.chdir(cwd)


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # `python hatch_build.py` in a venv without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class NativeCoreHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for build in (build_core, build_encoder):
            built = build(Path(self.root))
            if version != "editable":
                build_data["force_include"][str(built)] = str(built.relative_to(Path(self.root)))


if __name__ == "__main__":
    print(build_core(), file=sys.stderr)
    print(build_encoder(), file=sys.stderr)
