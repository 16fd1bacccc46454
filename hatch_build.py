"""Build hook: compiles provex's native correlation core (exporter/correlate/native/_core.pyx),
its ring-buffer drain (exporter/source/_drain.pyx) and its document encoder
(exporter/emit/native/_encode.pyx) with Cython and the system C compiler, for every wheel and
editable install.

The wheel then carries the extensions (and is tagged for this interpreter and platform); an
editable install finds them beside their sources. `python hatch_build.py` rebuilds them in
place for a development checkout. Each source digest is compiled into its module, so an
extension older than its source is refused at import (exporter.correlate.native,
exporter.source.drain, exporter.emit.native), never run.
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
# The ring-buffer drain: (module, folder, sources, the macro its digest is compiled into).
DRAIN = ("exporter.source._drain", ROOT / "exporter" / "source", ("_drain.pyx",), "PROVEX_DRAIN_SOURCE")
# The document encoder (exporter.emit.native), the same way.
ENCODER = (
    "exporter.emit.native._encode",
    ROOT / "exporter" / "emit" / "native",
    ("_encode.pyx",),
    "PROVEX_ENCODE_SOURCE",
)


def source_digest(folder: Path = NATIVE, sources: tuple[str, ...] = SOURCES) -> str:
    """What the extension was built from: its Cython sources, in order."""
    digest = hashlib.sha256()
    for name in sources:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:16]


def _extension(root: Path, module: str, folder: Path, sources: tuple[str, ...], macro: str) -> object:
    from setuptools import Extension

    relative = folder.relative_to(ROOT)
    return Extension(
        module,
        [str(relative / name) for name in sources],
        define_macros=[(macro, f'"{source_digest(root / relative, sources)}"')],
        extra_compile_args=["-O2", "-Wno-unused-function"],
    )


def build_core(root: Path = ROOT) -> list[Path]:
    """Compile the core, the drain and the encoder in place (next to their sources); the built
    files' paths."""
    from Cython.Build import cythonize
    from setuptools import Distribution

    exts = [
        _extension(root, MODULE, NATIVE, SOURCES, "PROVEX_CORE_SOURCE"),
        _extension(root, *DRAIN),
        _extension(root, *ENCODER),
    ]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        modules = cythonize(
            exts,
            quiet=True,
            compiler_directives={"language_level": "3"},
        )
        dist = Distribution({"name": "provex-core", "ext_modules": modules})
        cmd = dist.get_command_obj("build_ext")
        cmd.inplace = True
        cmd.force = True  # compile flags or headers may have changed: never reuse an old build
        cmd.ensure_finalized()
        cmd.run()
        return [Path(cmd.get_ext_fullpath(ext.name)).resolve() for ext in exts]
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
        built = build_core(Path(self.root))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            for path in built:
                build_data["force_include"][str(path)] = str(path.relative_to(Path(self.root)))


if __name__ == "__main__":
    print(build_core(), file=sys.stderr)
