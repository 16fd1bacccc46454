"""Path resolution, interpreter operands and the graph's per-process context."""

from __future__ import annotations

import pytest

from exporter.correlate.graph import MAX_FDS, ProvenanceGraph
from exporter.correlate.provenance import (
    FsContext,
    interpreter_program,
    load_interpreters,
    resolve,
)
from exporter.model import EventType, HostMount, Resolution
from exporter.taxonomy.hostmounts import host_mount_of

from .helpers import container, event

AT_FDCWD = -100


def interpreter_operand(image: str, argv: list[str]) -> str:
    """The script or program an interpreter exec is handed ("" when it is none)."""
    return interpreter_program(image, argv)[0]


# ---------------------------------------------------------------- resolve


@pytest.mark.parametrize(
    ("root", "cwd", "path", "links", "expected"),
    [
        ("/", "/", "/etc/shadow", {}, "/etc/shadow"),
        ("/", "/tmp/d", "../x/./y", {}, "/tmp/x/y"),
        ("/", "/", "/etc/../../etc//shadow/", {}, "/etc/shadow"),  # ".." stops at the root
        ("/host", "/host/etc", "shadow", {}, "/host/etc/shadow"),  # chrooted: cwd inside the root
        ("/host", "/host", "/../../etc/shadow", {}, "/host/etc/shadow"),  # cannot climb out of a chroot
        ("/host", "/", "/etc/passwd", {}, "/host/etc/passwd"),  # absolute: from the root
        ("/", "/", "/tmp/l/shadow", {"/tmp/l": "/host/etc"}, "/host/etc/shadow"),
        ("/", "/tmp", "l/shadow", {"/tmp/l": "../host/etc"}, "/host/etc/shadow"),  # relative content
        ("/", "/", "/tmp/l/../x", {"/tmp/l": "/host/etc"}, "/host/x"),  # ".." after a link: its target's
        ("/", "/", "/a/b", {"/a": "/c", "/c/b": "/d"}, "/d"),  # links in links
        ("/srv", "/", "/l", {"/srv/l": "/etc"}, "/srv/etc"),  # a link's absolute content: the reader's root
    ],
)
def test_resolve(root, cwd, path, links, expected):
    out = resolve(FsContext(root, cwd), path, None, links.get if links else None)
    assert (out.path, out.status) == (expected, Resolution.RESOLVED)


def test_resolve_says_what_it_could_not_know():
    assert resolve(FsContext(), "x").status is Resolution.CWD_UNKNOWN
    assert resolve(FsContext(), "/x") == resolve(FsContext(None, "/"), "/x")
    assert resolve(FsContext(), "/x").status is Resolution.ROOT_ASSUMED
    assert resolve(FsContext("/", "/"), "x", dirfd_path="").status is Resolution.DIRFD_UNKNOWN
    loop = {"/a": "/b", "/b": "/a"}
    assert resolve(FsContext("/", "/"), "/a", None, loop.get).status is Resolution.LINK_LOOP
    assert resolve(FsContext("/", "/", pivoted=True), "/x").status is Resolution.PIVOTED


def test_last_component_is_not_followed_when_asked():
    links = {"/tmp/l": "/etc/shadow"}.get
    assert resolve(FsContext("/", "/"), "/tmp/l", None, links, follow_last=False).path == "/tmp/l"
    assert resolve(FsContext("/", "/"), "/tmp/l", None, links).path == "/etc/shadow"


def test_host_mount_longest_prefix():
    mounts = [HostMount("/", "/host"), HostMount("/var/lib/x", "/host/var/lib/y")]
    assert host_mount_of("/host/var/lib/y/f", mounts)[1] == "/var/lib/x/f"
    assert host_mount_of("/host/etc/shadow", mounts)[1] == "/etc/shadow"
    assert host_mount_of("/host", mounts)[1] == "/"
    assert host_mount_of("/hostile/x", mounts) is None
    assert host_mount_of("relative", mounts) is None


# ---------------------------------------------------------------- interpreters

