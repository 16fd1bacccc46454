"""ATT&CK techniques and tactics a rule may name (Sigma `tags: [attack.t1611, ...]`).

The list is the container-relevant ATT&CK subset (data/containers-techniques.json,
a copy of shared/schemas/attack/ with MITRE's LICENSE.txt beside it); a test
checks the copy against the reference. A technique outside it is refused, so
every emitted technique id validates against the schemas downstream.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "containers-techniques.json"
_TECHNIQUE = re.compile(r"^t\d{4}(\.\d{3})?$")
_GROUP_OR_SOFTWARE = re.compile(r"^[gs]\d{4}$")


@dataclass(frozen=True)
class Attack:
    techniques: dict[str, list[str]]  # id -> tactic short names
    tactics: frozenset[str]


@cache
def attack() -> Attack:
    data = json.loads(DATA.read_text())
    return Attack(
        techniques={t["id"]: list(t["tactics"]) for t in data["techniques"]},
        tactics=frozenset(data["tactics"]),
    )


class TagError(ValueError):
    pass


def techniques_and_tactics(tags: list[str], strict: bool = True) -> tuple[list[str], list[str]]:
    """ATT&CK technique ids and tactic names from a rule's `attack.*` tags.

    Tactics come from the tactic tags, or, when there are none, from the
    techniques themselves. Unknown techniques or tactics raise TagError when
    strict; otherwise they are kept as written.
    """
    known = attack()
    techniques: list[str] = []
    tactics: list[str] = []
    for tag in tags:
        namespace, _, name = tag.partition(".")
        if namespace != "attack":
            continue
        name = name.lower()
        if _TECHNIQUE.match(name):
            tid = name.upper()
            if tid not in known.techniques and strict:
                raise TagError(f"unknown ATT&CK technique {tag!r} (not in {DATA.name})")
            techniques.append(tid)
        elif _GROUP_OR_SOFTWARE.match(name):
            continue  # groups and software are not detections
        elif name in known.tactics:
            tactics.append(name)
        elif strict:
            raise TagError(f"unknown ATT&CK tag {tag!r}: expected attack.tNNNN[.NNN] or a tactic name")
    if not tactics:
        for tid in techniques:
            for tactic in known.techniques.get(tid, []):
                if tactic not in tactics:
                    tactics.append(tactic)
    return techniques, tactics
