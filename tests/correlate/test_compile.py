"""Sigma value semantics as the engine evaluates them."""

from __future__ import annotations

import pytest

from exporter.correlate import RulesError, load_rules
from exporter.correlate.graph import ProvenanceGraph
from exporter.model import EventType
from exporter.taxonomy.fields import EventView

from .helpers import container, event, write_rule


def _rule(tmp_path, category: str, detection: str):
    text = f"""
    title: T
    id: 0b7c1ee4-5b5c-4a59-9a55-4b0b6f0a0100
    logsource: {{product: linux, category: {category}}}
    detection:
{detection}
    level: low
    """
    write_rule(tmp_path, "r.yml", text)
    return load_rules([tmp_path]).rules[0]


def _matches(rule, ev) -> bool:
    return rule.predicate(EventView(ev))


def test_strings_are_case_insensitive_unless_cased(tmp_path):
    rule = _rule(
        tmp_path, "file_access", "      s:\n        TargetFilename|contains: SHADOW\n      condition: s"
    )
    assert _matches(rule, event(path="/etc/shadow"))
    rule = _rule(
        tmp_path, "file_access", "      s:\n        TargetFilename|contains|cased: SHADOW\n      condition: s"
    )
    assert not _matches(rule, event(path="/etc/shadow"))


@pytest.mark.parametrize(
    ("detection", "yes", "no"),
    [
        ("TargetFilename|startswith: /etc/", "/etc/x", "/tmp/etc/x"),
        ("TargetFilename|endswith: .conf", "/a/b.conf", "/a/b.confx"),
        ("TargetFilename: /etc/*.conf", "/etc/kubelet.conf", "/etc/x/y"),
        ("TargetFilename: /etc/?.conf", "/etc/a.conf", "/etc/ab.conf"),
        ("TargetFilename|re: '^/etc/[a-z]+$'", "/etc/passwd", "/etc/pass-wd"),
        ("TargetFilename|contains|all: [etc, shadow]", "/etc/shadow", "/etc/passwd"),
    ],
)
def test_string_modifiers(tmp_path, detection, yes, no):
    rule = _rule(tmp_path, "file_access", f"      s:\n        {detection}\n      condition: s")
    assert _matches(rule, event(path=yes))
    assert not _matches(rule, event(path=no))


def test_numbers_cidr_booleans_and_comparisons(tmp_path):
    det = (
        "      s:\n        DestinationIp|cidr: 10.0.0.0/8\n        DestinationPort: 443\n"
        "        DestinationIsApiServer: true\n        ProcessId|gt: 100\n      condition: s"
    )
    rule = _rule(tmp_path, "network_connection", det)
    good = dict(daddr="10.1.2.3", dport=443, dest_is_apiserver=True, family=2)
    assert _matches(rule, event(EventType.CONNECT, pid=200, **good))
    assert not _matches(rule, event(EventType.CONNECT, pid=50, **good))
    assert not _matches(rule, event(EventType.CONNECT, pid=200, **{**good, "daddr": "192.168.0.1"}))
    assert not _matches(rule, event(EventType.CONNECT, pid=200, **{**good, "dest_is_apiserver": False}))


def test_list_fields_match_any_element(tmp_path):
    rule = _rule(tmp_path, "unshare", "      s:\n        NamespaceTypes: user\n      condition: s")
    assert _matches(rule, event(EventType.UNSHARE, nstype=0x10020000))
    assert not _matches(rule, event(EventType.UNSHARE, nstype=0x00020000))


def test_null_exists_and_not(tmp_path):
    det = (
        "      s:\n        ContainerId: null\n      f:\n        Comm|exists: true\n"
        "      condition: s and not f"
    )
    rule = _rule(tmp_path, "file_access", det)
    assert _matches(rule, event(path="/x"))  # host event, no comm
    assert not _matches(rule, event(path="/x", comm="cat"))
    assert not _matches(rule, event(path="/x", container=container()))


def test_host_mount_resolution_is_longest_prefix_and_absolute_only(tmp_path):
    rule = _rule(tmp_path, "file_access", "      s:\n        HostMountPath: /var/lib/x/f\n      condition: s")
    c = container(mounts=[("/", "/host"), ("/var/lib/x", "/host/var/lib/y")])

    def resolved(ev):  # rules see events after the provenance graph resolved their paths
        ProvenanceGraph(600, 100, 100).add(ev)
        return ev

    assert _matches(rule, resolved(event(path="/host/var/lib/y/f", container=c)))  # the nested mount wins
    assert _matches(rule, resolved(event(path="/host/var/lib/x/f", container=c)))  # through "/" -> /host
    assert _matches(rule, resolved(event(path="/host/tmp/../var/lib/x/f", container=c)))  # normalised
    # relative with no known working directory: never guessed
    assert not _matches(rule, resolved(event(path="host/var/lib/y/f", container=c)))
    assert not _matches(rule, resolved(event(path="/hostile/var/lib/x/f", container=c)))  # not a mount


@pytest.mark.parametrize(
    ("detection", "cause"),
    [
        ("      s:\n        TargetFilenme: x\n      condition: s", "unknown_field:TargetFilenme"),
        (
            "      s:\n        DestinationIp: 1.2.3.4\n      condition: s",
            "field_not_in_category:DestinationIp",
        ),
        ("      keywords:\n        - evil\n      condition: keywords", "keyword_search"),
    ],
)
def test_unevaluable_detections_are_refused(tmp_path, detection, cause):
    with pytest.raises(RulesError) as info:
        _rule(tmp_path, "file_access", detection)
    assert info.value.errors[0].cause == cause