INTERPRETER_FORMS = [
    # (image, argv, the file it runs)
    ("/bin/sh", ["sh", "/tmp/x.sh"], "/tmp/x.sh"),
    ("/bin/sh", ["sh", "-x", "-e", "run.sh", "arg"], "run.sh"),
    ("/bin/bash", ["bash", "--rcfile", "/etc/rc", "/tmp/b.sh"], "/tmp/b.sh"),
    ("/bin/bash", ["bash", "-o", "pipefail", "s"], "s"),
    ("/bin/dash", ["dash", "--", "-weird-name"], "-weird-name"),
    ("/bin/ash", ["ash", "/tmp/a"], "/tmp/a"),
    ("/bin/busybox", ["busybox", "sh", "/tmp/s"], "/tmp/s"),
    ("/bin/busybox", ["busybox", "ash", "-x", "/tmp/s"], "/tmp/s"),
    ("/usr/bin/python3", ["python3", "/tmp/p.py", "--flag"], "/tmp/p.py"),
    ("/usr/bin/python3.11", ["python3", "-u", "-W", "ignore", "x.py"], "x.py"),
    ("/usr/local/bin/python3.12", ["python", "-Wignore", "-OO", "y.py"], "y.py"),
    ("/usr/bin/perl", ["perl", "-w", "/tmp/p.pl"], "/tmp/p.pl"),
    ("/usr/bin/perl", ["perl", "-Mstrict", "-I", "/lib", "p.pl"], "p.pl"),
    # perl's attached-only values (perlrun(1)): alone they take nothing, -l and -0 take digits
    ("/usr/bin/perl", ["perl", "-l", "/tmp/x.pl"], "/tmp/x.pl"),
    ("/usr/bin/perl", ["perl", "-x", "/tmp/x.pl"], "/tmp/x.pl"),
    ("/usr/bin/perl", ["perl", "-00", "-i.bak", "/tmp/x.pl", "f"], "/tmp/x.pl"),
    ("/usr/bin/perl", ["perl", "-pie", "s/a/b/", "f"], "s/a/b/"),  # -i's extension is "e"
    ("/usr/bin/ruby", ["ruby", "-r", "json", "/tmp/r.rb"], "/tmp/r.rb"),
    ("/usr/bin/node", ["node", "--require", "./hook.js", "/app/x.js"], "/app/x.js"),
    ("/usr/bin/php8.2", ["php", "-d", "a=1", "/tmp/x.php"], "/tmp/x.php"),
    ("/usr/bin/php", ["php", "-f", "/tmp/y.php"], "/tmp/y.php"),
    ("/lib64/ld-linux-x86-64.so.2", ["ld", "/tmp/bin"], "/tmp/bin"),
    ("/lib/ld-linux-aarch64.so.1", ["ld", "--library-path", "/tmp/lib", "/tmp/bin"], "/tmp/bin"),
    ("/lib/ld-musl-x86_64.so.1", ["ld", "--preload", "/x.so", "./prog"], "./prog"),
    # no file: inline code, a module, stdin, or not an interpreter at all
    ("/bin/sh", ["sh", "-c", "/tmp/x"], ""),
    ("/bin/sh", ["sh", "-ec", "true"], ""),
    ("/bin/sh", ["sh", "-s", "arg"], ""),
    ("/bin/sh", ["sh"], ""),
    ("/bin/sh", ["sh", "-"], ""),
    ("/usr/bin/python3", ["python3", "-c", "print(1)"], ""),
    ("/usr/bin/python3", ["python3", "-m", "http.server"], ""),
    ("/usr/bin/perl", ["perl", "-we", "print 1"], ""),
    ("/usr/bin/perl", ["perl", "-lne", "print", "/etc/passwd"], ""),
    ("/usr/bin/perl", ["perl", "-le", "print 1"], ""),
    ("/usr/bin/perl", ["perl", "-0777ne", "print", "f"], ""),
    ("/usr/bin/perl", ["perl", "-l012e", "print 1"], ""),
    ("/usr/bin/node", ["node", "-e", "1"], ""),
    ("/usr/bin/php", ["php", "-r", "echo 1;"], ""),
    ("/bin/busybox", ["busybox", "cat", "/tmp/x"], ""),
    ("/bin/cat", ["cat", "/tmp/x.sh"], ""),
    ("/usr/bin/shellcheck", ["shellcheck", "/tmp/x.sh"], ""),
]


@pytest.mark.parametrize(("image", "argv", "expected"), INTERPRETER_FORMS)
def test_interpreter_operand(image, argv, expected):
    assert interpreter_operand(image, argv) == expected


