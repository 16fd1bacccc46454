#!/usr/bin/env python3
"""Cost of redacting one exec's argv, and what it catches: the current patterns against an
older revision's (the baseline), both loaded in the same run; prints JSON.

Redaction runs for every exec event on the consumer's thread. Corpora:
- `node`: command lines a Kubernetes node runs all day (probes, shims, shells, package
  managers), cut to what the probe copies (probes.argv_max_args arguments of
  probes.argv_arg_max bytes). `cold`: the clean-argument cache emptied before every argv (a
  node that never repeats a command); `warm`: commands repeat, as they do.
- `secret_forms`, `keep_forms`: the table in tests/fixtures/enrich/redaction.yaml, whole.
- `coverage`: how many secret forms each revision redacts exactly, and how many leak a secret.
- `adversarial`: one `sh -c` argument of a=a=a..., PWD={..., https://a:... at 16 and 64 KiB
  (a process read from /proc at startup has no length limit): growth 4 is linear, 16 quadratic.

    flock /tmp/provex-ebpf.lock .venv/bin/python bench/redact_bench.py [--baseline 233ec88] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.helpers.redaction import KEEP_FORMS, SECRET_FORMS, secrets_of  # noqa: E402
from exporter.config.schema import ProbesConfig  # noqa: E402
from exporter.enrich.redact import patterns, redact_argv  # noqa: E402

C1 = "3f2a" * 16
NODE = [
    ["/pause"],
    ["runc", "init"],
    ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", C1, "-address", "/run/containerd/containerd.sock"],
    ["runc", "--root", "/run/containerd/runc/k8s.io", "--log", f"/run/containerd/io.containerd.runtime.v2.task/k8s.io/{C1}/log.json", "--log-format", "json", "exec", "--process", "/tmp/runc-process123", "--detach", "--pid-file", f"/run/containerd/io.containerd.runtime.v2.task/k8s.io/{C1}/pid", C1],
    ["/bin/sh", "-c", "pg_isready -U postgres -h 127.0.0.1 -p 5432"],
    ["/bin/grpc_health_probe", "-addr=:8080"],
    ["curl", "-sf", "http://localhost:8080/healthz"],
    ["wget", "-q", "-O-", "http://127.0.0.1:9090/-/ready"],
    ["redis-cli", "ping"],
    ["sh", "-c", "redis-cli -h 127.0.0.1 -p 6379 ping | grep PONG"],
    ["mysqladmin", "ping", "-h", "127.0.0.1"],
    ["nginx", "-g", "daemon off;"],
    ["python3", "/app/main.py", "--port", "8000", "--workers", "4"],
    ["/usr/local/bin/python", "-m", "gunicorn", "app.wsgi:application", "--bind", "0.0.0.0:8000"],
    ["java", "-Xmx512m", "-XX:+UseG1GC", "-Dspring.profiles.active=prod", "-jar", "/app/app.jar"],
    ["node", "/usr/src/app/server.js"],
    ["/usr/local/bin/docker-entrypoint.sh", "postgres"],
    ["apt-get", "install", "-y", "--no-install-recommends", "ca-certificates", "curl"],
    ["apk", "add", "--no-cache", "tzdata"],
    ["pip", "install", "--no-cache-dir", "-r", "requirements.txt"],
    ["sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"],
    ["iptables", "-w", "5", "-t", "nat", "-S", "KUBE-SERVICES"],
    ["ip", "-o", "link", "show"],
    ["mount", "-t", "overlay", "overlay", "-o", "lowerdir=/var/lib/containerd/a:/var/lib/containerd/b,upperdir=/u,workdir=/w", "/run/rootfs"],
    ["ls", "-la", "/"],
    ["ps", "aux"],
    ["cat", "/etc/os-release"],
    ["git", "clone", "--depth", "1", "https://github.com/example/app.git", "/src"],
    ["kubectl", "get", "pods", "-n", "kube-system", "-o", "wide"],
    ["bash", "-c", "while true; do date >> /var/log/app/heartbeat.log; sleep 30; done"],
    ["/usr/bin/dockerd", "-H", "fd://", "--containerd=/run/containerd/containerd.sock"],
    ["tar", "-xzf", "/tmp/release.tgz", "-C", "/opt/app"],
]  # fmt: skip
ADVERSARIAL = {"a=a=...": "a=", "PWD={...": "PWD={", "https://a:...": "https://a:", "eyJa...": "eyJa"}


def load_baseline(rev: str, into: Path) -> ModuleType:
    """exporter/enrich/redact.py and its redact.yaml as of `rev`, imported beside the current one."""
    for name in ("redact.py", "redact.yaml"):
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:exporter/enrich/{name}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (into / name).write_text(text)
    spec = importlib.util.spec_from_file_location("redact_baseline", into / "redact.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def as_probed(argv: list[str]) -> list[str]:
    limits = ProbesConfig()
    return [arg[: limits.argv_arg_max] for arg in argv[: limits.argv_max_args]]


def us_per_argv(work: Callable[[list[str]], object], corpus: list[list[str]]) -> float:
    start = time.perf_counter()
    for argv in corpus:
        work(argv)
    return (time.perf_counter() - start) / len(corpus) * 1e6


def cold(argv: list[str]) -> list[str]:
    patterns().clean.clear()
    return redact_argv(argv)


def measure(baseline: ModuleType, corpora: dict[str, list[list[str]]], repeat: int) -> dict:
    """Best of `repeat` rounds; in each round the baseline and the current code take turns."""
    best: dict[str, dict[str, float]] = {name: {} for name in corpora}
    for _ in range(repeat):
        for name, corpus in corpora.items():
            runs = {"baseline_us": baseline.redact_argv, "cold_us": cold, "warm_us": redact_argv}
            for label, work in runs.items():
                if label == "warm_us":
                    us_per_argv(redact_argv, corpus)  # every argument seen once
                took = us_per_argv(work, corpus)
                best[name][label] = min(best[name].get(label, float("inf")), took)
    report = {}
    for name, times in best.items():
        report[name] = {label: round(us, 2) for label, us in times.items()}
        report[name]["argvs"] = len(corpora[name])
        report[name]["cold_vs_baseline"] = round(times["cold_us"] / times["baseline_us"], 2)
        report[name]["warm_vs_baseline"] = round(times["warm_us"] / times["baseline_us"], 2)
    return report


def coverage(redact: Callable[[list[str]], list[str]]) -> dict:
    exact = leaking = 0
    for form in SECRET_FORMS:
        out = redact(form["argv"])
        exact += out == form["want"]
        leaking += any(secret in "\0".join(out) for secret in secrets_of(form))
    kept = sum(redact(form["argv"]) == form["argv"] for form in KEEP_FORMS)
    return {
        "secret_forms": len(SECRET_FORMS),
        "exact": exact,
        "leaking": leaking,
        "keep_forms": len(KEEP_FORMS),
        "kept": kept,
    }


def adversarial(baseline: ModuleType) -> dict:
    report = {}
    for name, piece in ADVERSARIAL.items():
        row = {}
        for label, redact in (("baseline", baseline.redact_argv), ("current", redact_argv)):
            took = []
            for size in (16384, 65536):
                text = (piece * (size // len(piece) + 1))[:size]
                start = time.perf_counter()
                redact(["sh", "-c", text])
                took.append(time.perf_counter() - start)
            row[label] = {
                "ms_16k": round(took[0] * 1e3, 1),
                "ms_64k": round(took[1] * 1e3, 1),
                "growth": round(took[1] / took[0], 1),
            }
        report[name] = row
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="233ec88", help="git revision of the baseline patterns")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best of each is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = load_baseline(args.baseline, Path(tmp))
        corpora = {
            "node": [as_probed(argv) for argv in NODE],
            "secret_forms": [form["argv"] for form in SECRET_FORMS],
            "keep_forms": [form["argv"] for form in KEEP_FORMS],
        }
        report = {
            "benchmark": "redact",
            "baseline": args.baseline,
            "us_per_argv": measure(baseline, corpora, args.repeat),
            "coverage": {"baseline": coverage(baseline.redact_argv), "current": coverage(redact_argv)},
            "adversarial": adversarial(baseline),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
