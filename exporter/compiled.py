"""What provex's compiled modules were built from (hatch_build.py compiles the digest in).

A module built from other sources than the ones beside it is stale and never run: each
loader (the correlation core, the ring drain, the encoder) compares this digest with the
one its build carries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def source_digest(folder: Path, sources: Iterable[str]) -> str:
    """The digest of a module's Cython sources, in order (hatch_build.source_digest)."""
    digest = hashlib.sha256()
    for name in sources:
        digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:16]