@pytest.mark.parametrize(
    ("image", "argv", "expected"),
    [
        # The program comes from standard input: with no operand, "-", "--" at the end, sh -s.
        ("/bin/sh", ["sh"], ("", True)),
        ("/bin/bash", ["bash", "-"], ("", True)),
        ("/bin/sh", ["sh", "-s", "arg"], ("", True)),
        ("/bin/sh", ["sh", "-e", "--"], ("", True)),
        ("/usr/bin/python3", ["python3", "-u"], ("", True)),
        ("/bin/busybox", ["busybox", "sh"], ("", True)),
        # ... or a name of standard input handed as the program's file (`| sh /dev/stdin`,
        # `| awk -f -`), whatever options come first.
        ("/bin/sh", ["sh", "/dev/stdin"], ("", True)),
        ("/bin/sh", ["sh", "-e", "/proc/self/fd/0", "arg"], ("", True)),
        ("/bin/bash", ["bash", "--", "/dev/fd/0"], ("", True)),
        ("/usr/bin/awk", ["awk", "-f", "-"], ("", True)),
        ("/usr/bin/gawk", ["gawk", "-F:", "-v", "x=1", "--file", "/dev/stdin"], ("", True)),
        ("/bin/busybox", ["busybox", "awk", "-f", "/proc/thread-self/fd/0"], ("", True)),
        # awk's first operand is its program's text: data on stdin is not a program.
        ("/usr/bin/awk", ["awk", "{ print $1 }"], ("", False)),
        ("/usr/bin/awk", ["awk", "-F", ":", "{ print $1 }", "/etc/passwd"], ("", False)),
        ("/usr/bin/mawk", ["mawk", "-f", "/tmp/prog.awk", "data"], ("/tmp/prog.awk", False)),
        # Not from stdin: a file, inline code, a module, not an interpreter, ld.so alone.
        ("/bin/sh", ["sh", "/tmp/x"], ("/tmp/x", False)),
        ("/bin/sh", ["sh", "-c", "wc -l"], ("", False)),
        ("/usr/bin/python3", ["python3", "-m", "http.server"], ("", False)),
        ("/bin/cat", ["cat"], ("", False)),
        ("/lib64/ld-linux-x86-64.so.2", ["ld"], ("", False)),
    ],
)
def test_interpreter_program_reads_stdin(image, argv, expected):
    assert interpreter_program(image, argv) == expected


def test_interpreter_table_is_data():
    table = load_interpreters()
    assert {"sh", "python", "perl", "ruby", "node", "php", "ld.so"} <= {
        i.name for i in table.by_name.values()
    }
    assert table.find("python3.13") is table.find("python3")
    assert table.find("ld-linux-x86-64.so.2") is table.find("ld.so")


# ---------------------------------------------------------------- the graph's context


def _graph() -> ProvenanceGraph:
    return ProvenanceGraph(600, 10_000, 10_000)


def test_context_is_inherited_across_fork_and_exec():
    g, c = _graph(), container("c1", mounts=[("/", "/host")])
    g.add(event(EventType.CONTEXT, t=0, pid=10, syscall="procfs", path="/", target="/", container=c))
    g.add(event(EventType.CHDIR, t=1, pid=10, path="/host/etc", syscall="chdir", container=c))
    g.add(event(EventType.FORK, t=2, pid=10, child_pid=11, container=c))
    g.add(event(EventType.EXEC, t=3, pid=11, ppid=10, path="/bin/cat", argv=["cat"], container=c))
    e = event(EventType.OPEN, t=4, pid=11, ppid=10, path="shadow", dirfd=AT_FDCWD, container=c)
    g.add(e)
    assert (e.resolved_path, e.resolution, e.host_path) == ("/host/etc/shadow", "resolved", "/etc/shadow")


