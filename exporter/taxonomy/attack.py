"""ATT&CK techniques and tactics a rule may name (Sigma `tags: [attack.t1611, ...]`).

Tags are checked against the whole ATT&CK Enterprise list (data/enterprise-techniques.json:
691 techniques and 14 tactics of ATT&CK 18.1, MITRE's LICENSE.txt beside it; see
data/README.md). Community rules tag techniques of every platform, and a later ATT&CK
release adds and renames entries, so a tag in no list is a warning for `provex rules
lint`, never a reason to refuse the rule: an unknown technique id is kept as written (its
form is valid), an unknown tactic is left out (it has no TA id to map to).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "enterprise-techniques.json"
_TECHNIQUE = re.compile(r"^t\d{4}(\.\d{3})?$")
_GROUP_OR_SOFTWARE = re.compile(r"^[gs]\d{4}$")


@dataclass(frozen=True)
class Attack:
    version: str
    techniques: dict[str, list[str]]  # id -> tactic short names
    tactics: frozenset[str]


@cache
def attack() -> Attack:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return Attack(
        version=data["attack_version"],
        techniques={tid: list(entry["tactics"]) for tid, entry in data["techniques"].items()},
        tactics=frozenset(data["tactics"]),
    )


@dataclass
class Tags:
    techniques: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def techniques_and_tactics(tags: list[str]) -> Tags:
    """ATT&CK technique ids and tactic names from a rule's `attack.*` tags.

    Tactics come from the tactic tags, or, when there are none, from the
    techniques themselves. Tags outside the Enterprise list become warnings.
    """
    known = attack()
    out = Tags()
    for tag in tags:
        namespace, _, name = tag.partition(".")
        if namespace != "attack":
            continue
        name = name.lower()
        if _TECHNIQUE.match(name):
            tid = name.upper()
            if tid not in known.techniques:
                out.warnings.append(f"ATT&CK tag {tag!r}: no such technique in ATT&CK {known.version}")
            out.techniques.append(tid)
        elif _GROUP_OR_SOFTWARE.match(name):
            continue  # groups and software are not detections
        elif name in known.tactics:
            out.tactics.append(name)
        else:
            out.warnings.append(
                f"ATT&CK tag {tag!r}: not a technique (attack.tNNNN[.NNN]) or a tactic of"
                f" ATT&CK {known.version}; left out"
            )
    if not out.tactics:
        for tid in out.techniques:
            for tactic in known.techniques.get(tid, []):
                if tactic not in out.tactics:
                    out.tactics.append(tactic)
    return out