def test_image_of_a_reexec_is_the_known_image():
    from exporter.model import Event, EventType, ProcessInfo
    from exporter.taxonomy.fields import FIELDS

    image = FIELDS["Image"].get
    e = Event(id="x", type=EventType.EXEC, syscall="execve", ts_ns=1, pid=7, tid=7, path="/proc/self/exe",
              process=ProcessInfo(pid=7, exe="/bin/busybox"))  # fmt: skip
    assert image(e) == "/bin/busybox"
    e.path = "/tmp/payload"
    assert image(e) == "/tmp/payload"


@pytest.mark.parametrize(
    ("detection", "yes", "no"),
    [
        # One field, many values: read once and tested together (exact set, prefix and suffix
        # tuples, the rest one by one), with the same answers as value by value.
        (
            "TargetFilename: [/etc/Shadow, /etc/gshadow]\n        TargetFilename|endswith: x",
            ["/etc/shadow", "/ETC/GSHADOW"],
            ["/etc/shadow-", "/etc/passwd"],
        ),
        (
            "TargetFilename|startswith: [/proc/, /Sys/]",
            ["/proc/1/environ", "/sys/kernel"],
            ["/tmp/proc/", "/etc/sys/"],
        ),
        (
            "TargetFilename|endswith: [.Key, .pem]",
            ["/a/tls.key", "/a/b.PEM"],
            ["/a/key", "/a/pem.txt"],
        ),
        (
            "TargetFilename: ['/etc/*.conf', '/root/.ssh/id_?sa', /etc/hosts]",
            ["/etc/kubelet.conf", "/root/.ssh/id_rsa", "/etc/HOSTS"],
            ["/etc/x/y", "/root/.ssh/id_ecdsa", "/etc/hosts.allow"],
        ),
        (
            "TargetFilename|contains: [shadow, sudoers]\n        TargetFilename|cased: /etc/Passwd",
            ["/etc/gshadow", "/etc/SUDOERS.d/x", "/etc/Passwd"],
            ["/etc/passwd", "/etc/group"],
        ),
    ],
)
def test_many_values_of_one_field(tmp_path, detection, yes, no):
    # `1 of s*` over selections on one field is an OR of leaves on that field.
    parts = detection.split("\n        ")
    selections = "".join(f"      s{i}:\n        {part}\n" for i, part in enumerate(parts))
    rule = _rule(tmp_path, "file_access", f"{selections}      condition: 1 of s*")
    for path in yes:
        assert _matches(rule, event(path=path)), path
    for path in no:
        assert not _matches(rule, event(path=path)), path


@pytest.mark.parametrize(
    ("comm", "exe", "runtime"),
    [
        ("runc:[1:CHILD]", "/usr/sbin/runc", True),
        ("crun", "/usr/bin/crun", True),
        ("containerd-shim", "/usr/bin/containerd-shim-runc-v2", True),
        ("sh", "/usr/sbin/RUNC", True),  # endswith without case, as the rules' Image|endswith was
        ("runc:[2:INIT]", "", True),  # runc init before the container's first exec: no image yet
        ("runc:[2:INIT]", "/memfd:runc_cloned:/proc/self/exe (deleted)", True),
        ("runc:[2:INIT]", "/run/containerd/runc/k8s.io/0123456789ab/runc.jG0YHU", True),
        ("RUNC:[2:INIT]", "", True),
        # A comm alone is not enough: any process can name itself like runc init.
        ("runc:[2:INIT]", "/tmp/x", False),
        ("runc:[2:INIT]", "/tmp/runc.jG0YHUx", False),
        ("nsenter", "", False),
        ("sh", "/memfd:runc_cloned:/proc/self/exe (deleted)", False),
        ("sh", "/usr/bin/runc-helper", False),
    ],
)
def test_is_container_runtime(comm: str, exe: str, runtime: bool) -> None:
    ev = event(EventType.SETNS, comm=comm, exe=exe, container=container())
    assert EventView(ev).get("IsContainerRuntime") is runtime


@pytest.mark.parametrize(
    ("comm", "exe", "by_runtime"),
    [
        # A copy of runc, a binary renamed runc, a spoofed runc init comm: not the runtime.
        ("runc:[2:INIT]", "", False),
        ("runc", "/tmp/runc", False),
        ("sh", "/usr/sbin/runc", False),
        ("runc:[2:INIT]", "/memfd:runc_cloned:/proc/self/exe (deleted)", False),
        # The kernel's word for a process of the host's runtime, whatever it is called.
        ("sh", "/bin/sh", True),
    ],
)
def test_the_kernels_runtime_verdict_wins_over_names(comm: str, exe: str, by_runtime: bool) -> None:
    ev = event(EventType.SETNS, comm=comm, exe=exe, container=container())
    ev.by_runtime = by_runtime
    assert EventView(ev).get("IsContainerRuntime") is by_runtime


def test_is_container_runtime_is_not_for_network_rules(tmp_path):
    with pytest.raises(RulesError, match="IsContainerRuntime"):
        _rule(
            tmp_path, "network_connection", "      s:\n        IsContainerRuntime: true\n      condition: s"
        )