def test_fd_table_resolves_dirfd_and_fexecve_and_forgets_cloexec_fds_at_exec():
    g, c = _graph(), container("c1")
    g.add(event(EventType.OPEN, t=1, pid=10, path="/srv/app", flags=0o200000, ret=5, container=c))
    e = event(EventType.OPEN, t=2, pid=10, path="conf/a.yaml", dirfd=5, syscall="openat", container=c)
    g.add(e)
    assert e.resolved_path == "/srv/app/conf/a.yaml"
    g.add(event(EventType.OPEN, t=3, pid=10, path="/usr/bin/tool", flags=0o10000000 | 0o2000000, ret=6,
                container=c))  # fmt: skip
    x = event(EventType.EXEC, t=4, pid=10, path="", dirfd=6, flags=0x1000, syscall="execveat", argv=["t"],
              container=c)  # fmt: skip
    g.add(x)
    assert (x.resolved_path, x.resolution) == ("/usr/bin/tool", "resolved")
    # fd 6 was close-on-exec: gone after the exec; fd 5 stays
    y = event(EventType.OPEN, t=5, pid=10, path="z", dirfd=6, syscall="openat", container=c)
    g.add(y)
    assert (y.resolved_path, y.resolution) == ("", "dirfd_unknown")
    z = event(EventType.OPEN, t=6, pid=10, path="z", dirfd=5, syscall="openat", container=c)
    g.add(z)
    assert z.resolved_path == "/srv/app/z"


def test_a_reused_fd_names_its_new_file():
    g, c = _graph(), container("c1")
    g.add(event(EventType.OPEN, t=1, pid=10, path="/host", flags=0o200000, ret=5, container=c))
    g.add(event(EventType.OPEN, t=2, pid=10, path="/srv", flags=0o200000, ret=5, container=c))
    e = event(EventType.OPEN, t=3, pid=10, path="x", dirfd=5, syscall="openat", container=c)
    g.add(e)
    assert e.resolved_path == "/srv/x"


@pytest.mark.parametrize(
    "path",
    ["/dev/fd/\u00b2", "/dev/fd/" + "9" * 5000, "/proc/self/fd/" + "9" * 5000, "/proc/self/fd/\u0663",
     "/dev/fd/05", "/proc/self/fd/4294967296"],
)  # fmt: skip
def test_an_fd_name_the_kernel_would_refuse_names_nothing_and_does_not_crash(path):
    # str.isdigit() and \d accept what the kernel's name_to_int does not (a superscript two, an
    # Arabic-Indic three, 5,000 digits int() refuses, a leading zero): such a name is no fd.
    g, c = _graph(), container("c1")
    g.add(event(EventType.OPEN, t=1, pid=10, path="/srv", flags=0o200000, ret=5, container=c))
    g.add(event(EventType.OPEN, t=1, pid=10, path="/srv", flags=0o200000, ret=3, container=c))
    e = event(EventType.OPEN, t=2, pid=10, path=path, syscall="openat", container=c)
    g.add(e)
    assert (e.resolved_path, e.resolution) == ("", "dirfd_unknown")


def test_fd_table_is_bounded():
    g, c = _graph(), container("c1")
    for i in range(MAX_FDS * 3):
        g.add(event(EventType.OPEN, t=1 + i * 1e-6, pid=10, path=f"/f{i}", ret=3 + i, container=c))
    assert len(g.process(10).fds) == MAX_FDS


def test_chroot_and_pivot_root():
    g, c = _graph(), container("c1", mounts=[("/", "/host")])
    g.add(event(EventType.CHROOT, t=1, pid=10, path="/host", syscall="chroot", container=c))
    e = event(EventType.EXEC, t=2, pid=10, path="/bin/sh", argv=["sh"], container=c)
    g.add(e)
    assert (e.resolved_path, e.host_path) == ("/host/bin/sh", "/bin/sh")
    # The runtime pivoting into the container's root (nothing executed yet): the new "/"
    # is the container's own view, no status to report.
    g.add(event(EventType.CHROOT, t=3, pid=20, path=".", syscall="pivot_root", container=c))
    f = event(EventType.OPEN, t=4, pid=20, path="/etc/hostname", container=c)
    g.add(f)
    assert (f.resolved_path, f.resolution) == ("/etc/hostname", "resolved")
    # A workload's own pivot_root: paths are then relative to a root of its choosing.
    g.add(event(EventType.EXEC, t=5, pid=20, path="/bin/sh", argv=["sh"], container=c))
    g.add(event(EventType.CHROOT, t=6, pid=20, path="/mnt/disk", syscall="pivot_root", container=c))
    h = event(EventType.OPEN, t=7, pid=20, path="/etc/shadow", container=c)
    g.add(h)
    assert h.resolution == "pivoted"


