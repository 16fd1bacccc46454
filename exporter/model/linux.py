"""Linux constants provex reads from syscall arguments, in one place for the probes' user
side, the rules, the provenance graph and the mappings (values from include/uapi/linux)."""

from __future__ import annotations

# open(2) flags (uapi/asm-generic/fcntl.h)
O_ACCMODE, O_WRONLY, O_RDWR = 0o3, 0o1, 0o2
O_CREAT, O_TRUNC = 0o100, 0o1000
O_NOFOLLOW, O_DIRECTORY, O_CLOEXEC, O_PATH = 0o400000, 0o200000, 0o2000000, 0o10000000
WRITE_FLAGS = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC  # what makes an open a write or a create

# *at(2) (uapi/linux/fcntl.h)
AT_FDCWD = -100
AT_SYMLINK_FOLLOW, AT_EMPTY_PATH = 0x400, 0x1000

# socket address families (linux/socket.h); connect's -EINPROGRESS still connects
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
IP_FAMILIES = frozenset({AF_INET, AF_INET6})
EINPROGRESS = 115

# mount(2) flags (uapi/linux/mount.h)
MS_BIND = 0x1000

# CLONE_NEW* bits as setns nstype and unshare flags carry them (uapi/linux/sched.h)
NAMESPACE_BITS = (
    (0x00000080, "time"),
    (0x00020000, "mnt"),
    (0x02000000, "cgroup"),
    (0x04000000, "uts"),
    (0x08000000, "ipc"),
    (0x10000000, "user"),
    (0x20000000, "pid"),
    (0x40000000, "net"),
)


def namespace_names(flags: int, setns: bool = False) -> list[str]:
    """The namespace kinds in setns's nstype or unshare's flags. setns with nstype 0 joins
    whatever namespace the fd names: "any" (for rules and documents alike)."""
    names = [name for bit, name in NAMESPACE_BITS if flags & bit]
    return names or (["any"] if setns and flags == 0 else [])
