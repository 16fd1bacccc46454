"""Redaction of secrets in command lines, before anything leaves the agent.

Covers the shapes secrets take on real command lines: `--password=x`,
`--token x`, `token=x`, HTTP headers (`Authorization: Bearer x`), URLs with
`user:pass@`, `-p<pw>` of mysql-like tools, `-u user:pass` of curl and
`sshpass -p pw`. Redaction is idempotent.
"""

from __future__ import annotations

import re

MASK = "***"

# A flag or key name that carries a secret value.
_SECRET_KEY = re.compile(
    r"(?:^|-)(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key"
    r"|credentials?|auth(?:orization)?|client[-_]?secret|session[-_]?key|cookie)$",
    re.IGNORECASE,
)
_FLAG_EQ = re.compile(r"^(--?[A-Za-z0-9][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)
_FLAG = re.compile(r"^--?([A-Za-z0-9][A-Za-z0-9_.-]*)$")
_KEY_EQ = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)
_HEADER = re.compile(
    r"^\s*((?:proxy-)?authorization|x-api-key|x-auth-token|cookie|x-vault-token|private-token)\s*:\s*(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_URL_CREDS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/@:\s]*):([^/@\s]*)@")
_MYSQL_LIKE = {"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mariadb", "mariadb-dump"}
_MYSQL_LIKE_PREFIX = ("mysql", "mariadb")


def _secret_name(name: str) -> bool:
    name = name.lstrip("-")
    # Match the last word: "--db-password", "AWS_SECRET_ACCESS_KEY", "--auth-token".
    return bool(_SECRET_KEY.search(name.replace("_", "-").split(".")[-1]))


def _tool(argv: list[str]) -> str:
    return argv[0].rsplit("/", 1)[-1] if argv else ""


def redact_argv(argv: list[str]) -> list[str]:
    """A copy of argv with secret values replaced by ***."""
    if not argv:
        return argv
    tool = _tool(argv)
    mysql_like = tool in _MYSQL_LIKE or tool.startswith(_MYSQL_LIKE_PREFIX)
    out: list[str] = [_redact_value(argv[0])]
    pending = ""  # what the previous flag says the next arg is: "secret" or "userpass"
    for arg in argv[1:]:
        if pending == "secret":
            out.append(MASK)
        elif pending == "userpass":
            out.append(_redact_userpass(arg))
        else:
            out.append(_redact_one(arg, tool, mysql_like))
        pending = "" if pending else _next_is(arg, tool)
    return out


def _next_is(arg: str, tool: str) -> str:
    """Whether this (valueless) flag announces a secret as the next argument."""
    m = _FLAG.match(arg)
    if m is None:
        return ""
    if tool == "sshpass" and arg == "-p":
        return "secret"
    if tool == "curl" and arg in ("-u", "--user", "-U", "--proxy-user"):
        return "userpass"
    if arg.startswith("--") and _secret_name(m.group(1)):
        return "secret"
    return ""


def _redact_one(arg: str, tool: str, mysql_like: bool) -> str:
    m = _FLAG_EQ.match(arg)
    if m:
        if _secret_name(m.group(1)):
            return f"{m.group(1)}={MASK}"
        return f"{m.group(1)}={_redact_value(m.group(2))}"
    if (
        mysql_like
        and arg.startswith("-p")
        and not arg.startswith("--")
        and len(arg) > 2
        and arg != "-p" + MASK
    ):
        return f"-p{MASK}"  # mysql -pSECRET (a bare -p prompts instead)
    if _FLAG.match(arg):
        return arg
    m = _KEY_EQ.match(arg)
    if m and _secret_name(m.group(1)):
        return f"{m.group(1)}={MASK}"
    return _redact_value(arg)


def _redact_value(arg: str) -> str:
    m = _HEADER.match(arg)
    if m:
        return f"{m.group(1)}: {MASK}"
    if "@" not in arg:
        return arg
    return _URL_CREDS.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", arg)


def _redact_userpass(arg: str) -> str:
    user, sep, _ = arg.partition(":")
    return f"{user}:{MASK}" if sep else arg