def test_context_seed_from_proc_does_not_replay_older_chdirs():
    g, c = _graph(), container("c1")
    g.add(event(EventType.CONTEXT, t=2, pid=10, syscall="procfs", path="/work/sub", target="/", container=c))
    # a chdir the /proc read already reflects (it happened before the read)
    g.add(event(EventType.CHDIR, t=1, pid=10, path="sub", syscall="chdir", container=c))
    e = event(EventType.OPEN, t=3, pid=10, path="f", dirfd=AT_FDCWD, container=c)
    g.add(e)
    assert e.resolved_path == "/work/sub/f"


def test_links_are_per_container_and_windowed():
    g = ProvenanceGraph(10, 10_000, 10_000)
    a, b = container("a", mounts=[("/", "/host")]), container("b", mounts=[("/", "/host")])
    g.add(event(EventType.LINK, t=1, pid=10, syscall="symlink", source="/host/etc/shadow", path="/tmp/s",
                container=a))  # fmt: skip
    other = event(EventType.OPEN, t=2, pid=20, path="/tmp/s", container=b)
    g.add(other)
    assert other.resolved_path == "/tmp/s"  # another container has no such link
    same = event(EventType.OPEN, t=3, pid=11, path="/tmp/s", container=a)
    g.add(same)
    assert same.host_path == "/etc/shadow"
    late = event(EventType.OPEN, t=30, pid=12, path="/tmp/s", container=a)
    g.add(late)
    assert late.resolved_path == "/tmp/s"  # the link left the window


def test_rename_moves_a_link_and_the_network_origin():
    g, c = _graph(), container("c1")
    g.add(event(EventType.CONNECT, t=1, pid=10, daddr="198.51.100.7", dport=80, family=2, container=c))
    g.add(event(EventType.OPEN, t=2, pid=10, path="/tmp/a", flags=0o101, container=c))
    g.add(event(EventType.RENAME, t=3, pid=11, syscall="rename", source="/tmp/a", path="/tmp/b", container=c))
    old = event(EventType.EXEC, t=4, pid=12, path="/tmp/a", argv=["a"], container=c)
    new = event(EventType.EXEC, t=5, pid=13, path="/tmp/b", argv=["b"], container=c)
    g.add(old)
    g.add(new)
    assert not old.origin
    assert [r.step for r in new.origin] == ["connect", "write", "rename"]


def test_a_live_process_keeps_its_context_past_the_window():
    g, c = ProvenanceGraph(10, 10_000, 10_000), container("c1")
    g.add(event(EventType.CHDIR, t=1, pid=10, path="/srv", syscall="chdir", container=c))
    for i in range(100):  # other traffic moves event time far past the window
        g.add(event(EventType.OPEN, t=2 + i, pid=99, path=f"/f{i}", container=c))
    e = event(EventType.OPEN, t=200, pid=10, path="x", dirfd=AT_FDCWD, container=c)
    g.add(e)
    assert e.resolved_path == "/srv/x"
    # once it exited, it goes with the window
    g.add(event(EventType.EXIT, t=201, pid=10, container=c))
    for i in range(100):
        g.add(event(EventType.OPEN, t=300 + i, pid=99, path=f"/g{i}", container=c))
    g.publish()
    assert g.process(10) is None


def test_the_graph_stays_bounded_with_context_everywhere():
    g = ProvenanceGraph(3600, 2_000, 4_000)
    c = container("c1")
    for i in range(30_000):
        pid = 1000 + i % 3000  # many live processes, each with cwd, fds and links
        if i % 7 == 0:
            g.add(event(EventType.CHDIR, t=i * 1e-3, pid=pid, path=f"/d{i}", syscall="chdir", container=c))
        elif i % 11 == 0:
            g.add(event(EventType.LINK, t=i * 1e-3, pid=pid, syscall="symlink", source="/x", path=f"/l{i}",
                        container=c))  # fmt: skip
        else:
            g.add(event(EventType.OPEN, t=i * 1e-3, pid=pid, path=f"f{i}", ret=3 + i % 50, dirfd=AT_FDCWD,
                        container=c))  # fmt: skip
    g.publish()
    nodes, steps = g.size
    assert nodes <= 2_000 and steps <= 4_000
    assert sum(len(n.symlinks) for n in g.containers.values()) <= 4096
