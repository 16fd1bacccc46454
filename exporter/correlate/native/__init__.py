"""The native correlation core: the per-event path of the correlate stage, compiled.

`_core.pyx` (Cython, built by hatch_build.py when provex is installed) ports the provenance
graph, path resolution, the rule fields, the rule IR and the correlation state; the Python
modules of exporter.correlate stay the reference it is tested against
(tests/correlate/test_native_differential.py). `correlate.engine` picks one: `native` (the
default, when the core is built) or `python`.

`load()` returns the compiled module, or raises NativeUnavailable saying why not (not built,
or built from other sources than these: a stale build is never run).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from exporter import compiled

HERE = Path(__file__).resolve().parent
SOURCES = ("_core.pyx",)  # hatch_build.SOURCES: what the digest covers


class NativeUnavailable(RuntimeError):
    """The compiled core cannot be used here (the message says why and what to do)."""


def source_digest() -> str:
    """The digest hatch_build.py compiles into the module (hatch_build.source_digest)."""
    return compiled.source_digest(HERE, SOURCES)


_module: ModuleType | None = None
_error: str = ""


def load() -> ModuleType:
    """The compiled core; NativeUnavailable when it is missing or stale."""
    global _module, _error
    if _module is not None:
        return _module
    if _error:
        raise NativeUnavailable(_error)
    try:
        from exporter.correlate.native import _core
    except ImportError as exc:
        _error = (
            f"the native correlation core is not built ({exc}); reinstall provex (`make setup`) "
            "or set correlate.engine: python"
        )
        raise NativeUnavailable(_error) from None
    sources = [HERE / name for name in SOURCES]
    if all(p.exists() for p in sources) and source_digest() != _core.SOURCE_DIGEST:
        _error = (
            f"the native correlation core was built from other sources ({_core.SOURCE_DIGEST}, these are "
            f"{source_digest()}); rebuild it (`make setup` or `python hatch_build.py`) "
            "or set correlate.engine: python"
        )
        raise NativeUnavailable(_error)
    _module = _core
    return _core


def available() -> bool:
    try:
        load()
    except NativeUnavailable:
        return False
    return True


def unavailable_reason() -> str:
    """Why the core cannot be used ("" when it can)."""
    try:
        load()
    except NativeUnavailable as exc:
        return str(exc)
    return ""
