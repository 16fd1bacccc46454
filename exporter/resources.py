"""Where the data that ships with the package lives.

In a built wheel, bpf/ and mappings/ are under exporter/_data/ (see
pyproject.toml); in a source checkout (editable install, tests) they are at
the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory of shipped data called `name` ("bpf", "mappings", ...)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"provex data directory {name!r} is missing from this installation")


def sample_recording() -> Path:
    """The recording `provex replay` plays when given no file (a few hundred events of
    benign workloads and one token-exfiltration chain; see scripts/record-sample.py)."""
    return _PACKAGE / "samples" / "recording.jsonl"
