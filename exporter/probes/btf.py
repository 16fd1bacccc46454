"""Field offsets of the running kernel's structs, read from its own BTF.

The BPF programs are compiled against whatever headers are installed, which may be for
another kernel (bpf/provex.h), so they never take a struct layout from a header. The few
reads that judge a file by what it is (the opened file's device and inode, its parent
directory, the name the kernel gave it) use offsets found here, in
/sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF), and passed to the compiler as -D
constants: the same idea as libbpf's CO-RE relocations, done by the loader.

The format is the kernel's (Documentation/bpf/btf.rst): a header, a type section of
variable-length records, and a string section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F

# BTF_KIND_*
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BtfError(RuntimeError):
    """The BTF is missing, not BTF, or lacks a struct or member the probes need."""


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    size_or_type: int  # size for INT/STRUCT/UNION/ENUM/FLOAT, the referenced type otherwise
    members: tuple[tuple[str, int, int], ...] = ()  # STRUCT/UNION: (name, type id, bit offset)


class Btf:
    """The types of one BTF blob, by id and by struct name."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("BTF blob is shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", blob
        )
        if magic != MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x}, expected {MAGIC:#x})")
        types = blob[hdr_len + type_off : hdr_len + type_off + type_len]
        strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        self.types: list[_Type | None] = [None]  # type id 0 is void
        self.structs: dict[str, int] = {}

        def name_at(off: int) -> str:
            end = strings.find(b"\0", off)
            return strings[off:end].decode("ascii", "replace")

        pos = 0
        while pos < len(types):
            name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
            pos += 12
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            members: tuple[tuple[str, int, int], ...] = ()
            if kind in (INT, VAR, DECL_TAG):
                pos += 4
            elif kind == ARRAY:
                pos += 12
            elif kind in (STRUCT, UNION):
                out = []
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", types, pos)
                    pos += 12
                    out.append((name_at(m_name), m_type, m_off & 0xFFFFFF if kind_flag else m_off))
                members = tuple(out)
            elif kind in (ENUM, FUNC_PROTO):
                pos += 8 * vlen
            elif kind in (DATASEC, ENUM64):
                pos += 12 * vlen
            elif kind not in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
                raise BtfError(f"unknown BTF kind {kind} at type {len(self.types)}")
            name = name_at(name_off)
            if kind == STRUCT and name and members and name not in self.structs:
                self.structs[name] = len(self.types)
            self.types.append(_Type(kind, name, size_or_type, members))

    @classmethod
    def load(cls, path: Path = VMLINUX) -> Btf:
        try:
            return cls(path.read_bytes())
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _strip(self, type_id: int) -> _Type | None:
        """Follow typedefs and qualifiers to the type itself."""
        t = self.types[type_id] if 0 <= type_id < len(self.types) else None
        while t is not None and t.kind in _QUALIFIERS:
            t = self.types[t.size_or_type]
        return t

    def _find(self, t: _Type, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of member `name`, looking inside anonymous members."""
        for m_name, m_type, m_off in t.members:
            if m_name == name:
                return m_off, m_type
            if not m_name:
                inner = self._strip(m_type)
                if inner is not None and inner.kind in (STRUCT, UNION):
                    hit = self._find(inner, name)
                    if hit is not None:
                        return m_off + hit[0], hit[1]
        return None

    def offsetof(self, struct_name: str, member_path: str) -> int:
        """Byte offset of a (dotted, nested) member: offsetof("file", "f_path.dentry")."""
        type_id = self.structs.get(struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} is not in the kernel's BTF")
        t = self.types[type_id]
        bits = 0
        for part in member_path.split("."):
            assert t is not None
            hit = self._find(t, part)
            if hit is None:
                raise BtfError(f"struct {struct_name} has no member {member_path}")
            bits += hit[0]
            t = self._strip(hit[1])
        if bits % 8:
            raise BtfError(f"{struct_name}.{member_path} is a bit field")
        return bits // 8


# The kernel fields the probes read, by the define that carries their offset (bpf/provex.h).
PROBE_FIELDS = (
    ("OFF_TASK_FILES", "task_struct", "files"),
    ("OFF_TASK_MM", "task_struct", "mm"),
    ("OFF_TASK_FS", "task_struct", "fs"),
    ("OFF_FILES_FDT", "files_struct", "fdt"),
    ("OFF_FDT_MAX_FDS", "fdtable", "max_fds"),
    ("OFF_FDT_FD", "fdtable", "fd"),
    ("OFF_FILE_INODE", "file", "f_inode"),
    ("OFF_FILE_DENTRY", "file", "f_path.dentry"),
    ("OFF_INODE_MODE", "inode", "i_mode"),
    ("OFF_INODE_INO", "inode", "i_ino"),
    ("OFF_INODE_GENERATION", "inode", "i_generation"),
    ("OFF_INODE_SB", "inode", "i_sb"),
    ("OFF_SB_DEV", "super_block", "s_dev"),
    ("OFF_DENTRY_PARENT", "dentry", "d_parent"),
    ("OFF_DENTRY_INODE", "dentry", "d_inode"),
    ("OFF_DENTRY_NAME", "dentry", "d_name.name"),
    ("OFF_MM_EXE_FILE", "mm_struct", "exe_file"),
    ("OFF_FS_PWD_DENTRY", "fs_struct", "pwd.dentry"),
    ("OFF_FS_ROOT_DENTRY", "fs_struct", "root.dentry"),
)


def probe_offsets(btf: Btf) -> dict[str, int]:
    """{define: byte offset} for every field the probes read; BtfError if one is missing."""
    return {define: btf.offsetof(struct_name, member) for define, struct_name, member in PROBE_FIELDS}
