"""Stable alert ids: the same rule, key and evidence give the same id on every replay."""

from __future__ import annotations

import hashlib


def stable_id(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]
